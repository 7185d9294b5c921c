#include "adapters/dropout.h"

#include "adapters/counter_rng.h"

namespace bidora {

uint64_t dropout_stream(const DropoutKey& key, int64_t layer, LinearKind kind) {
  // A distinct constant keeps dropout streams apart from the init streams of the same layer.
  uint64_t s = mix_key(key.seed, 0xD50F'0A7Eull);
  s = mix_key(s, key.step);
  s = mix_key(s, static_cast<uint64_t>(layer));
  return mix_key(s, static_cast<uint64_t>(kind));
}

void dropout_apply(const float* x, int64_t n, int64_t cols, float p, uint64_t stream, int64_t row0,
                   float* out) {
  const float keep_scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < cols; ++j)
      out[t * cols + j] = dropout_keep(stream, row0, t, j, cols, p) ? x[t * cols + j] * keep_scale : 0.0f;
}

void dropout_backward_add(const float* g, int64_t n, int64_t cols, float p, uint64_t stream, int64_t row0,
                          float* acc) {
  const float keep_scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < cols; ++j)
      if (dropout_keep(stream, row0, t, j, cols, p)) acc[t * cols + j] += g[t * cols + j] * keep_scale;
}

}  // namespace bidora
