#pragma once
// The KV-cache forward (InferenceDecoder) checked against the full-sequence forward
// (Decoder::logits) on the same token sequence: a prefill pass over the first tokens, then the
// rest in passes of `chunks` tokens (1 = decode steps); the last logits of every pass must equal
// the full forward's row at that position. Shared by tests/model (plain models) and
// tests/generate (with LoRA / DoRA adapters).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "model/decoder.h"
#include "model/inference.h"
#include "model/test_kernels_support.h"

namespace bidora::test {

inline std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int32_t> d(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& t : ids) t = d(gen);
  return ids;
}

inline std::vector<float> full_logits(const ModelWeights& w, LinearAdapters* adapters,
                                      const std::vector<int32_t>& ids) {
  Decoder dec(w);
  dec.set_adapters(adapters);
  TokenBatch b;
  b.rows = 1;
  b.seq_len = static_cast<int64_t>(ids.size());
  b.input_ids = ids;
  return dec.logits(b);
}

// Returns the largest error relative to the row's largest |logit| over every compared position.
// `cached_adapters` (default: `adapters`) are the ones the cached forward runs with.
inline double expect_cached_logits_match(const ModelWeights& w, LinearAdapters* adapters,
                                         const std::vector<int32_t>& ids, int64_t prefill, double tol,
                                         const std::string& what, std::vector<int64_t> chunks = {},
                                         int64_t capacity = 0, LinearAdapters* cached_adapters = nullptr) {
  const int64_t V = w.config().vocab_size, T = static_cast<int64_t>(ids.size());
  const std::vector<float> full = full_logits(w, adapters, ids);
  InferenceDecoder inf(w, capacity > 0 ? capacity : T);
  inf.set_adapters(cached_adapters ? cached_adapters : adapters);
  double worst = 0;
  int64_t pos = 0;
  size_t chunk_i = 0;
  while (pos < T) {
    const int64_t n = pos == 0 ? prefill : std::min(T - pos, chunk_i < chunks.size() ? chunks[chunk_i++] : 1);
    const float* got = inf.append(std::span<const int32_t>(ids.data() + pos, static_cast<size_t>(n)));
    pos += n;
    const float* row = full.data() + (pos - 1) * V;
    const std::vector<float> g(got, got + V);
    const std::vector<double> want(row, row + V);
    const auto stats = kt::expect_close_scaled(g, want, tol, what + " @" + std::to_string(pos - 1));
    worst = std::max(worst, stats.normalised);
  }
  EXPECT_EQ(inf.length(), T);
  EXPECT_EQ(inf.tokens(), ids);
  return worst;
}

}  // namespace bidora::test
