#pragma once
// Runs an AdapterSet inside the decoder (the LinearAdapters hook). With gradient checkpointing
// the decoder replays each layer, but for its down_proj, right before its backward: one saved
// state per linear kind serves the replayed kinds, and down_proj keeps one per layer from the
// first forward (u = xd·Aᵀ [n, r], and for DoRA z [n, H] and the norms). Without checkpointing
// every adapted linear keeps its own state until its backward.
#include <cstdint>
#include <vector>

#include "adapters/adapter_set.h"
#include "model/linear_adapters.h"

namespace bidora {

class AdapterRuntime final : public LinearAdapters {
 public:
  explicit AdapterRuntime(AdapterSet& set)
      : set_(set), saved_(static_cast<size_t>(set.num_layers()) * kNumLinearKinds), norms_(saved_.size()) {}

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
  void set_pass(Pass pass) override {
    pass_ = pass;
    ++pass_id_;
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
  // [layer * kNumLinearKinds + kind] for the states kept per layer (every kind in
  // kStoredTraining, down_proj in kCheckpointedTraining); the others share the first
  // kNumLinearKinds entries. Buffers grow to the largest batch and stay.
  std::vector<LoraSaved> saved_;
  Pass pass_ = Pass::kForward;
  // DoRA's row norms ‖W + s·BA‖ per [layer * kNumLinearKinds + kind], from the first forward of a
  // checkpointed pass, for its replay (A and B do not change within a pass; one [out] per linear).
  struct KnownNorm {
    uint64_t pass_id = 0;
    std::vector<float> norm;
  };
  std::vector<KnownNorm> norms_;
  uint64_t pass_id_ = 0;
  AdapterScratch scratch_;
  WeightTile tile_;
};

}  // namespace bidora
