#pragma once
// Helpers for the adapter tests: random data, and a naive double-precision re-statement of the
// PEFT LoRA/DoRA forward that the optimised layer is checked against.
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "adapters/lora_layer.h"
#include "model/frozen_matrix.h"

namespace bidora::test {

inline std::vector<float> random_vec(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (auto& e : v) e = d(gen);
  return v;
}

// The float32 values the frozen matrix really multiplies with (dequantised for NF4, rounded for bf16).
inline std::vector<double> dense_weight(const FrozenMatrix& W) {
  std::vector<float> f(static_cast<size_t>(W.rows() * W.cols()));
  W.rows_f32(0, W.rows(), f.data());
  return {f.begin(), f.end()};
}

struct NaiveParams {
  std::vector<double> W, A, B, m, x;  // [out,in], [r,in], [out,r], [out], [n,in]
  int64_t n, in, out, r;
  double s;
  bool dora;
  std::vector<double> mask;                 // [n,in] keep scale (0 or 1/(1-p)); empty = no dropout
  std::optional<std::vector<double>> norm;  // DoRA: a fixed (detached) norm; computed when absent
};

inline std::vector<double> naive_norm(const NaiveParams& p) {
  std::vector<double> nrm(p.out);
  for (int64_t i = 0; i < p.out; ++i) {
    double acc = 0;
    for (int64_t j = 0; j < p.in; ++j) {
      double v = p.W[i * p.in + j];
      for (int64_t k = 0; k < p.r; ++k) v += p.s * p.B[i * p.r + k] * p.A[k * p.in + j];
      acc += v * v;
    }
    nrm[i] = std::sqrt(acc);
  }
  return nrm;
}

// y = x Wᵀ + (g − 1) ⊙ (xd Wᵀ) + g ⊙ s (xd Aᵀ) Bᵀ  (DoRA, g = m / n) or x Wᵀ + s (xd Aᵀ) Bᵀ (LoRA).
inline std::vector<double> naive_forward(const NaiveParams& p) {
  std::vector<double> xd = p.x;
  if (!p.mask.empty())
    for (size_t e = 0; e < xd.size(); ++e) xd[e] *= p.mask[e];
  std::vector<double> g(p.out, 1.0);
  if (p.dora) {
    const std::vector<double> nrm = p.norm ? *p.norm : naive_norm(p);
    for (int64_t i = 0; i < p.out; ++i) g[i] = p.m[i] / nrm[i];
  }
  std::vector<double> y(p.n * p.out);
  for (int64_t t = 0; t < p.n; ++t) {
    std::vector<double> u(p.r, 0.0);
    for (int64_t k = 0; k < p.r; ++k)
      for (int64_t j = 0; j < p.in; ++j) u[k] += xd[t * p.in + j] * p.A[k * p.in + j];
    for (int64_t i = 0; i < p.out; ++i) {
      double base = 0, based = 0, lora = 0;
      for (int64_t j = 0; j < p.in; ++j) {
        base += p.x[t * p.in + j] * p.W[i * p.in + j];
        based += xd[t * p.in + j] * p.W[i * p.in + j];
      }
      for (int64_t k = 0; k < p.r; ++k) lora += p.s * u[k] * p.B[i * p.r + k];
      y[t * p.out + i] = p.dora ? base + (g[i] - 1.0) * based + g[i] * lora : base + lora;
    }
  }
  return y;
}

// Largest |a − b| relative to the largest |b| (a scale-aware error for whole tensors).
template <typename A, typename B>
double rel_error(const std::vector<A>& a, const std::vector<B>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return a.size() == b.size() ? num / std::max(den, 1e-30) : 1e30;
}

template <typename T>
std::vector<double> to_f64(const std::vector<T>& v) {
  return {v.begin(), v.end()};
}

}  // namespace bidora::test
