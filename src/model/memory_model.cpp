#include "model/memory_model.h"

#include <algorithm>

#include "core/error.h"
#include "model/decoder.h"

namespace bidora {
namespace {

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

constexpr int64_t kF32 = 4, kBF16 = 2;

// Floats kept per token by one block's forward for its backward (see the header comment).
int64_t layer_floats_per_token(const ModelConfig& c, const TrainingShape& s) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim();
  int64_t f = 2 * H;  // the two RMSNorm outputs
  f += Q + 2 * KV;    // q, k, v projections
  f += Q + KV;        // q, k after RoPE
  f += Q;             // attention output (input of o_proj)
  f += H;             // residual after attention
  f += 3 * I;         // gate, up, silu(gate) * up
  for (const auto& l : block_linear_shapes(c)) {
    if (std::find(s.targets.begin(), s.targets.end(), l.name) == s.targets.end()) continue;
    f += s.lora_rank;               // x · Aᵀ
    if (s.lora_dropout) f += l.in;  // the dropped-out input the LoRA path saw
  }
  return f;
}

// Floats per token that training without checkpointing keeps for every layer, beyond the
// checkpointed set: the decoder's activation store and the adapter runtime's per-layer state.
int64_t stored_floats_per_token(const ModelConfig& c, const TrainingShape& s) {
  int64_t f = layer_activation_floats(c);
  for (const auto& l : block_linear_shapes(c)) {
    if (std::find(s.targets.begin(), s.targets.end(), l.name) == s.targets.end()) continue;
    f += s.lora_rank;        // u = xd·Aᵀ
    if (s.dora) f += l.out;  // z = xd·Wᵀ + s·u·Bᵀ, for dm
  }
  return f;
}

}  // namespace

std::array<LinearShape, 7> block_linear_shapes(const ModelConfig& c) {
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  return {{{"q_proj", c.q_dim(), H},
           {"k_proj", c.kv_dim(), H},
           {"v_proj", c.kv_dim(), H},
           {"o_proj", H, c.q_dim()},
           {"gate_proj", I, H},
           {"up_proj", I, H},
           {"down_proj", H, I}}};
}

ParameterBreakdown count_parameters(const ModelConfig& c) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, L = c.num_layers;
  ParameterBreakdown p;
  p.embedding = c.vocab_size * H;
  p.lm_head = c.tie_word_embeddings ? 0 : c.vocab_size * H;
  for (const auto& l : block_linear_shapes(c)) p.block_linear += l.out * l.in * L;
  int64_t bias = 0;
  if (c.qkv_bias) bias += c.q_dim() + 2 * c.kv_dim();
  if (c.o_bias) bias += H;
  if (c.mlp_bias) bias += 2 * I + H;
  p.block_bias = bias * L;
  p.norms = 2 * H * L + H + (c.qk_norm ? 2 * c.head_dim * L : 0);
  return p;
}

int64_t linear_weight_bytes(int64_t out, int64_t in, WeightStorage storage) {
  const int64_t n = out * in;
  switch (storage) {
    case WeightStorage::F32:
      return n * kF32;
    case WeightStorage::BF16:
      return n * kBF16;
    case WeightStorage::NF4: {
      // bitsandbytes layout with double quantisation (formats.md §3.2-3.3), as quant::Nf4Matrix
      // keeps it: packed nibbles (odd n padded), u8 absmax per 64-value block, f32 absmax per 256
      // blocks, one f32 offset, and its own copies of the 16- and 256-entry f32 code tables.
      const int64_t blocks = ceil_div(n, 64);
      return ceil_div(n, 2) + blocks + ceil_div(blocks, 256) * kF32 + kF32 + (16 + 256) * kF32;
    }
    case WeightStorage::INT8:
      return n + ceil_div(n, kInt8ScaleBlock) * kF32;
  }
  return 0;
}

int64_t frozen_weight_bytes(const ModelConfig& c, WeightStorage storage) {
  const ParameterBreakdown p = count_parameters(c);
  // Embeddings and lm_head: f32 only when everything is f32; bf16 otherwise (never quantised).
  const int64_t table_bytes = storage == WeightStorage::F32 ? kF32 : kBF16;
  int64_t bytes = (p.embedding + p.lm_head) * table_bytes;
  for (const auto& l : block_linear_shapes(c))
    bytes += linear_weight_bytes(l.out, l.in, storage) * c.num_layers;
  bytes += (p.block_bias + p.norms) * kF32;
  return bytes;
}

MemoryEstimate estimate_training_memory(const ModelConfig& c, WeightStorage storage, const TrainingShape& s) {
  BIDORA_CHECK(c.hidden_size > 0 && c.num_layers > 0 && c.vocab_size > 0,
               "memory estimate: the model config has no dimensions (hidden_size {}, layers {}, vocab {})",
               c.hidden_size, c.num_layers, c.vocab_size);
  BIDORA_CHECK(s.batch >= 1 && s.seq_len >= 1 && s.lora_rank >= 1,
               "memory estimate: batch {}, seq_len {} and rank {} must all be >= 1", s.batch, s.seq_len,
               s.lora_rank);
  MemoryEstimate e;
  e.weights = frozen_weight_bytes(c, storage);

  int64_t directions = 0, magnitudes = 0, regulariser_floats = 0;
  for (const auto& l : block_linear_shapes(c)) {
    if (std::find(s.targets.begin(), s.targets.end(), l.name) == s.targets.end()) continue;
    directions += s.lora_rank * (l.in + l.out);
    magnitudes += s.dora ? l.out : 0;
    regulariser_floats =
        std::max(regulariser_floats, l.out * l.in + std::min(l.out, l.in) * std::min(l.out, l.in));
  }
  directions *= c.num_layers;
  magnitudes *= c.num_layers;
  const int64_t trainable = directions + magnitudes;
  e.trainable_params = trainable;
  e.adapter = trainable * kF32 * 4;  // value, gradient, AdamW m and v
  if (s.bilevel) e.adapter += directions * kF32 * 2 + magnitudes * 8 * 2;

  const int64_t N = s.batch * s.seq_len;
  const int64_t H = c.hidden_size;
  const int64_t layer_set =
      N * layer_floats_per_token(c, s) * kF32 + s.batch * c.num_heads * s.seq_len * s.seq_len * kF32;
  const int64_t working = 2 * layer_set;  // saved tensors + their gradient buffers in backward
  const int64_t residual = N * H * kF32;  // one [N, H] hidden state
  // Both modes keep every layer's input, the final hidden states and one layer's working set
  // (the decoder's shared layer buffers, used by the replay or by the final norm, and the
  // gradient buffers); without checkpointing every layer's activations are stored as well.
  e.activations = (c.num_layers + 1) * residual + working;
  if (!s.gradient_checkpointing) e.activations += c.num_layers * N * stored_floats_per_token(c, s) * kF32;
  // Fused loss: a hidden chunk, its gradient and one tile of logits.
  const int64_t vocab_tile = std::min(c.vocab_size, std::max<int64_t>(1, kWeightTileFloats / H));
  e.activations += kLossTokenChunk * (2 * H + vocab_tile) * kF32;
  // d(hidden) flowing back through the layers plus the embedding output.
  e.activations += 2 * residual;

  // One tile for the decoder's Linear layers and one for the loss.
  e.scratch = storage == WeightStorage::F32 ? 0 : 2 * kWeightTileFloats * kF32;
  if (s.bilevel && s.orth_regulariser) e.scratch += regulariser_floats * kF32 + kRegulariserTileBytes;
  e.overhead = kRuntimeOverheadBytes;
  return e;
}

bool fits(const MemoryEstimate& e, int64_t available_bytes) {
  return available_bytes > 0 &&
         static_cast<double>(e.total()) <= kFitMargin * static_cast<double>(available_bytes);
}

std::optional<WeightStorage> recommend_storage(const ModelConfig& cfg, int64_t available_bytes,
                                               const TrainingShape& shape) {
  for (WeightStorage s : kStoragePreference) {
    if (fits(estimate_training_memory(cfg, s, shape), available_bytes)) return s;
  }
  return std::nullopt;
}

}  // namespace bidora
