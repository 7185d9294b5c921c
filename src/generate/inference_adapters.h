#pragma once
// LoRA / DoRA adapters with frozen parameters, for generation: the LinearAdapters hook with
// AdapterRuntime's inference-mode maths (no dropout) and one difference in cost. For DoRA,
// AdapterRuntime recomputes the weight norm n = ‖W + s·BA‖_row in every forward, because in
// training A and B change between steps; that is a pass over all of W with an [out, r] GEMM,
// which in a decode step costs several times the frozen product itself. Here each adapted
// linear's g = m / n is computed once, on first use, by the same LoraLayer::weight_norm, and kept.
// The rest is LoraLayer::forward without dropout, call for call:
//   LoRA: y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ;   DoRA: y = g ⊙ (x·Wᵀ + s·(x·Aᵀ)·Bᵀ).
// Outputs equal AdapterRuntime's bit for bit (tests/generate). There is no backward.
#include <cstdint>
#include <vector>

#include "adapters/adapter_set.h"
#include "adapters/lora_layer.h"
#include "model/linear_adapters.h"

namespace bidora {

class InferenceAdapters final : public LinearAdapters {
 public:
  // `set` must outlive this object and not change while it is used.
  explicit InferenceAdapters(const AdapterSet& set);

  bool adapted(int64_t layer, LinearKind kind) const override { return set_.find(layer, kind) != nullptr; }
  void set_pass(Pass) override {}  // forwards only: nothing is kept for a backward
  void forward(int64_t layer, LinearKind kind, const FrozenMatrix& W, const float* x, int64_t n,
               float* y) override;
  // Throws: generation never differentiates.
  void backward(int64_t layer, LinearKind kind, const FrozenMatrix& W, const float* x, const float* dy,
                int64_t n, float* dx) override;

 private:
  const AdapterSet& set_;
  std::vector<std::vector<float>> g_;  // [layer * kNumLinearKinds + kind]: DoRA's m / n, once computed
  std::vector<float> u_;               // x·Aᵀ [n, r]
  AdapterScratch scratch_;
  WeightTile tile_;
};

}  // namespace bidora
