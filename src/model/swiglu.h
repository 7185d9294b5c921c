#pragma once
// The gated MLP activation of Llama/Qwen/Mistral: a = silu(gate) ⊙ up.
#include <cstdint>

namespace bidora {

void swiglu_forward(const float* gate, const float* up, int64_t n, float* act);
// dgate, dup from dact (may alias gate/up storage of the caller's choosing: all reads happen
// before the writes of the same element).
void swiglu_backward(const float* gate, const float* up, const float* dact, int64_t n, float* dgate,
                     float* dup);

}  // namespace bidora
