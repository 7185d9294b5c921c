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
  // How the calls that follow are ordered, set by the decoder before each pass:
  //   false: a backward of (layer, kind) comes right after a forward of the same (layer, kind)
  //          with no other layer's forward in between (plain forward passes, and training with
  //          gradient checkpointing, where each layer is replayed right before its backward):
  //          state saved for the backward may be kept once per kind and overwritten by the next
  //          layer;
  //   true:  training without checkpointing: every layer's forward runs first, then the
  //          backwards in reverse layer order, so the state of every (layer, kind) must survive
  //          until its own backward.
  virtual void set_state_per_layer(bool per_layer) = 0;
  // x [n, in]; y [n, out] holds x·Wᵀ (no bias) and receives the adapted output (no bias).
  // Must be deterministic for a given training step, so that a checkpointed layer's replay
  // reproduces it (dropout masks included).
  virtual void forward(int64_t layer, LinearKind kind, const FrozenMatrix& W, const float* x, int64_t n,
                       float* y) = 0;
  // Whether the backward of (layer, kind) needs the forward's output (DoRA's magnitude gradient
  // reads x·Wᵀ). When it does not, a checkpoint replay whose output nobody reads (down_proj: the
  // layer's output is the next layer's checkpoint) calls forward with y == nullptr, which only
  // records the state backward needs, and skips the frozen product.
  virtual bool backward_needs_output(int64_t layer, LinearKind kind) const = 0;
  // Backward of the last forward of the same (layer, kind) (see set_state_per_layer), with the
  // same x. Overwrites dx [n, in] with the full input gradient (the frozen part included) and
  // accumulates the parameter gradients.
  virtual void backward(int64_t layer, LinearKind kind, const FrozenMatrix& W, const float* x,
                        const float* dy, int64_t n, float* dx) = 0;
};

}  // namespace bidora
