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
  // How the calls that follow are ordered, set by the decoder before each pass.
  enum class Pass {
    // Forwards only (inference, evaluation): no backward follows; state may be overwritten by
    // the next layer.
    kForward,
    // Training with gradient checkpointing: every layer's forward first; then, last layer first,
    // each layer is replayed up to its MLP activation (its down_proj is NOT replayed: the
    // layer's output is the next layer's checkpoint) and its backwards run. So the state
    // down_proj's forward saved must survive until its backward, one per layer (u [n, r], and for
    // DoRA z [n, H]: cheaper to keep than a replayed down_proj product); the other kinds' state
    // is refilled by the replay and may be kept once per kind.
    kCheckpointedTraining,
    // Training without checkpointing: every layer's forward runs first, then the backwards in
    // reverse layer order, so the state of every (layer, kind) must survive until its own
    // backward.
    kStoredTraining,
  };
  virtual void set_pass(Pass pass) = 0;
  // x [n, in]; y [n, out] holds x·Wᵀ (no bias) and receives the adapted output (no bias).
  // Must be deterministic for a given training step, so that a checkpointed layer's replay
  // reproduces it (dropout masks included).
  virtual void forward(int64_t layer, LinearKind kind, const FrozenMatrix& W, const float* x, int64_t n,
                       float* y) = 0;
  // Backward of the last forward of the same (layer, kind) (see Pass), with the same x.
  // Overwrites dx [n, in] with the full input gradient (the frozen part included) and
  // accumulates the parameter gradients.
  virtual void backward(int64_t layer, LinearKind kind, const FrozenMatrix& W, const float* x,
                        const float* dy, int64_t n, float* dx) = 0;
};

}  // namespace bidora
