#pragma once
// Rotary position embeddings, HF convention: dimension i pairs with i + hd/2 (rotate_half),
// inv_freq[i] = 1 / θ^(2i/hd) in float32, with the linear / dynamic / llama3 / yarn scalings of
// transformers' modeling_rope_utils (shared/reference/formats.md §5.5–5.6).
#include <cstdint>
#include <vector>

#include "model/model_config.h"

namespace bidora {

class RopeTable {
 public:
  RopeTable() = default;
  // Builds cos/sin for positions [0, max_positions). For "dynamic" scaling the frequencies
  // depend on the sequence length, so max_positions is the batch's longest sequence.
  RopeTable(const ModelConfig& cfg, int64_t max_positions);
  int64_t half() const { return half_; }
  int64_t max_positions() const { return max_pos_; }
  const float* cos(int64_t pos) const { return cos_.data() + pos * half_; }
  const float* sin(int64_t pos) const { return sin_.data() + pos * half_; }
  const std::vector<float>& inv_freq() const { return inv_freq_; }
  float attention_scaling() const { return attention_scaling_; }

 private:
  int64_t half_ = 0, max_pos_ = 0;
  float attention_scaling_ = 1.0f;
  std::vector<float> inv_freq_, cos_, sin_;
};

// x: [n, heads, hd]; rotates each head of token t by position pos[t], in place. The caller
// guarantees 0 <= pos[t] < max_positions() (checked once per batch, not in the kernel).
void rope_forward(float* x, const int32_t* pos, int64_t n, int64_t heads, int64_t hd, const RopeTable& rope);
// The inverse rotation (the transpose), which is the gradient of rope_forward: in place on dx.
void rope_backward(float* dx, const int32_t* pos, int64_t n, int64_t heads, int64_t hd,
                   const RopeTable& rope);

}  // namespace bidora
