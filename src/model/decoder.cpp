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
  if (b.input_ids.size() != n) fail("batch: {} input ids for {} x {} tokens", b.input_ids.size(), b.rows, b.seq_len);
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
          fail("batch: position id {} at row {} column {}: positions must start at 0 and grow by 1 within a document",
               p, r, t);
      }
      if (!b.labels.empty() && b.labels[i] != kIgnoreIndex && (b.labels[i] < 0 || b.labels[i] >= cfg.vocab_size))
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
  positions_.resize(n);
  capacity_ = n;
}

void Decoder::prepare_rope(const TokenBatch& b) {
  const int64_t n = b.tokens();
  for (int64_t r = 0; r < b.rows; ++r)
    for (int64_t t = 0; t < b.seq_len; ++t)
      positions_[r * b.seq_len + t] = b.position_ids.empty() ? static_cast<int32_t>(t) : b.position_ids[r * b.seq_len + t];
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

  // Attention block.
  rmsnorm_forward(x, L.input_norm.data(), n, H, eps, xn_.data(), nullptr);
  linear_forward(xn_.data(), n, L.W(LinearKind::Q), L.b(LinearKind::Q), q_.data(), tile_);
  linear_forward(xn_.data(), n, L.W(LinearKind::K), L.b(LinearKind::K), k_.data(), tile_);
  linear_forward(xn_.data(), n, L.W(LinearKind::V), L.b(LinearKind::V), v_.data(), tile_);
  if (c_.qk_norm) {  // Qwen3: per-head RMSNorm before RoPE
    rmsnorm_forward(q_.data(), L.q_norm.data(), n * c_.num_heads, hd, eps, q_.data(), nullptr);
    rmsnorm_forward(k_.data(), L.k_norm.data(), n * c_.num_kv_heads, hd, eps, k_.data(), nullptr);
  }
  rope_forward(q_.data(), positions_.data(), n, c_.num_heads, hd, rope_);
  rope_forward(k_.data(), positions_.data(), n, c_.num_kv_heads, hd, rope_);
  const auto window = c_.window_for_layer(l);
  const std::vector<int32_t> key_start =
      attention_key_start(positions_.data(), b.rows, b.seq_len, window ? *window : 0);
  const AttentionShape shape{b.rows, b.seq_len, c_.num_heads, c_.num_kv_heads, hd};
  attention_forward(q_.data(), k_.data(), v_.data(), key_start.data(), shape, 1.0f / std::sqrt(static_cast<float>(hd)),
                    att_.data(), nullptr);
  linear_forward(att_.data(), n, L.W(LinearKind::O), L.b(LinearKind::O), tmp_.data(), tile_);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n * H; ++i) x[i] += tmp_[i];

  // MLP block.
  rmsnorm_forward(x, L.post_norm.data(), n, H, eps, xn_.data(), nullptr);
  linear_forward(xn_.data(), n, L.W(LinearKind::Gate), L.b(LinearKind::Gate), gate_.data(), tile_);
  linear_forward(xn_.data(), n, L.W(LinearKind::Up), L.b(LinearKind::Up), up_.data(), tile_);
  swiglu_forward(gate_.data(), up_.data(), n * I, gate_.data());
  linear_forward(gate_.data(), n, L.W(LinearKind::Down), L.b(LinearKind::Down), tmp_.data(), tile_);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n * H; ++i) x[i] += tmp_[i];
}

const float* Decoder::forward(const TokenBatch& b) {
  validate_batch(b, c_);
  reserve(b.tokens());
  prepare_rope(b);
  embed(b, x_.data());
  for (int64_t l = 0; l < c_.num_layers; ++l) layer_forward(l, b, x_.data());
  rmsnorm_forward(x_.data(), w_.final_norm().data(), b.tokens(), c_.hidden_size, static_cast<float>(c_.rms_norm_eps),
                  xn_.data(), nullptr);
  return xn_.data();
}

LossSums Decoder::loss(const TokenBatch& b) {
  if (b.labels.empty()) fail("batch: loss needs labels");
  const float* h = forward(b);
  const std::vector<int32_t> targets = shift_labels(b);
  return lm_head_cross_entropy(h, b.tokens(), w_.lm_head(), targets.data(), nullptr, 0.0f, loss_ws_);
}

std::vector<float> Decoder::logits(const TokenBatch& b) {
  const float* h = forward(b);
  std::vector<float> out(b.tokens() * c_.vocab_size);
  linear_forward(h, b.tokens(), w_.lm_head(), nullptr, out.data(), tile_);
  return out;
}

}  // namespace bidora
