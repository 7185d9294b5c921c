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

// Floats per token that one layer's forward keeps for its backward when training without
// gradient checkpointing (the layer input, kept in both modes, not included): the two norm
// outputs and their inverse rms, q/k after RoPE, v, attention output and log-sum-exp, the
// residual after attention, gate/up/act, and Qwen3's q/k before their norms. The memory model
// uses the same count.
int64_t layer_activation_floats(const ModelConfig& c);

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

  // Memory / time trade-off of forward_backward (training.gradient_checkpointing; default on,
  // as HF gradient_checkpointing=True). On: each layer's input is kept and the layer's forward
  // is replayed, up to its down_proj, right before its backward (activations: one [tokens, H]
  // per layer, down_proj's adapter state, plus one layer's working set). Off: the forward keeps every layer's activations (see
  // layer_activation_floats) and backward uses them directly, without the replay's compute
  // (bench/bench_decoder.cpp measures both). Both modes give the same loss and
  // gradients bit for bit.
  void set_gradient_checkpointing(bool on) { checkpointing_ = on; }
  // model.compute_dtype bf16: the frozen linears and lm_head multiply in bf16 with f32
  // accumulation (model/linear.h); norms, attention, softmax and the residual stay f32. The
  // adapters' own runtime has a separate switch (AdapterRuntime::set_bf16_compute).
  void set_bf16_compute(bool on) {
    tile_.set_bf16_compute(on);
    loss_ws_.tile.set_bf16_compute(on);
  }
  bool bf16_compute() const { return tile_.bf16_compute(); }
  bool gradient_checkpointing() const { return checkpointing_; }

  // Training pass: forward, loss over the shifted labels, and backward (checkpointed or not,
  // see above). The loss is scaled by grad_scale before differentiation (e.g. 1 / tokens of
  // the whole optimiser step), so adapter gradients accumulate across micro-batches. If
  // d_embeddings is non-null it receives ∂(grad_scale·Σloss)/∂(embedding output) [tokens, H].
  LossSums forward_backward(const TokenBatch& b, float grad_scale,
                            std::vector<float>* d_embeddings = nullptr);

  // layer_activation_floats for this model: the width of the per-layer activation store.
  int64_t layer_floats_per_token() const { return layer_activation_floats(c_); }
  // Bytes of the buffers this decoder holds now (forward, training and activation store); they
  // grow to the largest batch seen and are reused.
  int64_t buffer_bytes() const;

  const ModelWeights& weights() const { return w_; }

 private:
  void reserve(int64_t tokens);
  void prepare_rope(const TokenBatch& b);
  void embed(const TokenBatch& b, float* x);
  // One layer's forward activations: views into a block laid out by carve().
  struct LayerActs {
    float *xn, *q, *k, *v, *att, *lse, *inv1, *inv2, *x_mid, *xn2, *gate, *up, *act;
    float *q_raw, *k_raw, *q_inv, *k_inv;  // Qwen3 q/k norms only, else nullptr
  };
  // Views for `cap` tokens over layer_floats_per_token() * cap floats starting at p.
  LayerActs carve(float* p, int64_t cap) const;
  // replay: a checkpointed layer recomputed for its backward, which reads the activations in `a`
  // but not the layer's output (the next layer's checkpoint holds it): stops after the MLP
  // activation, before down_proj, and leaves x unfinished.
  void layer_forward(int64_t l, const TokenBatch& b, float* x, const LayerActs& a, bool replay = false);
  // Backpropagates through layer l given the activations its forward left in `a`.
  void layer_backward(int64_t l, const TokenBatch& b, const float* x_in, const LayerActs& a, float* dx);
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
  // The residual stream and one layer's activations, reused by every layer (a checkpointed
  // layer's replay refills them right before its backward).
  std::vector<float> x_, tmp_, layer_block_;
  LayerActs acts_{};
  std::vector<int32_t> key_start_;
  // Training only: layer inputs (checkpoints) and gradient buffers.
  int64_t train_capacity_ = 0;
  std::vector<float> checkpoints_, dx_, dmid_, dtmp_, dq_, dk_, dv_, dact_, dgate_, dup_, dxn_;
  // Training without checkpointing: every layer's activations, [layer][carve layout of
  // store_capacity_ tokens]. Allocated on the first such pass (not at all with checkpointing).
  bool checkpointing_ = true;
  int64_t store_capacity_ = 0;
  std::vector<float> store_;
  LinearAdapters* adapters_ = nullptr;
  RopeTable rope_;
  WeightTile tile_;
  LmLossWorkspace loss_ws_;
};

}  // namespace bidora
