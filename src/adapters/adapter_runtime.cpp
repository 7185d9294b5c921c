#include "adapters/adapter_runtime.h"

namespace bidora {

void AdapterRuntime::forward(int64_t layer, LinearKind kind, const FrozenMatrix& W, const float* x, int64_t n,
                             float* y) {
  set_.find(layer, kind)->forward(x, n, W, y, mode_, saved_[static_cast<int>(kind)], scratch_, tile_);
}

void AdapterRuntime::backward(int64_t layer, LinearKind kind, const FrozenMatrix& W, const float* x,
                              const float* dy, int64_t n, float* dx) {
  set_.find(layer, kind)->backward(x, dy, n, W, saved_[static_cast<int>(kind)], dx, wants_, scratch_, tile_);
}

}  // namespace bidora
