#pragma once
// Trainable additions to the frozen Linear layers, as the decoder sees them. src/adapters
// implements this for LoRA / rsLoRA / DoRA; the decoder only knows which linears are adapted
// and calls forward/backward around them.
#include <cstdint>

#include "model/frozen_matrix.h"
#include "model/weights.h"

namespace bidora {

class LinearAdapters {
 public:
  virtual ~LinearAdapters() = default;
  virtual bool adapted(int64_t layer, LinearKind kind) const = 0;
  // x [n, in]; y [n, out] holds x·Wᵀ (no bias) and receives the adapted output (no bias).
  // Must be deterministic for a given training step, so that a checkpointed layer's replay
  // reproduces it (dropout masks included).
  virtual void forward(int64_t layer, LinearKind kind, const FrozenMatrix& W, const float* x, int64_t n,
                       float* y) = 0;
  // Called right after forward of the same (layer, kind) was replayed. Overwrites dx [n, in] with
  // the full input gradient (the frozen part included) and accumulates the parameter gradients.
  virtual void backward(int64_t layer, LinearKind kind, const FrozenMatrix& W, const float* x,
                        const float* dy, int64_t n, float* dx) = 0;
};

}  // namespace bidora
