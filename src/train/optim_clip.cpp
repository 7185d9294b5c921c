#include "train/optim_clip.h"

#include <cmath>
#include <vector>

namespace bidora::train {

namespace {

constexpr int64_t kChunk = 1 << 16;

// ||x||_2 rounded to float; double accumulation per fixed chunk, chunks summed in order.
float l2_norm(const float* x, int64_t n) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
#pragma omp parallel for if (chunks > 1) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk, end = std::min(n, begin + kChunk);
    double s = 0;
    for (int64_t j = begin; j < end; ++j) s += static_cast<double>(x[j]) * static_cast<double>(x[j]);
    partial[static_cast<size_t>(c)] = s;
  }
  double total = 0;
  for (double s : partial) total += s;
  return static_cast<float>(std::sqrt(total));
}

}  // namespace

double grad_norm(std::span<const ParamRef> params) {
  double total = 0;
  for (const ParamRef& p : params) {
    const double n = l2_norm(p.grad, p.numel);
    total += n * n;
  }
  return static_cast<float>(std::sqrt(total));
}

double clip_grad_norm(std::span<const ParamRef> params, double max_norm) {
  const double total = grad_norm(params);
  if (max_norm <= 0) return total;
  const float coef = static_cast<float>(max_norm) / (static_cast<float>(total) + 1e-6f);
  if (!(coef >= 1.0f)) scale_grads(params, coef);  // NaN coefficient is applied, as torch does
  return total;
}

void scale_grads(std::span<const ParamRef> params, float factor) {
  for (const ParamRef& p : params) {
    float* g = p.grad;
    const int64_t n = p.numel;
#pragma omp parallel for simd if (n >= (1 << 15)) schedule(static)
    for (int64_t j = 0; j < n; ++j) g[j] *= factor;
  }
}

}  // namespace bidora::train
