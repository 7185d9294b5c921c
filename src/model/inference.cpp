#include "model/inference.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/attention.h"
#include "model/gemv.h"
#include "model/rmsnorm.h"
#include "model/swiglu.h"

namespace bidora {

InferenceDecoder::InferenceDecoder(const ModelWeights& weights, int64_t capacity)
    : w_(weights), c_(weights.config()), cache_(weights.config(), capacity) {}

int64_t InferenceDecoder::buffer_bytes() const {
  size_t floats = 0;
  for (const std::vector<float>* v : {&x_, &xn_, &q_, &k_, &v_, &att_, &tmp_, &gate_, &up_, &act_, &logits_})
    floats += v->capacity();
  return cache_.bytes() + static_cast<int64_t>(floats * sizeof(float));
}

void InferenceDecoder::truncate(int64_t n) {
  cache_.truncate(n);
  tokens_.resize(static_cast<size_t>(n));
}

void InferenceDecoder::reserve(int64_t n) {
  if (n <= capacity_) return;
  const int64_t H = c_.hidden_size, I = c_.intermediate_size, Q = c_.q_dim(), KV = c_.kv_dim();
  for (auto [buf, width] : {std::pair{&x_, H},
                            {&xn_, H},
                            {&tmp_, H},
                            {&q_, Q},
                            {&att_, Q},
                            {&k_, KV},
                            {&v_, KV},
                            {&gate_, I},
                            {&up_, I},
                            {&act_, I}})
    buf->resize(static_cast<size_t>(n * width));
  positions_.resize(n);
  capacity_ = n;
}

void InferenceDecoder::prepare_rope(int64_t end) {
  if (c_.rope_scaling.type == "dynamic") {
    // transformers' dynamic NTK during generation: within the trained context the frequencies
    // are the default ones; beyond it they are recomputed for the current length (max position
    // + 1), and keys already cached keep the rotation they were stored with.
    const int64_t trained = c_.max_position_embeddings;
    if (end > trained) {
      if (rope_.max_positions() != end) rope_ = RopeTable(c_, end);
    } else if (rope_.max_positions() < end || rope_.max_positions() > trained) {
      rope_ = RopeTable(c_, std::min(trained, std::max(end, cache_.capacity())));
    }
    return;
  }
  if (rope_.max_positions() < end) rope_ = RopeTable(c_, std::max({end, cache_.capacity(), int64_t{256}}));
}

void InferenceDecoder::linear(int64_t l, LinearKind k, const float* x, int64_t n, float* y) {
  const LayerWeights& L = w_.layers()[l];
  const FrozenMatrix& W = L.W(k);
  const bool adapted = adapters_ && adapters_->adapted(l, k);
  // As Decoder::linear: an adapter sees x·Wᵀ without the bias, which is added after it.
  const float* bias = adapted ? nullptr : L.b(k);
  if (n <= kGemvMaxRows) {
    gemv_forward(x, n, W, bias, y);
  } else {
    linear_forward(x, n, W, bias, y, tile_);
  }
  if (adapted) {
    adapters_->forward(l, k, W, x, n, y);
    if (const float* b = L.b(k)) add_bias(y, n, W.rows(), b);
  }
}

// Decoder::layer_forward for n new tokens at positions [p0, p0 + n), without the activations a
// backward would need; attention reads the cache instead of the batch's own keys.
void InferenceDecoder::layer(int64_t l, int64_t n, int64_t p0) {
  const LayerWeights& L = w_.layers()[l];
  const int64_t H = c_.hidden_size, I = c_.intermediate_size, hd = c_.head_dim;
  const float eps = static_cast<float>(c_.rms_norm_eps);
  float* x = x_.data();

  rmsnorm_forward(x, L.input_norm.data(), n, H, eps, xn_.data(), nullptr);
  linear(l, LinearKind::Q, xn_.data(), n, q_.data());
  linear(l, LinearKind::K, xn_.data(), n, k_.data());
  linear(l, LinearKind::V, xn_.data(), n, v_.data());
  if (c_.qk_norm) {
    rmsnorm_forward(q_.data(), L.q_norm.data(), n * c_.num_heads, hd, eps, q_.data(), nullptr);
    rmsnorm_forward(k_.data(), L.k_norm.data(), n * c_.num_kv_heads, hd, eps, k_.data(), nullptr);
  }
  rope_forward(q_.data(), positions_.data(), n, c_.num_heads, hd, rope_);
  rope_forward(k_.data(), positions_.data(), n, c_.num_kv_heads, hd, rope_);
  cache_.store(l, p0, n, k_.data(), v_.data());
  const auto window = c_.window_for_layer(l);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));  // Decoder::attention_scale
  if (p0 == 0) {
    // A prefill over an empty cache is an ordinary causal pass: the training kernel, tiled.
    attention_key_start(positions_.data(), 1, n, window ? *window : 0, key_start_);
    const AttentionShape shape{1, n, c_.num_heads, c_.num_kv_heads, hd};
    attention_forward(q_.data(), k_.data(), v_.data(), key_start_.data(), shape, scale, att_.data(), nullptr);
  } else {
    attention_cached(q_.data(), n, p0, cache_, l, c_.num_heads, window ? *window : 0, scale, att_.data());
  }
  linear(l, LinearKind::O, att_.data(), n, tmp_.data());
  for (int64_t i = 0; i < n * H; ++i) x[i] += tmp_[i];

  rmsnorm_forward(x, L.post_norm.data(), n, H, eps, xn_.data(), nullptr);
  linear(l, LinearKind::Gate, xn_.data(), n, gate_.data());
  linear(l, LinearKind::Up, xn_.data(), n, up_.data());
  swiglu_forward(gate_.data(), up_.data(), n * I, act_.data());
  linear(l, LinearKind::Down, act_.data(), n, tmp_.data());
  for (int64_t i = 0; i < n * H; ++i) x[i] += tmp_[i];
}

const float* InferenceDecoder::append(std::span<const int32_t> ids) {
  const int64_t n = static_cast<int64_t>(ids.size()), p0 = length(), H = c_.hidden_size;
  if (n == 0) fail("generation: no tokens to run");
  for (int64_t t = 0; t < n; ++t)
    if (ids[t] < 0 || ids[t] >= c_.vocab_size)
      fail("generation: token id {} at position {} is outside the vocabulary [0, {})", ids[t], p0 + t,
           c_.vocab_size);
  if (p0 + n > cache_.capacity()) cache_.reserve(std::max(p0 + n, 2 * cache_.capacity()));
  reserve(n);
  for (int64_t t = 0; t < n; ++t) positions_[t] = static_cast<int32_t>(p0 + t);
  prepare_rope(p0 + n);
  if (adapters_) adapters_->set_pass(LinearAdapters::Pass::kForward);

  const FrozenMatrix& E = w_.embed();
  for (int64_t t = 0; t < n; ++t) E.rows_f32(ids[t], 1, x_.data() + t * H);
  for (int64_t l = 0; l < c_.num_layers; ++l) layer(l, n, p0);
  cache_.set_length(p0 + n);
  tokens_.insert(tokens_.end(), ids.begin(), ids.end());

  // Only the last position's logits: its final norm and one GEMV over lm_head.
  const float* last = x_.data() + (n - 1) * H;
  rmsnorm_forward(last, w_.final_norm().data(), 1, H, static_cast<float>(c_.rms_norm_eps), xn_.data(),
                  nullptr);
  logits_.resize(static_cast<size_t>(c_.vocab_size));
  gemv_forward(xn_.data(), 1, w_.lm_head(), nullptr, logits_.data());
  return logits_.data();
}

}  // namespace bidora
