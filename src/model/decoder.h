#pragma once
// The decoder forward pass, written out layer by layer (llm.c style): embeddings → N × (RMSNorm,
// GQA attention with RoPE, residual, RMSNorm, SwiGLU MLP, residual) → final RMSNorm → lm_head.
// Buffers are allocated once for the largest batch seen and reused.
#include <cstdint>
#include <vector>

#include "model/linear_adapters.h"
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

  // Adapters applied to the frozen linears in every pass (nullptr: the plain model).
  void set_adapters(LinearAdapters* adapters) { adapters_ = adapters; }

  // Training pass: forward, loss over the shifted labels, and backward with per-layer gradient
  // checkpointing (each layer's input is kept; its activations are recomputed during backward).
  // The loss is scaled by grad_scale before differentiation (e.g. 1 / tokens of the whole
  // optimiser step), so adapter gradients accumulate across micro-batches. If d_embeddings is
  // non-null it receives ∂(grad_scale·Σloss)/∂(embedding output) [tokens, H].
  LossSums forward_backward(const TokenBatch& b, float grad_scale,
                            std::vector<float>* d_embeddings = nullptr);

  const ModelWeights& weights() const { return w_; }

 private:
  void reserve(int64_t tokens);
  void prepare_rope(const TokenBatch& b);
  void embed(const TokenBatch& b, float* x);
  void layer_forward(int64_t l, const TokenBatch& b, float* x);
  void layer_backward(int64_t l, const TokenBatch& b, const float* x_in, float* dx);
  // y = x·Wᵀ + b through the adapter when this linear is adapted.
  void linear(int64_t l, LinearKind k, const float* x, int64_t n, float* y);
  // dx = (β·dx) + ∂/∂x, adapter-aware; β ∈ {0, 1} accumulates for the q/k/v and gate/up pairs.
  void linear_backward(int64_t l, LinearKind k, const float* x, const float* dy, int64_t n, float* dx,
                       bool accumulate);
  void reserve_training(int64_t tokens);
  float attention_scale() const;

  const ModelWeights& w_;
  const ModelConfig& c_;
  int64_t capacity_ = 0;
  std::vector<int32_t> positions_;
  // Forward activations of one layer (reused by every layer; a checkpointed layer's replay
  // refills them right before its backward).
  std::vector<float> x_, xn_, q_, k_, v_, att_, tmp_, gate_, up_, act_;
  std::vector<float> inv1_, inv2_, q_raw_, k_raw_, q_inv_, k_inv_, x_mid_, xn2_, lse_;
  std::vector<int32_t> key_start_;
  // Training only: layer inputs (checkpoints) and gradient buffers.
  int64_t train_capacity_ = 0;
  std::vector<float> checkpoints_, dx_, dmid_, dtmp_, dq_, dk_, dv_, dact_, dgate_, dup_, dxn_;
  LinearAdapters* adapters_ = nullptr;
  RopeTable rope_;
  WeightTile tile_;
  LmLossWorkspace loss_ws_;
};

}  // namespace bidora
