#pragma once
// The decoder's forward pass for generation: one sequence, with a KV cache. A prompt goes through
// the model in one batched pass (prefill), then each generated token takes a pass of its own that
// attends to the cached keys and values of every earlier position. Only the last position's
// logits are computed (never [tokens × vocab]).
//
// The maths is Decoder::forward's, layer for layer, with the same kernels (RMSNorm, RoPE, Qwen3's
// q/k norms, GQA attention, SwiGLU, biases, adapters through LinearAdapters); the differences
// are where the keys and values come from (the cache) and the products of a single token, which
// take the GEMV path (model/gemv.h) instead of tiles + GEMM. Tests check prefill + cached steps
// against Decoder::logits of the whole sequence.
#include <cstdint>
#include <span>
#include <vector>

#include "model/kv_cache.h"
#include "model/linear.h"
#include "model/linear_adapters.h"
#include "model/rope.h"
#include "model/weights.h"

namespace bidora {

class InferenceDecoder {
 public:
  // `capacity`: positions the KV cache holds before it has to grow (prompt + new tokens).
  InferenceDecoder(const ModelWeights& weights, int64_t capacity);

  // Adapters applied to the frozen linears (nullptr: the plain model). Use them in inference
  // mode (no dropout).
  void set_adapters(LinearAdapters* adapters) { adapters_ = adapters; }

  // Runs `ids` at positions [length(), length() + ids.size()) in one pass, appends their keys and
  // values to the cache and returns the logits of the last one, [vocab] (valid until the next
  // call). The first pass over an empty cache is the prompt's prefill. Throws Error for an empty
  // span or an id outside the vocabulary.
  const float* append(std::span<const int32_t> ids);

  // Tokens whose keys and values are cached, in order.
  const std::vector<int32_t>& tokens() const { return tokens_; }
  int64_t length() const { return static_cast<int64_t>(tokens_.size()); }
  // Forgets every position from n on (e.g. the part of a chat history that re-rendered differently).
  void truncate(int64_t n);
  // Grows the KV cache to hold n positions now (append grows it too, by doubling, when it is full).
  void reserve_positions(int64_t n) { cache_.reserve(n); }

  const KvCache& cache() const { return cache_; }
  const ModelWeights& weights() const { return w_; }
  // Bytes of the KV cache and the working buffers.
  int64_t buffer_bytes() const;

 private:
  void reserve(int64_t n);
  void prepare_rope(int64_t end);
  void layer(int64_t l, int64_t n, int64_t p0);
  void linear(int64_t l, LinearKind k, const float* x, int64_t n, float* y);

  const ModelWeights& w_;
  const ModelConfig& c_;
  KvCache cache_;
  std::vector<int32_t> tokens_;
  int64_t capacity_ = 0;  // tokens per pass the buffers hold
  std::vector<float> x_, xn_, q_, k_, v_, att_, tmp_, gate_, up_, act_, logits_;
  std::vector<int32_t> positions_, key_start_;
  LinearAdapters* adapters_ = nullptr;
  RopeTable rope_;
  WeightTile tile_;
};

}  // namespace bidora
