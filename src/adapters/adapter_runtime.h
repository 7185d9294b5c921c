#pragma once
// Runs an AdapterSet inside the decoder (the LinearAdapters hook). With gradient checkpointing
// the decoder replays each layer right before its backward, so one saved state per linear kind
// is enough: memory for saved adapter activations is one layer's worth, whatever the depth.
// Without checkpointing (set_state_per_layer(true)) every adapted linear keeps its own state
// (u = xd·Aᵀ [n, r], and for DoRA z [n, out] and the norms) until its backward.
#include <vector>

#include "adapters/adapter_set.h"
#include "model/linear_adapters.h"

namespace bidora {

class AdapterRuntime final : public LinearAdapters {
 public:
  explicit AdapterRuntime(AdapterSet& set)
      : set_(set), saved_(static_cast<size_t>(set.num_layers()) * kNumLinearKinds) {}

  // Training flag and dropout key for the passes that follow. Use one key per micro-batch and
  // keep it for every pass over that micro-batch (forward, replay, backward; BiDoRA's
  // perturbed passes), so all of them see the same dropout mask.
  void set_mode(const AdapterMode& mode) { mode_ = mode; }
  const AdapterMode& mode() const { return mode_; }
  // Which gradients backward accumulates (BiDoRA's finite-difference passes want dm only).
  void set_wants(const BackwardWants& wants) { wants_ = wants; }
  // The frozen products inside adapted linears (x Wᵀ, dy W) in bf16, as Decoder::set_bf16_compute;
  // the adapter's own factors (A, B, norms) always multiply in f32.
  void set_bf16_compute(bool on) { tile_.set_bf16_compute(on); }

  bool adapted(int64_t layer, LinearKind kind) const override { return set_.find(layer, kind) != nullptr; }
  void set_state_per_layer(bool per_layer) override { per_layer_ = per_layer; }
  bool backward_needs_output(int64_t layer, LinearKind kind) const override {
    const LoraLayer* l = set_.find(layer, kind);
    return l && l->dora();
  }
  void forward(int64_t layer, LinearKind kind, const FrozenMatrix& W, const float* x, int64_t n,
               float* y) override;
  void backward(int64_t layer, LinearKind kind, const FrozenMatrix& W, const float* x, const float* dy,
                int64_t n, float* dx) override;

  AdapterSet& set() { return set_; }

 private:
  LoraSaved& saved(int64_t layer, LinearKind kind);

  AdapterSet& set_;
  AdapterMode mode_;
  BackwardWants wants_;
  // [layer * kNumLinearKinds + kind] when per_layer_; else only the first kNumLinearKinds
  // entries are used, shared by all layers. Buffers grow to the largest batch and stay.
  std::vector<LoraSaved> saved_;
  bool per_layer_ = false;
  AdapterScratch scratch_;
  WeightTile tile_;
};

}  // namespace bidora
