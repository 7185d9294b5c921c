#include "adapters/adapter_runtime.h"

namespace bidora {

LoraSaved& AdapterRuntime::saved(int64_t layer, LinearKind kind) {
  const bool per_layer =
      pass_ == Pass::kStoredTraining || (pass_ == Pass::kCheckpointedTraining && kind == LinearKind::Down);
  const int64_t slot = (per_layer ? layer * kNumLinearKinds : 0) + static_cast<int>(kind);
  return saved_[static_cast<size_t>(slot)];
}

void AdapterRuntime::forward(int64_t layer, LinearKind kind, const FrozenMatrix& W, const float* x, int64_t n,
                             float* y) {
  const LoraLayer& adapter = *set_.find(layer, kind);
  LoraSaved& state = saved(layer, kind);
  if (!(adapter.dora() && pass_ == Pass::kCheckpointedTraining)) {
    adapter.forward(x, n, W, y, mode_, state, scratch_, tile_);
    return;
  }
  // The replay of a checkpointed layer repeats its first forward over the same A and B: the row
  // norms (a pass over W and a GEMM with A) are taken from that forward.
  KnownNorm& known = norms_[static_cast<size_t>(layer * kNumLinearKinds + static_cast<int>(kind))];
  const bool have = known.pass_id == pass_id_;
  adapter.forward(x, n, W, y, mode_, state, scratch_, tile_, have ? known.norm.data() : nullptr);
  if (!have) {
    known.norm = state.norm;
    known.pass_id = pass_id_;
  }
}

void AdapterRuntime::backward(int64_t layer, LinearKind kind, const FrozenMatrix& W, const float* x,
                              const float* dy, int64_t n, float* dx) {
  set_.find(layer, kind)->backward(x, dy, n, W, saved(layer, kind), dx, wants_, scratch_, tile_);
}

}  // namespace bidora
