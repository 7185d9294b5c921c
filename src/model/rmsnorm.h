#pragma once
// RMSNorm as HF computes it: y = x * rsqrt(mean(x²) + eps) * w (plain w, not 1 + w), in f32.
#include <cstdint>

namespace bidora {

// x, y: [n, dim] row-major (may alias). inv_rms (optional, [n]) receives rsqrt(mean(x²)+eps)
// for the backward pass.
void rmsnorm_forward(const float* x, const float* w, int64_t n, int64_t dim, float eps, float* y,
                     float* inv_rms);

// Gradient w.r.t. x for a frozen weight: dx = inv * (w ⊙ dy − x̂ · mean(x̂ ⊙ w ⊙ dy)), x̂ = x·inv.
// dx may alias dy. Accumulates nothing: dx is overwritten.
void rmsnorm_backward(const float* x, const float* w, const float* inv_rms, const float* dy, int64_t n,
                      int64_t dim, float* dx);

}  // namespace bidora
