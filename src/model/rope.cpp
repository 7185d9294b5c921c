#include "model/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace bidora {
namespace {

// transformers computes inv_freq = 1 / (base ** (arange(0, dim, 2).float() / dim)) in float32.
std::vector<float> default_inv_freq(double base, int64_t hd) {
  std::vector<float> f(hd / 2);
  for (int64_t i = 0; i < hd / 2; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(hd);
    f[i] = 1.0f / std::pow(static_cast<float>(base), e);
  }
  return f;
}

}  // namespace

RopeTable::RopeTable(const ModelConfig& cfg, int64_t max_positions)
    : half_(cfg.head_dim / 2), max_pos_(max_positions) {
  const int64_t hd = cfg.head_dim;
  const RopeScaling& rs = cfg.rope_scaling;
  double base = cfg.rope_theta;
  if (rs.type == "dynamic" && max_positions > cfg.max_position_embeddings) {
    // Dynamic NTK: only beyond the trained context.
    const double seq = static_cast<double>(max_positions);
    base = base * std::pow(rs.factor * seq / cfg.max_position_embeddings - (rs.factor - 1.0),
                           static_cast<double>(hd) / (hd - 2));
  }
  inv_freq_ = default_inv_freq(base, hd);
  if (rs.type == "linear") {
    for (float& f : inv_freq_) f = f / static_cast<float>(rs.factor);
  } else if (rs.type == "llama3") {
    const double L = static_cast<double>(rs.original_max_position_embeddings);
    const double low_wavelen = L / rs.low_freq_factor, high_wavelen = L / rs.high_freq_factor;
    for (float& f : inv_freq_) {
      const double wavelen = 2 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f = static_cast<float>(f / rs.factor);
      } else if (wavelen >= high_wavelen) {
        const double s = (L / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        f = static_cast<float>((1 - s) * f / rs.factor + s * f);
      }
    }
  } else if (rs.type == "yarn") {
    const double factor = rs.factor;
    const double L =
        static_cast<double>(rs.original_max_position_embeddings ? rs.original_max_position_embeddings
                                                                : cfg.max_position_embeddings);
    auto correction_dim = [&](double rotations) {
      return hd * std::log(L / (rotations * 2 * std::numbers::pi)) / (2 * std::log(base));
    };
    double low = std::floor(correction_dim(rs.beta_fast));
    double high = std::ceil(correction_dim(rs.beta_slow));
    low = std::max(low, 0.0);
    high = std::min(high, static_cast<double>(hd - 1));
    if (low == high) high += 0.001;
    for (int64_t i = 0; i < half_; ++i) {
      const float pos_freq =
          std::pow(static_cast<float>(base), static_cast<float>(2 * i) / static_cast<float>(hd));
      const float extrap = 1.0f / pos_freq;
      const float interp = 1.0f / (static_cast<float>(factor) * pos_freq);
      const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
      const float extrap_w = static_cast<float>(1.0 - ramp);
      inv_freq_[i] = interp * (1 - extrap_w) + extrap * extrap_w;
    }
    attention_scaling_ = rs.attention_factor
                             ? static_cast<float>(*rs.attention_factor)
                             : (factor <= 1 ? 1.0f : static_cast<float>(0.1 * std::log(factor) + 1.0));
  }
  cos_.resize(max_pos_ * half_);
  sin_.resize(max_pos_ * half_);
  for (int64_t p = 0; p < max_pos_; ++p) {
    for (int64_t i = 0; i < half_; ++i) {
      const float f = static_cast<float>(p) * inv_freq_[i];  // one float32 product, as HF's matmul
      cos_[p * half_ + i] = std::cos(f) * attention_scaling_;
      sin_[p * half_ + i] = std::sin(f) * attention_scaling_;
    }
  }
}

namespace {
template <bool kInverse>
void rope_apply(float* x, const int32_t* pos, int64_t n, int64_t heads, int64_t hd, const RopeTable& rope) {
  const int64_t half = hd / 2;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const float* c = rope.cos(pos[t]);
    const float* s = rope.sin(pos[t]);
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + (t * heads + h) * hd;
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        if constexpr (kInverse) {
          v[i] = a * c[i] + b * s[i];
          v[i + half] = b * c[i] - a * s[i];
        } else {
          v[i] = a * c[i] - b * s[i];
          v[i + half] = b * c[i] + a * s[i];
        }
      }
    }
  }
}
}  // namespace

void rope_forward(float* x, const int32_t* pos, int64_t n, int64_t heads, int64_t hd, const RopeTable& rope) {
  rope_apply<false>(x, pos, n, heads, hd, rope);
}
void rope_backward(float* dx, const int32_t* pos, int64_t n, int64_t heads, int64_t hd,
                   const RopeTable& rope) {
  rope_apply<true>(dx, pos, n, heads, hd, rope);
}

}  // namespace bidora
