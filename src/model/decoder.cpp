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

int64_t layer_activation_floats(const ModelConfig& c) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim();
  int64_t f = 3 * H                                           // xn, x_mid, xn2
              + 2 * Q                                         // q (after RoPE), attention output
              + 2 * KV                                        // k (after RoPE), v
              + 3 * I                                         // gate, up, act
              + c.num_heads + 2;                              // lse, inv1, inv2
  if (c.qk_norm) f += Q + KV + c.num_heads + c.num_kv_heads;  // q_raw, k_raw, q_inv, k_inv
  return f;
}

Decoder::LayerActs Decoder::carve(float* p, int64_t cap) const {
  const int64_t H = c_.hidden_size, I = c_.intermediate_size, Q = c_.q_dim(), KV = c_.kv_dim();
  const float* const start = p;
  auto take = [&](int64_t width) {
    float* v = p;
    p += width * cap;
    return v;
  };
  LayerActs a{};
  a.xn = take(H);
  a.x_mid = take(H);
  a.xn2 = take(H);
  a.q = take(Q);
  a.att = take(Q);
  a.k = take(KV);
  a.v = take(KV);
  a.gate = take(I);
  a.up = take(I);
  a.act = take(I);
  a.lse = take(c_.num_heads);
  a.inv1 = take(1);
  a.inv2 = take(1);
  if (c_.qk_norm) {
    a.q_raw = take(Q);
    a.k_raw = take(KV);
    a.q_inv = take(c_.num_heads);
    a.k_inv = take(c_.num_kv_heads);
  }
  // The store is sized by layer_activation_floats (shared with the memory model): they must agree.
  BIDORA_CHECK(p - start == cap * layer_floats_per_token(),
               "decoder: activation layout of {} floats per token, "
               "layer_activation_floats says {}",
               (p - start) / cap, layer_floats_per_token());
  return a;
}

void Decoder::reserve(int64_t n) {
  if (n <= capacity_) return;
  const int64_t H = c_.hidden_size;
  x_.resize(n * H);
  tmp_.resize(n * H);
  layer_block_.resize(n * layer_floats_per_token());
  acts_ = carve(layer_block_.data(), n);
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

int64_t Decoder::buffer_bytes() const {
  size_t floats = 0;
  for (const std::vector<float>* v : {&x_, &tmp_, &layer_block_, &checkpoints_, &dx_, &dmid_, &dtmp_, &dq_,
                                      &dk_, &dv_, &dact_, &dgate_, &dup_, &dxn_, &store_})
    floats += v->capacity();
  return static_cast<int64_t>(floats * sizeof(float) +
                              (positions_.capacity() + key_start_.capacity()) * sizeof(int32_t));
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

void Decoder::layer_forward(int64_t l, const TokenBatch& b, float* x, const LayerActs& a, bool replay) {
  const LayerWeights& L = w_.layers()[l];
  const int64_t n = b.tokens(), H = c_.hidden_size, I = c_.intermediate_size, hd = c_.head_dim;
  const float eps = static_cast<float>(c_.rms_norm_eps);

  // Attention block: x_mid = x + o_proj(attention(rope(q), rope(k), v)).
  rmsnorm_forward(x, L.input_norm.data(), n, H, eps, a.xn, a.inv1);
  // Qwen3 normalises q and k per head before RoPE; the projections are kept for the backward.
  linear(l, LinearKind::Q, a.xn, n, c_.qk_norm ? a.q_raw : a.q);
  linear(l, LinearKind::K, a.xn, n, c_.qk_norm ? a.k_raw : a.k);
  linear(l, LinearKind::V, a.xn, n, a.v);
  if (c_.qk_norm) {
    rmsnorm_forward(a.q_raw, L.q_norm.data(), n * c_.num_heads, hd, eps, a.q, a.q_inv);
    rmsnorm_forward(a.k_raw, L.k_norm.data(), n * c_.num_kv_heads, hd, eps, a.k, a.k_inv);
  }
  rope_forward(a.q, positions_.data(), n, c_.num_heads, hd, rope_);
  rope_forward(a.k, positions_.data(), n, c_.num_kv_heads, hd, rope_);
  const auto window = c_.window_for_layer(l);
  attention_key_start(positions_.data(), b.rows, b.seq_len, window ? *window : 0, key_start_);
  const AttentionShape shape{b.rows, b.seq_len, c_.num_heads, c_.num_kv_heads, hd};
  attention_forward(a.q, a.k, a.v, key_start_.data(), shape, attention_scale(), a.att, a.lse);
  linear(l, LinearKind::O, a.att, n, tmp_.data());
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n * H; ++i) x[i] += tmp_[i];
  std::copy(x, x + n * H, a.x_mid);

  // MLP block: out = x_mid + down(silu(gate(xn2)) ⊙ up(xn2)).
  rmsnorm_forward(x, L.post_norm.data(), n, H, eps, a.xn2, a.inv2);
  linear(l, LinearKind::Gate, a.xn2, n, a.gate);
  linear(l, LinearKind::Up, a.xn2, n, a.up);
  swiglu_forward(a.gate, a.up, n * I, a.act);
  // A replay stops here: the backward needs a.act, and down_proj's adapter kept its own state
  // from the first forward (LinearAdapters::Pass::kCheckpointedTraining). Its product is ~30% of
  // a replay's frozen FLOPs on the Qwen2.5-0.5B shape.
  if (replay) return;
  linear(l, LinearKind::Down, a.act, n, tmp_.data());
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n * H; ++i) x[i] += tmp_[i];
}

// dx: ∂L/∂(layer output) in, ∂L/∂(layer input) out. x_in is the layer's input.
void Decoder::layer_backward(int64_t l, const TokenBatch& b, const float* x_in, const LayerActs& a,
                             float* dx) {
  const LayerWeights& L = w_.layers()[l];
  const int64_t n = b.tokens(), H = c_.hidden_size, I = c_.intermediate_size, hd = c_.head_dim;

  // MLP block.
  linear_backward(l, LinearKind::Down, a.act, dx, n, dact_.data(), false);
  swiglu_backward(a.gate, a.up, dact_.data(), n * I, dgate_.data(), dup_.data());
  linear_backward(l, LinearKind::Gate, a.xn2, dgate_.data(), n, dxn_.data(), false);
  linear_backward(l, LinearKind::Up, a.xn2, dup_.data(), n, dxn_.data(), true);
  rmsnorm_backward(a.x_mid, L.post_norm.data(), a.inv2, dxn_.data(), n, H, dmid_.data());
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n * H; ++i) dmid_[i] += dx[i];  // the residual path

  // Attention block. key_start depends on the layer's window; without checkpointing the
  // buffer holds another layer's, so it is refilled (O(tokens), no allocation).
  const auto window = c_.window_for_layer(l);
  attention_key_start(positions_.data(), b.rows, b.seq_len, window ? *window : 0, key_start_);
  float* datt = dact_.data();  // free again; holds [n, q_dim]
  linear_backward(l, LinearKind::O, a.att, dmid_.data(), n, datt, false);
  const AttentionShape shape{b.rows, b.seq_len, c_.num_heads, c_.num_kv_heads, hd};
  attention_backward(a.q, a.k, a.v, a.att, datt, a.lse, key_start_.data(), shape, attention_scale(),
                     dq_.data(), dk_.data(), dv_.data());
  rope_backward(dq_.data(), positions_.data(), n, c_.num_heads, hd, rope_);
  rope_backward(dk_.data(), positions_.data(), n, c_.num_kv_heads, hd, rope_);
  if (c_.qk_norm) {
    rmsnorm_backward(a.q_raw, L.q_norm.data(), a.q_inv, dq_.data(), n * c_.num_heads, hd, dq_.data());
    rmsnorm_backward(a.k_raw, L.k_norm.data(), a.k_inv, dk_.data(), n * c_.num_kv_heads, hd, dk_.data());
  }
  linear_backward(l, LinearKind::Q, a.xn, dq_.data(), n, dxn_.data(), false);
  linear_backward(l, LinearKind::K, a.xn, dk_.data(), n, dxn_.data(), true);
  linear_backward(l, LinearKind::V, a.xn, dv_.data(), n, dxn_.data(), true);
  rmsnorm_backward(x_in, L.input_norm.data(), a.inv1, dxn_.data(), n, H, dx);
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
  if (adapters_) adapters_->set_pass(LinearAdapters::Pass::kForward);
  embed(b, x_.data());
  for (int64_t l = 0; l < c_.num_layers; ++l) layer_forward(l, b, x_.data(), acts_);
  rmsnorm_forward(x_.data(), w_.final_norm().data(), b.tokens(), c_.hidden_size,
                  static_cast<float>(c_.rms_norm_eps), acts_.xn, nullptr);
  return acts_.xn;
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
  const int64_t n = b.tokens(), H = c_.hidden_size, L = c_.num_layers;
  const float eps = static_cast<float>(c_.rms_norm_eps);
  reserve(n);
  reserve_training(n);
  if (!checkpointing_ && n > store_capacity_) {
    store_.resize(L * n * layer_floats_per_token());
    store_capacity_ = n;
  }
  // Layer l's activations: the shared one-layer block (checkpointed), or its own store slice.
  auto acts = [&](int64_t l) {
    return checkpointing_
               ? acts_
               : carve(store_.data() + l * store_capacity_ * layer_floats_per_token(), store_capacity_);
  };
  prepare_rope(b);
  if (adapters_)
    adapters_->set_pass(checkpointing_ ? LinearAdapters::Pass::kCheckpointedTraining
                                       : LinearAdapters::Pass::kStoredTraining);

  // Forward, keeping each layer's input (and, without checkpointing, all its activations).
  embed(b, x_.data());
  for (int64_t l = 0; l < L; ++l) {
    std::copy(x_.begin(), x_.begin() + n * H, checkpoints_.begin() + l * n * H);
    layer_forward(l, b, x_.data(), acts(l));
  }
  // The shared block is free here in both modes (a checkpointed backward replays into it only
  // after the loss), so its xn and inv2 take the final norm's output and inverse rms.
  float* final_inv = acts_.inv2;
  rmsnorm_forward(x_.data(), w_.final_norm().data(), n, H, eps, acts_.xn, final_inv);
  const std::vector<int32_t> targets = shift_labels(b);
  const LossSums loss =
      lm_head_cross_entropy(acts_.xn, n, w_.lm_head(), targets.data(), dx_.data(), grad_scale, loss_ws_);
  rmsnorm_backward(x_.data(), w_.final_norm().data(), final_inv, dx_.data(), n, H, dx_.data());

  // Backward, last layer first; a checkpointed layer is first replayed from its input.
  for (int64_t l = L - 1; l >= 0; --l) {
    const float* x_in = checkpoints_.data() + l * n * H;
    if (checkpointing_) {
      std::copy(x_in, x_in + n * H, x_.begin());
      layer_forward(l, b, x_.data(), acts_, /*replay=*/true);
    }
    layer_backward(l, b, x_in, acts(l), dx_.data());
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
