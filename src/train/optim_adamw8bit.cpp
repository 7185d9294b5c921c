#include "train/optim_adamw8bit.h"

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "quant/blockwise8.h"

namespace bidora::train {

namespace {
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

uint8_t quantize_2d(float x, const quant::Code256& code, bool is_signed) {
  // Written with selects instead of branches: the comparisons are data-dependent coin flips, and
  // the compiler turns these into conditional moves (about 3x faster than the branchy form).
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = is_signed ? -1.0f : 0.0f;
  float upper = 1.0f;
  float val = code[127];
  for (int i = 64; i > 0; i >>= 1) {
    const bool gt = x > val;
    lower_pivot = gt ? pivot : lower_pivot;
    lower = gt ? val : lower;
    upper_pivot = gt ? upper_pivot : pivot;
    upper = gt ? upper : val;
    pivot += gt ? i : -i;
    val = code[static_cast<size_t>(pivot)];
  }
  const bool gt = x > val;
  const float midpoint = ((gt ? upper : lower) + val) * 0.5f;
  const bool beyond = gt ? x > midpoint : x < midpoint;
  return static_cast<uint8_t>(beyond ? (gt ? upper_pivot : lower_pivot) : pivot);
}

namespace {

// quantize_2d is a non-decreasing step function of x (a fixed binary search over a sorted code
// plus midpoint tests), so it is fully described by, for each code index v, the smallest input
// that maps to v or above. We find those thresholds once, over the float ordering expressed as
// integers, and answer a query with a table lookup on the top bits plus a short scan. The
// result equals quantize_2d for every float in [-1, 1] (checked exhaustively during development
// and around every threshold by the tests); other inputs fall back to the search.
constexpr int32_t kOneOrdinal = 0x3f800000;  // ordinal of 1.0f
constexpr int kCellShift = 16;

int32_t float_ordinal(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  const auto magnitude = static_cast<int32_t>(u & 0x7fffffffu);
  return (u >> 31) ? -magnitude : magnitude;  // -0 and +0 share ordinal 0, as they compare equal
}

float ordinal_float(int32_t o) {
  const uint32_t u = o < 0 ? (static_cast<uint32_t>(-o) | 0x80000000u) : static_cast<uint32_t>(o);
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

struct QuantizeTable {
  std::array<int32_t, 257> first;  // first[v]: smallest ordinal with quantize_2d >= v (first[256]: sentinel)
  std::vector<uint8_t> cell;       // quantize_2d at the start of each 2^16-ordinal cell of [-1, 1]

  QuantizeTable(const quant::Code256& code, bool is_signed) {
    auto q = [&](int32_t o) { return quantize_2d(ordinal_float(o), code, is_signed); };
    first[0] = -kOneOrdinal;
    for (int v = 1; v <= 256; ++v) {
      int64_t lo = -kOneOrdinal, hi = int64_t{kOneOrdinal} + 1;  // answer in [lo, hi]
      while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (v <= 255 && q(static_cast<int32_t>(mid)) >= v)
          hi = mid;
        else
          lo = mid + 1;
      }
      first[static_cast<size_t>(v)] = static_cast<int32_t>(lo);
    }
    const int32_t cells = ((2 * kOneOrdinal) >> kCellShift) + 1;
    cell.resize(static_cast<size_t>(cells));
    for (int32_t c = 0; c < cells; ++c) cell[static_cast<size_t>(c)] = q((c << kCellShift) - kOneOrdinal);
  }

  uint8_t operator()(float x, const quant::Code256& code, bool is_signed) const {
    const int32_t o = float_ordinal(x);
    if (!(o >= -kOneOrdinal && o <= kOneOrdinal) || std::isnan(x)) return quantize_2d(x, code, is_signed);
    int v = cell[static_cast<size_t>((o + kOneOrdinal) >> kCellShift)];
    while (v < 255 && first[static_cast<size_t>(v) + 1] <= o) ++v;
    return static_cast<uint8_t>(v);
  }
};

const QuantizeTable& table_for(bool is_signed) {
  static const QuantizeTable signed_table(quant::dynamic_map_signed(), true);
  static const QuantizeTable unsigned_table(quant::dynamic_map_unsigned(), false);
  return is_signed ? signed_table : unsigned_table;
}

}  // namespace

uint8_t quantize_2d_dynamic(float x, bool is_signed) {
  return table_for(is_signed)(x, is_signed ? quant::dynamic_map_signed() : quant::dynamic_map_unsigned(),
                              is_signed);
}

AdamW8bit::AdamW8bit(std::vector<ParamRef> params, const AdamWConfig& config)
    : Optimizer(std::move(params), config),
      code1_(quant::dynamic_map_signed()),
      code2_(quant::dynamic_map_unsigned()) {
  for (const ParamRef& p : params_) {
    State s;
    const auto n = static_cast<size_t>(p.numel);
    s.quantised = p.numel >= kAdam8bitMinSize;
    if (s.quantised) {
      const auto blocks = static_cast<size_t>(quant::num_blocks(p.numel, kAdam8bitBlocksize));
      s.q1.assign(n, 0);
      s.q2.assign(n, 0);
      s.absmax1.assign(blocks, 0.0f);
      s.absmax2.assign(blocks, 0.0f);
    } else {
      s.s1.assign(n, 0.0f);
      s.s2.assign(n, 0.0f);
    }
    states_.push_back(std::move(s));
  }
}

void AdamW8bit::update(double lr_d) {
  // bnb passes betas, eps, lr and weight decay to the kernel as float32.
  const float beta1 = static_cast<float>(config_.beta1);
  const float beta2 = static_cast<float>(config_.beta2);
  const float lr = static_cast<float>(lr_d);
  const double t = static_cast<double>(step_);
  const float correction1 = static_cast<float>(1.0 - std::pow(static_cast<double>(beta1), t));
  const float correction2 = std::sqrt(static_cast<float>(1.0 - std::pow(static_cast<double>(beta2), t)));
  const float step_size = (-lr * correction2) / correction1;
  for (size_t i = 0; i < params_.size(); ++i) {
    const float wd = params_[i].decay ? static_cast<float>(config_.weight_decay) : 0.0f;
    const float decay = wd > 0.0f ? 1.0f - lr * wd : 1.0f;
    if (states_[i].quantised)
      update_8bit(params_[i], states_[i], step_size, correction2, decay);
    else
      update_32bit(params_[i], states_[i], step_size, correction2, decay);
  }
}

void AdamW8bit::update_32bit(const ParamRef& p, State& s, float step_size, float correction2,
                             float decay) const {
  const float beta1 = static_cast<float>(config_.beta1);
  const float beta2 = static_cast<float>(config_.beta2);
  const float omb1 = 1.0f - beta1, omb2 = 1.0f - beta2;
  const float eps_c2 = static_cast<float>(config_.eps) * correction2;
  float* __restrict__ w = p.value;
  const float* __restrict__ g = p.grad;
  float* __restrict__ s1 = s.s1.data();
  float* __restrict__ s2 = s.s2.data();
  for (int64_t j = 0; j < p.numel; ++j) {
    const float gj = g[j];
    s1[j] = s1[j] * beta1 + omb1 * gj;
    s2[j] = s2[j] * beta2 + omb2 * (gj * gj);
    w[j] = w[j] + step_size * (s1[j] / (std::sqrt(s2[j]) + eps_c2));
    w[j] = w[j] * decay;  // decay == 1 when there is no weight decay: exact no-op
  }
}

void AdamW8bit::update_8bit(const ParamRef& p, State& s, float step_size, float correction2,
                            float decay) const {
  const float beta1 = static_cast<float>(config_.beta1);
  const float beta2 = static_cast<float>(config_.beta2);
  const float omb1 = 1.0f - beta1, omb2 = 1.0f - beta2;
  const float eps_c2 = correction2 * static_cast<float>(config_.eps);
  const quant::Code256& code1 = code1_;
  const quant::Code256& code2 = code2_;
  const QuantizeTable& table1 = table_for(true);
  const QuantizeTable& table2 = table_for(false);
  const int64_t n = p.numel;
  const int64_t blocks = quant::num_blocks(n, kAdam8bitBlocksize);
#pragma omp parallel for if (n >= kParallelMin) schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * kAdam8bitBlocksize;
    const int64_t len = std::min(kAdam8bitBlocksize, n - begin);
    float s1v[kAdam8bitBlocksize], s2v[kAdam8bitBlocksize];  // the block's states in float32
    const float* g = p.grad + begin;
    float* w = p.value + begin;
    uint8_t* q1 = s.q1.data() + begin;
    uint8_t* q2 = s.q2.data() + begin;
    const float a1 = s.absmax1[static_cast<size_t>(b)], a2 = s.absmax2[static_cast<size_t>(b)];
    float max1 = -FLT_MAX, max2 = -FLT_MAX;
    for (int64_t j = 0; j < len; ++j) {
      const float gj = g[j];
      if (std::isfinite(gj)) {
        s2v[j] = code2[q2[j]] * a2;
        s2v[j] = s2v[j] * beta2 + omb2 * gj * gj;
        s1v[j] = code1[q1[j]] * a1;
        s1v[j] = s1v[j] * beta1 + omb1 * gj;
      } else {
        s1v[j] = 0.0f;
        s2v[j] = 0.0f;
      }
      max1 = std::max(max1, std::fabs(s1v[j]));
      max2 = std::max(max2, std::fabs(s2v[j]));
    }
    s.absmax1[static_cast<size_t>(b)] = max1;
    s.absmax2[static_cast<size_t>(b)] = max2;
    for (int64_t j = 0; j < len; ++j) {
      if (!std::isfinite(g[j])) continue;
      w[j] = w[j] + step_size * (s1v[j] / (std::sqrt(s2v[j]) + eps_c2));
      w[j] = w[j] * decay;
    }
    for (int64_t j = 0; j < len; ++j) {
      // Zero absmax: the GPU's 0/0 = NaN path yields q1 = 255 (after the sign fix) and q2 = 0.
      uint8_t c1 = 255;
      if (max1 > 0.0f) {
        c1 = table1(s1v[j] / max1, code1, true);
        // Keep the sign of the first moment through quantisation, as the kernel does.
        if (std::signbit(code1[c1]) != std::signbit(s1v[j]))
          c1 = static_cast<uint8_t>(s1v[j] > 0.0f ? c1 + 1 : c1 - 1);
      }
      q1[j] = c1;
      q2[j] = max2 > 0.0f ? table2(s2v[j] / max2, code2, false) : 0;
    }
  }
}

std::vector<float> AdamW8bit::exp_avg(size_t i) const {
  const State& s = states_.at(i);
  if (!s.quantised) return s.s1;
  std::vector<float> out(s.q1.size());
  quant::dequantize_blockwise(s.q1, s.absmax1, code1_, kAdam8bitBlocksize, out);
  return out;
}

std::vector<float> AdamW8bit::exp_avg_sq(size_t i) const {
  const State& s = states_.at(i);
  if (!s.quantised) return s.s2;
  std::vector<float> out(s.q2.size());
  quant::dequantize_blockwise(s.q2, s.absmax2, code2_, kAdam8bitBlocksize, out);
  return out;
}

// Tensor names follow bnb's state dict keys: state1/state2/absmax1/absmax2 for 8-bit tensors,
// state1/state2 as float32 for the 32-bit ones.
std::vector<std::string> AdamW8bit::state_tensor_names() const {
  std::vector<std::string> names;
  for (size_t i = 0; i < params_.size(); ++i) {
    names.push_back(params_[i].name + ".state1");
    names.push_back(params_[i].name + ".state2");
    if (states_[i].quantised) {
      names.push_back(params_[i].name + ".absmax1");
      names.push_back(params_[i].name + ".absmax2");
    }
  }
  return names;
}

void AdamW8bit::save_state(SafetensorsWriter& w) const {
  for (size_t i = 0; i < params_.size(); ++i) {
    const ParamRef& p = params_[i];
    const State& s = states_[i];
    if (s.quantised) {
      w.add(p.name + ".state1", DType::U8, {p.numel}, s.q1);
      w.add(p.name + ".state2", DType::U8, {p.numel}, s.q2);
      w.add_f32(p.name + ".absmax1", {static_cast<int64_t>(s.absmax1.size())}, s.absmax1);
      w.add_f32(p.name + ".absmax2", {static_cast<int64_t>(s.absmax2.size())}, s.absmax2);
    } else {
      w.add_f32(p.name + ".state1", {p.numel}, s.s1);
      w.add_f32(p.name + ".state2", {p.numel}, s.s2);
    }
  }
}

void AdamW8bit::load_state(const SafetensorsFile& f) {
  struct Views {
    const TensorView *st1, *st2, *am1 = nullptr, *am2 = nullptr;
  };
  std::vector<Views> views;  // validate everything first: a bad file leaves the state untouched
  for (size_t i = 0; i < params_.size(); ++i) {
    const ParamRef& p = params_[i];
    Views v{};
    if (states_[i].quantised) {
      const int64_t blocks = quant::num_blocks(p.numel, kAdam8bitBlocksize);
      v.st1 = &expect_state_tensor(f, p.name + ".state1", DType::U8, p.numel);
      v.st2 = &expect_state_tensor(f, p.name + ".state2", DType::U8, p.numel);
      v.am1 = &expect_state_tensor(f, p.name + ".absmax1", DType::F32, blocks);
      v.am2 = &expect_state_tensor(f, p.name + ".absmax2", DType::F32, blocks);
    } else {
      v.st1 = &expect_state_tensor(f, p.name + ".state1", DType::F32, p.numel);
      v.st2 = &expect_state_tensor(f, p.name + ".state2", DType::F32, p.numel);
    }
    views.push_back(v);
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    State& s = states_[i];
    const Views& v = views[i];
    if (s.quantised) {
      std::memcpy(s.q1.data(), v.st1->data, v.st1->nbytes);
      std::memcpy(s.q2.data(), v.st2->data, v.st2->nbytes);
      std::memcpy(s.absmax1.data(), v.am1->data, v.am1->nbytes);
      std::memcpy(s.absmax2.data(), v.am2->data, v.am2->nbytes);
    } else {
      std::memcpy(s.s1.data(), v.st1->data, v.st1->nbytes);
      std::memcpy(s.s2.data(), v.st2->data, v.st2->nbytes);
    }
  }
}

}  // namespace bidora::train
