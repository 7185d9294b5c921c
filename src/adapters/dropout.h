#pragma once
// Inverted dropout on the LoRA branch input with a reproducible, counter-based mask.
// Element (t, j) of a call is kept iff splitmix_uniform(stream, (row0 + t) * cols + j) >= p, where
// the stream is keyed by (seed, step, layer, module). Recomputing the mask for the backward pass
// or a gradient-checkpointing replay therefore needs only the key, never a stored mask.
#include <cstdint>

#include "adapters/counter_rng.h"
#include "model/weights.h"

namespace bidora {

struct DropoutKey {
  uint64_t seed = 0;  // run seed
  uint64_t step = 0;  // micro-batch counter: a fresh mask every micro-batch, the same one on replay
  int64_t row0 = 0;   // global index of the first row when a batch is processed in row chunks
};

uint64_t dropout_stream(const DropoutKey& key, int64_t layer, LinearKind kind);
// Inline: the mask is evaluated per element in every dropout pass, and inlined the loops vectorise.
inline bool dropout_keep(uint64_t stream, int64_t row0, int64_t t, int64_t j, int64_t cols, float p) {
  return splitmix_uniform(stream, static_cast<uint64_t>((row0 + t) * cols + j)) >= p;
}

// out[n, cols] = x ⊙ mask / (1 − p). out may alias x.
void dropout_apply(const float* x, int64_t n, int64_t cols, float p, uint64_t stream, int64_t row0,
                   float* out);
// acc[n, cols] += g ⊙ mask / (1 − p): the backward of dropout_apply, accumulated.
void dropout_backward_add(const float* g, int64_t n, int64_t cols, float p, uint64_t stream, int64_t row0,
                          float* acc);

}  // namespace bidora
