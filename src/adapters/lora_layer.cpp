#include "adapters/lora_layer.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "adapters/counter_rng.h"
#include "core/backend.h"
#include "core/error.h"

namespace bidora {

float* AdapterScratch::get(int slot, size_t floats) {
  auto& v = slots_[slot];
  if (v.size() < floats) v.resize(floats);
  return v.data();
}

namespace {

// Scratch slots: each call of forward/backward uses them for one purpose at a time.
enum Slot { kDroppedX = 0, kRowGrad = 1, kSmall = 2, kInputGrad = 3, kLoraBlock = 4 };
// Tokens per block of DoRA's forward combination (its [block, out] product stays in cache).
constexpr int64_t kCombineTokens = 128;

uint64_t init_stream(uint64_t seed, int64_t layer, LinearKind kind) {
  return mix_key(mix_key(mix_key(seed, 0x1A17'A5EEDull), static_cast<uint64_t>(layer)),
                 static_cast<uint64_t>(kind));
}

}  // namespace

std::vector<double> row_norms_squared(const FrozenMatrix& W, WeightTile& tile) {
  std::vector<double> out(W.rows());
  const int64_t in = W.cols();
  for_each_row_tile(W, tile, [&](int64_t r0, int64_t rows, const float* w) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows; ++i) {
      double acc = 0;
      for (int64_t j = 0; j < in; ++j) acc += static_cast<double>(w[i * in + j]) * w[i * in + j];
      out[r0 + i] = acc;
    }
  });
  return out;
}

LoraLayer::LoraLayer(const AdapterConfig& cfg, const FrozenMatrix& W, int64_t layer, LinearKind kind,
                     uint64_t init_seed, WeightTile& tile)
    : layer_(layer),
      kind_(kind),
      in_(W.cols()),
      out_(W.rows()),
      r_(cfg.r),
      scaling_(static_cast<float>(cfg.scaling())),
      p_(static_cast<float>(cfg.dropout)),
      dora_(cfg.method == LoraVariant::DoRA) {
  cfg.validate();
  BIDORA_CHECK(!W.empty(), "LoRA layer {} {}: the frozen weight is empty", layer, linear_name(kind));
  A.assign(r_ * in_, 0.0f);
  B.assign(out_ * r_, 0.0f);  // PEFT: B = 0, so the adapter starts as the identity
  const uint64_t stream = init_stream(init_seed, layer, kind);
  if (cfg.init == AdapterInit::KaimingUniform) {
    // kaiming_uniform_(a=√5) on [r, in]: gain √(1/3), bound = √3·gain/√in = 1/√in.
    const float bound = 1.0f / std::sqrt(static_cast<float>(in_));
    for (int64_t i = 0; i < r_ * in_; ++i) A[i] = bound * (2.0f * counter_uniform(stream, i) - 1.0f);
  } else {
    // N(0, (1/r)²) by Box-Muller on two independent uniforms per element; 1 − u lies in (0, 1].
    const double sd = 1.0 / static_cast<double>(r_);
    for (int64_t i = 0; i < r_ * in_; ++i) {
      const double u1 = 1.0 - counter_uniform(stream, 2 * i), u2 = counter_uniform(stream, 2 * i + 1);
      A[i] = static_cast<float>(sd * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2));
    }
  }
  if (dora_) {
    w_norm2_ = row_norms_squared(W, tile);
    m.resize(out_);
    for (int64_t i = 0; i < out_; ++i) m[i] = static_cast<float>(std::sqrt(w_norm2_[i]));
  }
  zero_grad();
}

void LoraLayer::zero_grad() {
  dA.assign(A.size(), 0.0f);
  dB.assign(B.size(), 0.0f);
  dm.assign(m.size(), 0.0f);
}

void LoraLayer::weight_norm(const FrozenMatrix& W, float* norm, AdapterScratch& scratch,
                            WeightTile& tile) const {
  BIDORA_CHECK(dora_, "weight_norm is defined for DoRA layers only");
  const int64_t r = r_, in = in_;
  float* WA = scratch.get(kSmall, static_cast<size_t>(out_ * r + r * r));  // [out, r] then A Aᵀ [r, r]
  float* AA = WA + out_ * r;
  for_each_row_tile(W, tile, [&](int64_t r0, int64_t rows, const float* w) {
    sgemm(false, true, rows, r, in, 1.0f, w, in, A.data(), in, 0.0f, WA + r0 * r, r);
  });
  sgemm(false, true, r, r, in, 1.0f, A.data(), in, A.data(), in, 0.0f, AA, r);
  const double s = scaling_;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < out_; ++i) {
    const float* b = B.data() + i * r;
    double cross = 0, quad = 0;
    for (int64_t k = 0; k < r; ++k) {
      cross += static_cast<double>(WA[i * r + k]) * b[k];
      double row = 0;
      for (int64_t l = 0; l < r; ++l) row += static_cast<double>(AA[k * r + l]) * b[l];
      quad += b[k] * row;
    }
    // Rounding could push a (mathematically non-negative) tiny square below zero.
    norm[i] = static_cast<float>(std::sqrt(std::max(0.0, w_norm2_[i] + 2.0 * s * cross + s * s * quad)));
  }
}

void LoraLayer::forward(const float* x, int64_t n, const FrozenMatrix& W, float* y, const AdapterMode& mode,
                        LoraSaved& saved, AdapterScratch& scratch, WeightTile& tile,
                        const float* known_norm) const {
  BIDORA_CHECK(W.rows() == out_ && W.cols() == in_,
               "LoRA layer {} {}: weight is [{}, {}], adapter expects [{}, {}]", layer_, linear_name(kind_),
               W.rows(), W.cols(), out_, in_);
  saved.n = n;
  saved.dropped = mode.training && p_ > 0.0f;
  saved.dropout = mode.dropout;
  const float* xd = x;
  if (saved.dropped) {
    float* buf = scratch.get(kDroppedX, static_cast<size_t>(n * in_));
    const uint64_t stream = dropout_stream(mode.dropout, layer_, kind_);
    if (dora_) {  // DoRA needs the dropped positions themselves: one pass of the generator for both
      find_dropped(n, in_, p_, stream, mode.dropout.row0, scratch.dropped(kind_));
      dropout_apply_dropped(x, scratch.dropped(kind_), p_, buf);
    } else {
      dropout_apply(x, n, in_, p_, stream, mode.dropout.row0, buf);
    }
    xd = buf;
  }
  saved.u.resize(n * r_);
  sgemm(false, true, n, r_, in_, 1.0f, xd, in_, A.data(), in_, 0.0f, saved.u.data(), r_);
  if (!dora_) {
    sgemm(false, true, n, out_, r_, scaling_, saved.u.data(), r_, B.data(), r_, 1.0f, y, out_);
    return;
  }
  saved.norm.resize(out_);
  saved.g.resize(out_);
  if (known_norm)
    std::copy(known_norm, known_norm + out_, saved.norm.begin());
  else
    weight_norm(W, saved.norm.data(), scratch, tile);
  // A zero row of W + s·BA has no direction; PEFT would produce NaN. Keep such rows at zero.
  for (int64_t i = 0; i < out_; ++i) saved.g[i] = saved.norm[i] > 0.0f ? m[i] / saved.norm[i] : 0.0f;
  saved.z.resize(n * out_);
  float* z = saved.z.data();
  const float* g = saved.g.data();
  if (saved.dropped) {
    // The (g − 1) term multiplies the DROPPED input's frozen output xd Wᵀ = (x Wᵀ − (x ⊙ drop) Wᵀ)
    // / (1 − p): y holds x Wᵀ, and only the dropped inputs (fraction p) need a product (into z
    // first). The set was found for xd above.
    dropped_times_wt(x, scratch.dropped(kind_), W, tile, scratch.panels, z, out_);
  }
  // The adapter's term s·u Bᵀ and the element-wise combination, a block of tokens at a time: the
  // block's product is still in cache for the one pass that combines it with y and z (instead of
  // a GEMM accumulating into z and two more passes over [n, out]).
  //   z = xd Wᵀ + s·u Bᵀ;  dropped: y = x Wᵀ − xd Wᵀ + g ⊙ z;  else (xd Wᵀ = x Wᵀ): y = g ⊙ z.
  const int64_t block = std::min<int64_t>(kCombineTokens, n);
  float* lora = scratch.get(kLoraBlock, static_cast<size_t>(block * out_));
  const float keep_scale = 1.0f / (1.0f - p_);
  for (int64_t t0 = 0; t0 < n; t0 += block) {
    const int64_t rows = std::min(block, n - t0);
    sgemm(false, true, rows, out_, r_, scaling_, saved.u.data() + t0 * r_, r_, B.data(), r_, 0.0f, lora,
          out_);
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < rows; ++t) {
      float* yt = y + (t0 + t) * out_;
      float* zt = z + (t0 + t) * out_;
      const float* lt = lora + t * out_;
      if (saved.dropped) {
        for (int64_t i = 0; i < out_; ++i) {
          const float xdw = (yt[i] - zt[i]) * keep_scale;
          const float zi = xdw + lt[i];
          zt[i] = zi;
          yt[i] = (yt[i] - xdw) + g[i] * zi;
        }
      } else {
        for (int64_t i = 0; i < out_; ++i) {
          const float zi = yt[i] + lt[i];
          zt[i] = zi;
          yt[i] = g[i] * zi;
        }
      }
    }
  }
}

void LoraLayer::backward(const float* x, const float* dy, int64_t n, const FrozenMatrix& W,
                         const LoraSaved& saved, float* dx, const BackwardWants& wants,
                         AdapterScratch& scratch, WeightTile& tile) {
  BIDORA_CHECK(saved.n == n && static_cast<int64_t>(saved.u.size()) >= n * r_,
               "LoRA layer {} {}: backward for {} rows but the forward saved {}", layer_, linear_name(kind_),
               n, saved.n);
  const uint64_t stream = dropout_stream(saved.dropout, layer_, kind_);
  const int64_t row0 = saved.dropout.row0;
  // DoRA with dropout: the dropped positions (the same key as the forward's, so the same mask)
  // serve the dropped input, the sampled product and the dropout backward below.
  if (saved.dropped && dora_) find_dropped(n, in_, p_, stream, row0, scratch.dropped(kind_));
  const float* xd = x;
  if (saved.dropped && wants.directions) {
    float* buf = scratch.get(kDroppedX, static_cast<size_t>(n * in_));
    if (dora_)
      dropout_apply_dropped(x, scratch.dropped(kind_), p_, buf);
    else
      dropout_apply(x, n, in_, p_, stream, row0, buf);  // same key, so the same mask as the forward
    xd = buf;
  }
  // dz: the gradient reaching the LoRA product s·u Bᵀ (dy for LoRA, dy ⊙ g for DoRA).
  const float* dz = dy;
  if (dora_) {
    float* buf = scratch.get(kRowGrad, static_cast<size_t>(n * out_));
    const float* g = saved.g.data();
    dz = buf;
    if (!wants.magnitude) {
#pragma omp parallel for schedule(static)
      for (int64_t t = 0; t < n; ++t)
        for (int64_t i = 0; i < out_; ++i) buf[t * out_ + i] = dy[t * out_ + i] * g[i];
    } else {
      // dm_i = Σ_t dy_ti z_ti / n_i (n detached), accumulated in double over the tokens, in the
      // same pass that writes dz = dy ⊙ g (dy is read once). Blocks of kColumns outputs walk the
      // tokens row by row (contiguous reads, unlike one column at a time); each output's sum
      // still runs over t in order, whatever the threads.
      const float* z = saved.z.data();
      constexpr int64_t kColumns = 64;
#pragma omp parallel for schedule(static)
      for (int64_t i0 = 0; i0 < out_; i0 += kColumns) {
        const int64_t width = std::min(kColumns, out_ - i0);
        double acc[kColumns] = {};
        const float* gb = g + i0;
        for (int64_t t = 0; t < n; ++t) {
          const float* dyt = dy + t * out_ + i0;
          const float* zt = z + t * out_ + i0;
          float* dzt = buf + t * out_ + i0;
#pragma omp simd
          for (int64_t c = 0; c < width; ++c) {
            acc[c] += static_cast<double>(dyt[c]) * zt[c];
            dzt[c] = dyt[c] * gb[c];
          }
        }
        for (int64_t c = 0; c < width; ++c)
          if (saved.norm[i0 + c] > 0.0f) dm[i0 + c] += static_cast<float>(acc[c] / saved.norm[i0 + c]);
      }
    }
  }
  // v = dz B [n, r]
  float* v = scratch.get(kSmall, static_cast<size_t>(n * r_ + out_));  // + DoRA's g − 1 below
  sgemm(false, false, n, r_, out_, 1.0f, dz, out_, B.data(), r_, 0.0f, v, r_);
  if (wants.directions) {
    sgemm(true, false, out_, r_, n, scaling_, dz, out_, saved.u.data(), r_, 1.0f, dB.data(),
          r_);                                                                       // dB += s dzᵀ u
    sgemm(true, false, r_, in_, n, scaling_, v, r_, xd, in_, 1.0f, dA.data(), in_);  // dA += s vᵀ xd
  }
  if (!dx) return;
  if (!saved.dropped) {
    // dx = dz W + s·v A: for DoRA the (g − 1)·x Wᵀ term folds into the frozen GEMM as dy ⊙ g.
    linear_backward_input(dz, n, W, dx, 0.0f, tile);
    sgemm(false, false, n, in_, r_, scaling_, v, r_, A.data(), in_, 1.0f, dx, in_);
    return;
  }
  // With dropout the adapter terms see xd: dx = dy W + keep ⊙ [(dy ⊙ (g − 1)) W + s·v A] / (1 − p).
  float* gxd = scratch.get(kInputGrad, static_cast<size_t>(n * in_));
  sgemm(false, false, n, in_, r_, scaling_, v, r_, A.data(), in_, 0.0f, gxd, in_);
  if (!dora_) {
    linear_backward_input(dy, n, W, dx, 0.0f, tile);
    dropout_backward_add(gxd, n, in_, p_, stream, row0, dx);
    return;
  }
  // DoRA: keep = 1 − drop turns the two frozen products into one, (dy ⊙ c) W with
  // c = 1 + (g − 1)/(1 − p), minus (dy ⊙ (g − 1)) W / (1 − p) at the dropped positions only
  // (dropped_product.h), which receive the frozen path dy W alone.
  const float keep_scale = 1.0f / (1.0f - p_);
  float* g_minus_1 = v + n * r_;
  float* dyc = scratch.get(kRowGrad, static_cast<size_t>(n * out_));  // dz is no longer needed: reuse
  const float* g = saved.g.data();
  for (int64_t i = 0; i < out_; ++i) g_minus_1[i] = g[i] - 1.0f;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < out_; ++i)
      dyc[t * out_ + i] = dy[t * out_ + i] * (1.0f + g_minus_1[i] * keep_scale);
  linear_backward_input(dyc, n, W, dx, 0.0f, tile);
  sampled_dy_times_w(dy, g_minus_1, scratch.dropped(kind_), W, tile, scratch.panels, scratch.sampled);
  dropout_backward_add_dropped(gxd, scratch.sampled.data(), scratch.dropped(kind_), p_, dx);
}

std::vector<float> LoraLayer::merged_weight(const FrozenMatrix& W, WeightTile& tile) const {
  std::vector<float> out(static_cast<size_t>(out_ * in_));
  const double s = scaling_;
  for_each_row_tile(W, tile, [&](int64_t r0, int64_t rows, const float* w) {
#pragma omp parallel for schedule(static)
    for (int64_t ii = 0; ii < rows; ++ii) {
      const int64_t i = r0 + ii;
      std::vector<double> row(static_cast<size_t>(in_));
      for (int64_t j = 0; j < in_; ++j) {
        double d = 0;
        for (int64_t k = 0; k < r_; ++k) d += static_cast<double>(B[i * r_ + k]) * A[k * in_ + j];
        row[j] = w[ii * in_ + j] + s * d;
      }
      double scale = 1.0;
      if (dora_) {
        double n2 = 0;
        for (double e : row) n2 += e * e;
        scale = n2 > 0 ? m[i] / std::sqrt(n2) : 0.0;
      }
      for (int64_t j = 0; j < in_; ++j) out[i * in_ + j] = static_cast<float>(scale * row[j]);
    }
  });
  return out;
}

}  // namespace bidora
