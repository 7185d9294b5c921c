#include "adapters/adapter_runtime.h"

namespace bidora {

LoraSaved& AdapterRuntime::saved(int64_t layer, LinearKind kind) {
  const int64_t slot = (per_layer_ ? layer * kNumLinearKinds : 0) + static_cast<int>(kind);
  return saved_[static_cast<size_t>(slot)];
}

void AdapterRuntime::forward(int64_t layer, LinearKind kind, const FrozenMatrix& W, const float* x, int64_t n,
                             float* y) {
  set_.find(layer, kind)->forward(x, n, W, y, mode_, saved(layer, kind), scratch_, tile_);
}

void AdapterRuntime::backward(int64_t layer, LinearKind kind, const FrozenMatrix& W, const float* x,
                              const float* dy, int64_t n, float* dx) {
  set_.find(layer, kind)->backward(x, dy, n, W, saved(layer, kind), dx, wants_, scratch_, tile_);
}

}  // namespace bidora
