#include "model/swiglu.h"

#include <cmath>

namespace bidora {

void swiglu_forward(const float* gate, const float* up, int64_t n, float* act) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    act[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void swiglu_backward(const float* gate, const float* up, const float* dact, int64_t n, float* dgate,
                     float* dup) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i], u = up[i], d = dact[i];
    const float sig = 1.0f / (1.0f + std::exp(-g));
    const float silu = g * sig;
    dup[i] = d * silu;
    dgate[i] = d * u * sig * (1.0f + g * (1.0f - sig));
  }
}

}  // namespace bidora
