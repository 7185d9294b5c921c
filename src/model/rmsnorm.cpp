#include "model/rmsnorm.h"

#include <cmath>

namespace bidora {

void rmsnorm_forward(const float* x, const float* w, int64_t n, int64_t dim, float eps, float* y,
                     float* inv_rms) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    // Accumulate in double: the mean of squares over thousands of values is where f32 drifts.
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float inv = 1.0f / std::sqrt(static_cast<float>(ss / dim) + eps);
    if (inv_rms) inv_rms[r] = inv;
    for (int64_t i = 0; i < dim; ++i) yr[i] = w[i] * (xr[i] * inv);
  }
}

void rmsnorm_backward(const float* x, const float* w, const float* inv_rms, const float* dy, int64_t n,
                      int64_t dim, float* dx) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * dim;
    const float* dyr = dy + r * dim;
    float* dxr = dx + r * dim;
    const float inv = inv_rms[r];
    double dot = 0;  // Σ x̂ ⊙ w ⊙ dy
    for (int64_t i = 0; i < dim; ++i) dot += static_cast<double>(xr[i]) * inv * w[i] * dyr[i];
    const float mean = static_cast<float>(dot / dim);
    for (int64_t i = 0; i < dim; ++i) dxr[i] = inv * (w[i] * dyr[i] - xr[i] * inv * mean);
  }
}

}  // namespace bidora
