#pragma once
// The key/value cache of one sequence for generation: every layer's keys (after RoPE, and after
// Qwen3's k norm) and values for positions [0, length()), in storage allocated once for
// capacity() positions (grown by reserve(), which copies).
//
// Layout per layer and kv head: keys TRANSPOSED, [head_dim, capacity], and values
// [capacity, head_dim]. The scores of one kv head's query group against all cached keys are then
// the product [group, head_dim] · [head_dim, keys] with unit-stride keys, which is exactly the
// attention score-tile kernel (model/attention_kernels.h), and P·V reads value rows
// contiguously, which is its accumulate kernel: the decode step reuses the training kernels.
#include <cstdint>
#include <vector>

#include "model/model_config.h"

namespace bidora {

class KvCache {
 public:
  KvCache(const ModelConfig& c, int64_t capacity);

  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }
  int64_t num_layers() const { return layers_; }
  int64_t kv_heads() const { return kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  // Float32 bytes held (keys and values of every layer at full capacity).
  int64_t bytes() const { return static_cast<int64_t>((k_.size() + v_.size()) * sizeof(float)); }

  // Grows the storage to hold `capacity` positions, keeping the cached ones.
  void reserve(int64_t capacity);
  // Forgets positions [n, length()) (n <= length()): the next tokens overwrite them.
  void truncate(int64_t n);
  // Marks positions [0, n) as filled (after store() wrote them for every layer).
  void set_length(int64_t n);

  // Writes positions [p0, p0 + n) of `layer` from k, v [n, kv_heads * head_dim] (the projection
  // layout); p0 + n <= capacity().
  void store(int64_t layer, int64_t p0, int64_t n, const float* k, const float* v);

  // Keys of (layer, kv head) as [head_dim, capacity] (row stride capacity()).
  const float* keys_t(int64_t layer, int64_t g) const { return k_.data() + slot(layer, g); }
  // Values of (layer, kv head) as [capacity, head_dim].
  const float* values(int64_t layer, int64_t g) const { return v_.data() + slot(layer, g); }

 private:
  int64_t slot(int64_t layer, int64_t g) const { return (layer * kv_heads_ + g) * head_dim_ * capacity_; }

  int64_t layers_, kv_heads_, head_dim_;
  int64_t capacity_ = 0, length_ = 0;
  std::vector<float> k_, v_;
};

// Causal attention of n new queries at positions [p0, p0 + n) of the cached sequence against the
// cache's keys of `layer` (positions [0, p0 + n), already stored): query p sees keys
// [max(0, p − window + 1), p] (window 0: all). q, out: [n, heads * head_dim]; scale as in
// attention_forward. Same maths as attention_forward (scaled scores, softmax with the running
// max subtracted, P·V), with the same tile kernels; parallel over (query, kv head).
void attention_cached(const float* q, int64_t n, int64_t p0, const KvCache& cache, int64_t layer,
                      int64_t heads, int64_t window, float scale, float* out);

}  // namespace bidora
