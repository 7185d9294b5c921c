#pragma once
// lm_head + cross-entropy fused and chunked over tokens and vocabulary: the [tokens x vocab]
// logits never exist; at most [token_chunk x vocab_chunk] floats do. Targets are already
// shifted (row i predicts targets[i]); -100 is ignored, as in HF.
#include <cstdint>
#include <vector>

#include "model/frozen_matrix.h"
#include "model/linear.h"

namespace bidora {

constexpr int32_t kIgnoreIndex = -100;

struct LossSums {
  double sum = 0;     // Σ −log p(target) over counted rows
  int64_t count = 0;  // rows with a target
  double mean() const { return count ? sum / count : 0.0; }
};

class LmLossWorkspace {
 public:
  explicit LmLossWorkspace(int64_t token_chunk = 256) : token_chunk_(token_chunk) {}
  int64_t token_chunk() const { return token_chunk_; }
  WeightTile tile;  // its bf16_compute() selects the precision of the head's products
  std::vector<float> hidden, logits, dhidden, row_max, row_sum, row_target;
  std::vector<uint16_t> hidden_bf16, logits_bf16;  // bf16 compute only
  std::vector<int64_t> rows;

 private:
  int64_t token_chunk_;
};

// hidden: [n, H]. Returns the summed loss and the count. If dhidden is non-null it receives
// grad_scale · ∂(Σ loss)/∂hidden (zero rows where the target is ignored). Throws Error if a
// target is outside [0, vocab).
LossSums lm_head_cross_entropy(const float* hidden, int64_t n, const FrozenMatrix& lm_head,
                               const int32_t* targets, float* dhidden, float grad_scale, LmLossWorkspace& ws);

}  // namespace bidora
