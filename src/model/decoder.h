#pragma once
// The decoder forward pass, written out layer by layer (llm.c style): embeddings → N × (RMSNorm,
// GQA attention with RoPE, residual, RMSNorm, SwiGLU MLP, residual) → final RMSNorm → lm_head.
// Buffers are allocated once for the largest batch seen and reused.
#include <cstdint>
#include <vector>

#include "model/lm_loss.h"
#include "model/rope.h"
#include "model/weights.h"

namespace bidora {

// A batch of token rows. Packed rows hold several documents: position_ids restart at 0 at each
// document start, and attention never crosses a document boundary (block-diagonal causal mask).
struct TokenBatch {
  int64_t rows = 0, seq_len = 0;
  std::vector<int32_t> input_ids;     // [rows * seq_len]
  std::vector<int32_t> position_ids;  // [rows * seq_len]; empty means 0..seq_len-1 in every row
  // [rows * seq_len], HF convention (not shifted): token t is trained to predict labels[t + 1];
  // -100 is ignored. Empty means no labels.
  std::vector<int32_t> labels;
  int64_t tokens() const { return rows * seq_len; }
};

// Checks shapes, token ids against the vocabulary and position_ids (each is 0 or the previous
// + 1); throws Error naming the row and column.
void validate_batch(const TokenBatch& b, const ModelConfig& cfg);

// labels shifted left by one within each row, with -100 in the last column.
std::vector<int32_t> shift_labels(const TokenBatch& b);

class Decoder {
 public:
  explicit Decoder(const ModelWeights& weights);

  // Final normalised hidden states [tokens, H]; valid until the next call.
  const float* forward(const TokenBatch& b);
  // Mean cross-entropy parts over the batch's shifted labels (sum and count).
  LossSums loss(const TokenBatch& b);
  // Full logits [tokens, vocab]. Materialises the whole matrix: for tests and small batches.
  std::vector<float> logits(const TokenBatch& b);

  const ModelWeights& weights() const { return w_; }

 private:
  void reserve(int64_t tokens);
  void prepare_rope(const TokenBatch& b);
  void embed(const TokenBatch& b, float* x);
  void layer_forward(int64_t l, const TokenBatch& b, float* x);

  const ModelWeights& w_;
  const ModelConfig& c_;
  int64_t capacity_ = 0;
  std::vector<int32_t> positions_;
  std::vector<float> x_, xn_, q_, k_, v_, att_, tmp_, gate_, up_;
  RopeTable rope_;
  WeightTile tile_;
  LmLossWorkspace loss_ws_;
};

}  // namespace bidora
