#include "model/decoder.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/attention.h"
#include "model/rmsnorm.h"
#include "model/swiglu.h"

namespace bidora {

void validate_batch(const TokenBatch& b, const ModelConfig& cfg) {
  const size_t n = static_cast<size_t>(b.tokens());
  if (b.rows < 1 || b.seq_len < 1) fail("batch: rows ({}) and seq_len ({}) must be >= 1", b.rows, b.seq_len);
  if (b.input_ids.size() != n)
    fail("batch: {} input ids for {} x {} tokens", b.input_ids.size(), b.rows, b.seq_len);
  if (!b.position_ids.empty() && b.position_ids.size() != n)
    fail("batch: {} position ids for {} tokens", b.position_ids.size(), n);
  if (!b.labels.empty() && b.labels.size() != n) fail("batch: {} labels for {} tokens", b.labels.size(), n);
  for (int64_t r = 0; r < b.rows; ++r) {
    for (int64_t t = 0; t < b.seq_len; ++t) {
      const size_t i = r * b.seq_len + t;
      if (b.input_ids[i] < 0 || b.input_ids[i] >= cfg.vocab_size)
        fail("batch: token id {} at row {} column {} is outside the vocabulary [0, {})", b.input_ids[i], r, t,
             cfg.vocab_size);
      if (!b.position_ids.empty()) {
        const int32_t p = b.position_ids[i];
        const bool ok = p == 0 || (t > 0 && p == b.position_ids[i - 1] + 1);
        if (!ok)
          fail(
              "batch: position id {} at row {} column {}: positions must start at 0 and grow by 1 within a "
              "document",
              p, r, t);
      }
      if (!b.labels.empty() && b.labels[i] != kIgnoreIndex &&
          (b.labels[i] < 0 || b.labels[i] >= cfg.vocab_size))
        fail("batch: label {} at row {} column {} is outside the vocabulary", b.labels[i], r, t);
    }
  }
}

std::vector<int32_t> shift_labels(const TokenBatch& b) {
  std::vector<int32_t> out(b.tokens(), kIgnoreIndex);
  if (b.labels.empty()) return out;
  for (int64_t r = 0; r < b.rows; ++r)
    for (int64_t t = 0; t + 1 < b.seq_len; ++t) out[r * b.seq_len + t] = b.labels[r * b.seq_len + t + 1];
  return out;
}

Decoder::Decoder(const ModelWeights& weights) : w_(weights), c_(weights.config()) {}

void Decoder::reserve(int64_t n) {
  if (n <= capacity_) return;
  const int64_t H = c_.hidden_size, I = c_.intermediate_size;
  x_.resize(n * H);
  xn_.resize(n * H);
  tmp_.resize(n * H);
  q_.resize(n * c_.q_dim());
  att_.resize(n * c_.q_dim());
  k_.resize(n * c_.kv_dim());
  v_.resize(n * c_.kv_dim());
  gate_.resize(n * I);
  up_.resize(n * I);
  act_.resize(n * I);
  x_mid_.resize(n * H);
  xn2_.resize(n * H);
  inv1_.resize(n);
  inv2_.resize(n);
  lse_.resize(n * c_.num_heads);
  if (c_.qk_norm) {
    q_raw_.resize(n * c_.q_dim());
    k_raw_.resize(n * c_.kv_dim());
    q_inv_.resize(n * c_.num_heads);
    k_inv_.resize(n * c_.num_kv_heads);
  }
  positions_.resize(n);
  capacity_ = n;
}

void Decoder::reserve_training(int64_t n) {
  if (n <= train_capacity_) return;
  const int64_t H = c_.hidden_size, I = c_.intermediate_size;
  const int64_t widest = std::max({H, I, c_.q_dim()});
  checkpoints_.resize(c_.num_layers * n * H);
  dx_.resize(n * H);
  dmid_.resize(n * H);
  dxn_.resize(n * H);
  dtmp_.resize(n * widest);
  dq_.resize(n * c_.q_dim());
  dk_.resize(n * c_.kv_dim());
  dv_.resize(n * c_.kv_dim());
  dact_.resize(n * I);
  dgate_.resize(n * I);
  dup_.resize(n * I);
  train_capacity_ = n;
}

void Decoder::linear(int64_t l, LinearKind k, const float* x, int64_t n, float* y) {
  const LayerWeights& L = w_.layers()[l];
  if (adapters_ && adapters_->adapted(l, k)) {
    linear_forward(x, n, L.W(k), nullptr, y, tile_);
    adapters_->forward(l, k, L.W(k), x, n, y);
    if (const float* b = L.b(k)) add_bias(y, n, L.W(k).rows(), b);
  } else {
    linear_forward(x, n, L.W(k), L.b(k), y, tile_);
  }
}

void Decoder::linear_backward(int64_t l, LinearKind k, const float* x, const float* dy, int64_t n, float* dx,
                              bool accumulate) {
  const FrozenMatrix& W = w_.layers()[l].W(k);
  if (!(adapters_ && adapters_->adapted(l, k))) {
    linear_backward_input(dy, n, W, dx, accumulate ? 1.0f : 0.0f, tile_);
    return;
  }
  float* target = accumulate ? dtmp_.data() : dx;
  adapters_->backward(l, k, W, x, dy, n, target);
  if (accumulate) {
    const int64_t m = n * W.cols();
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < m; ++i) dx[i] += target[i];
  }
}

void Decoder::prepare_rope(const TokenBatch& b) {
  const int64_t n = b.tokens();
  for (int64_t r = 0; r < b.rows; ++r)
    for (int64_t t = 0; t < b.seq_len; ++t)
      positions_[r * b.seq_len + t] =
          b.position_ids.empty() ? static_cast<int32_t>(t) : b.position_ids[r * b.seq_len + t];
  const int64_t needed = *std::max_element(positions_.begin(), positions_.begin() + n) + 1;
  // Dynamic NTK scaling depends on the length, so its table is rebuilt for each new length.
  const bool dynamic = c_.rope_scaling.type == "dynamic";
  if (rope_.max_positions() < needed || (dynamic && rope_.max_positions() != needed))
    rope_ = RopeTable(c_, dynamic ? needed : std::max<int64_t>(needed, 256));
}

void Decoder::embed(const TokenBatch& b, float* x) {
  const int64_t H = c_.hidden_size;
  const FrozenMatrix& E = w_.embed();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < b.tokens(); ++t) E.rows_f32(b.input_ids[t], 1, x + t * H);
}

void Decoder::layer_forward(int64_t l, const TokenBatch& b, float* x) {
  const LayerWeights& L = w_.layers()[l];
  const int64_t n = b.tokens(), H = c_.hidden_size, I = c_.intermediate_size, hd = c_.head_dim;
  const float eps = static_cast<float>(c_.rms_norm_eps);

  // Attention block: x_mid = x + o_proj(attention(rope(q), rope(k), v)).
  rmsnorm_forward(x, L.input_norm.data(), n, H, eps, xn_.data(), inv1_.data());
  linear(l, LinearKind::Q, xn_.data(), n, q_.data());
  linear(l, LinearKind::K, xn_.data(), n, k_.data());
  linear(l, LinearKind::V, xn_.data(), n, v_.data());
  if (c_.qk_norm) {  // Qwen3: per-head RMSNorm before RoPE (inputs kept for the backward)
    std::copy(q_.begin(), q_.begin() + n * c_.q_dim(), q_raw_.begin());
    std::copy(k_.begin(), k_.begin() + n * c_.kv_dim(), k_raw_.begin());
    rmsnorm_forward(q_raw_.data(), L.q_norm.data(), n * c_.num_heads, hd, eps, q_.data(), q_inv_.data());
    rmsnorm_forward(k_raw_.data(), L.k_norm.data(), n * c_.num_kv_heads, hd, eps, k_.data(), k_inv_.data());
  }
  rope_forward(q_.data(), positions_.data(), n, c_.num_heads, hd, rope_);
  rope_forward(k_.data(), positions_.data(), n, c_.num_kv_heads, hd, rope_);
  const auto window = c_.window_for_layer(l);
  attention_key_start(positions_.data(), b.rows, b.seq_len, window ? *window : 0, key_start_);
  const AttentionShape shape{b.rows, b.seq_len, c_.num_heads, c_.num_kv_heads, hd};
  attention_forward(q_.data(), k_.data(), v_.data(), key_start_.data(), shape, attention_scale(), att_.data(),
                    lse_.data());
  linear(l, LinearKind::O, att_.data(), n, tmp_.data());
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n * H; ++i) x[i] += tmp_[i];
  std::copy(x, x + n * H, x_mid_.begin());

  // MLP block: out = x_mid + down(silu(gate(xn2)) ⊙ up(xn2)).
  rmsnorm_forward(x, L.post_norm.data(), n, H, eps, xn2_.data(), inv2_.data());
  linear(l, LinearKind::Gate, xn2_.data(), n, gate_.data());
  linear(l, LinearKind::Up, xn2_.data(), n, up_.data());
  swiglu_forward(gate_.data(), up_.data(), n * I, act_.data());
  linear(l, LinearKind::Down, act_.data(), n, tmp_.data());
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n * H; ++i) x[i] += tmp_[i];
}

// Backpropagates through layer l, whose forward was just replayed from x_in (its activations
// are in the layer buffers). dx: ∂L/∂(layer output) in, ∂L/∂(layer input) out.
void Decoder::layer_backward(int64_t l, const TokenBatch& b, const float* x_in, float* dx) {
  const LayerWeights& L = w_.layers()[l];
  const int64_t n = b.tokens(), H = c_.hidden_size, I = c_.intermediate_size, hd = c_.head_dim;

  // MLP block.
  linear_backward(l, LinearKind::Down, act_.data(), dx, n, dact_.data(), false);
  swiglu_backward(gate_.data(), up_.data(), dact_.data(), n * I, dgate_.data(), dup_.data());
  linear_backward(l, LinearKind::Gate, xn2_.data(), dgate_.data(), n, dxn_.data(), false);
  linear_backward(l, LinearKind::Up, xn2_.data(), dup_.data(), n, dxn_.data(), true);
  rmsnorm_backward(x_mid_.data(), L.post_norm.data(), inv2_.data(), dxn_.data(), n, H, dmid_.data());
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n * H; ++i) dmid_[i] += dx[i];  // the residual path

  // Attention block.
  float* datt = dact_.data();  // free again; holds [n, q_dim]
  linear_backward(l, LinearKind::O, att_.data(), dmid_.data(), n, datt, false);
  const AttentionShape shape{b.rows, b.seq_len, c_.num_heads, c_.num_kv_heads, hd};
  attention_backward(q_.data(), k_.data(), v_.data(), att_.data(), datt, lse_.data(), key_start_.data(),
                     shape, attention_scale(), dq_.data(), dk_.data(), dv_.data());
  rope_backward(dq_.data(), positions_.data(), n, c_.num_heads, hd, rope_);
  rope_backward(dk_.data(), positions_.data(), n, c_.num_kv_heads, hd, rope_);
  if (c_.qk_norm) {
    rmsnorm_backward(q_raw_.data(), L.q_norm.data(), q_inv_.data(), dq_.data(), n * c_.num_heads, hd,
                     dq_.data());
    rmsnorm_backward(k_raw_.data(), L.k_norm.data(), k_inv_.data(), dk_.data(), n * c_.num_kv_heads, hd,
                     dk_.data());
  }
  linear_backward(l, LinearKind::Q, xn_.data(), dq_.data(), n, dxn_.data(), false);
  linear_backward(l, LinearKind::K, xn_.data(), dk_.data(), n, dxn_.data(), true);
  linear_backward(l, LinearKind::V, xn_.data(), dv_.data(), n, dxn_.data(), true);
  rmsnorm_backward(x_in, L.input_norm.data(), inv1_.data(), dxn_.data(), n, H, dx);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n * H; ++i) dx[i] += dmid_[i];
}

float Decoder::attention_scale() const {
  return 1.0f / std::sqrt(static_cast<float>(c_.head_dim));
}

const float* Decoder::forward(const TokenBatch& b) {
  validate_batch(b, c_);
  reserve(b.tokens());
  prepare_rope(b);
  embed(b, x_.data());
  for (int64_t l = 0; l < c_.num_layers; ++l) layer_forward(l, b, x_.data());
  rmsnorm_forward(x_.data(), w_.final_norm().data(), b.tokens(), c_.hidden_size,
                  static_cast<float>(c_.rms_norm_eps), xn_.data(), nullptr);
  return xn_.data();
}

LossSums Decoder::loss(const TokenBatch& b) {
  if (b.labels.empty()) fail("batch: loss needs labels");
  const float* h = forward(b);
  const std::vector<int32_t> targets = shift_labels(b);
  return lm_head_cross_entropy(h, b.tokens(), w_.lm_head(), targets.data(), nullptr, 0.0f, loss_ws_);
}

LossSums Decoder::forward_backward(const TokenBatch& b, float grad_scale, std::vector<float>* d_embeddings) {
  if (b.labels.empty()) fail("batch: training needs labels");
  validate_batch(b, c_);
  const int64_t n = b.tokens(), H = c_.hidden_size;
  const float eps = static_cast<float>(c_.rms_norm_eps);
  reserve(n);
  reserve_training(n);
  prepare_rope(b);

  // Forward, keeping only each layer's input.
  embed(b, x_.data());
  for (int64_t l = 0; l < c_.num_layers; ++l) {
    std::copy(x_.begin(), x_.begin() + n * H, checkpoints_.begin() + l * n * H);
    layer_forward(l, b, x_.data());
  }
  std::vector<float>& final_inv = inv2_;  // free until the first replay
  rmsnorm_forward(x_.data(), w_.final_norm().data(), n, H, eps, xn_.data(), final_inv.data());
  const std::vector<int32_t> targets = shift_labels(b);
  const LossSums loss =
      lm_head_cross_entropy(xn_.data(), n, w_.lm_head(), targets.data(), dx_.data(), grad_scale, loss_ws_);
  rmsnorm_backward(x_.data(), w_.final_norm().data(), final_inv.data(), dx_.data(), n, H, dx_.data());

  // Backward, replaying each layer from its checkpoint first.
  for (int64_t l = c_.num_layers - 1; l >= 0; --l) {
    const float* x_in = checkpoints_.data() + l * n * H;
    std::copy(x_in, x_in + n * H, x_.begin());
    layer_forward(l, b, x_.data());
    layer_backward(l, b, x_in, dx_.data());
  }
  if (d_embeddings) d_embeddings->assign(dx_.begin(), dx_.begin() + n * H);
  return loss;
}

std::vector<float> Decoder::logits(const TokenBatch& b) {
  const float* h = forward(b);
  std::vector<float> out(b.tokens() * c_.vocab_size);
  linear_forward(h, b.tokens(), w_.lm_head(), nullptr, out.data(), tile_);
  return out;
}

}  // namespace bidora
