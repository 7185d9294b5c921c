#include "model/memory_model.h"

#include <algorithm>
#include <string_view>

#include "core/error.h"
#include "model/decoder.h"

namespace bidora {
namespace {

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

constexpr int64_t kF32 = 4, kF64 = 8, kBF16 = 2;

bool targeted(const TrainingShape& s, const char* name) {
  return std::find(s.targets.begin(), s.targets.end(), name) != s.targets.end();
}

// Floats per token the adapted Linears of a layer save for their backward (LoraSaved: u [N, r],
// DoRA's z [N, out]); only_down: down_proj's alone.
int64_t adapter_saved_floats_per_token(const ModelConfig& c, const TrainingShape& s, bool only_down = false) {
  int64_t f = 0;
  for (const auto& l : block_linear_shapes(c)) {
    if (!targeted(s, l.name) || (only_down && std::string_view(l.name) != "down_proj")) continue;
    f += s.lora_rank;
    if (s.dora) f += l.out;
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

int64_t optimizer_state_bytes(int64_t numel, bool adam_8bit) {
  if (!adam_8bit || numel < kAdam8bitMinNumel) return 2 * numel * kF32;
  return 2 * (numel + ceil_div(numel, kAdam8bitBlock) * kF32);
}

std::vector<MemoryEstimate::Part> MemoryEstimate::parts() const {
  return {{"weights", "frozen base weights in their storage", weights},
          {"adapter", "trainable A, B (m) and their gradients, f32", adapter},
          {"optimizer", "optimiser states (AdamW m, v)", optimizer},
          {"activations", "kept for the backward: layer inputs (all activations without checkpointing)",
           activations},
          {"layer", "one layer's working set and gradient buffers, adapter scratch", layer},
          {"attention", "attention workspace: K, V tiles, delta (no T x T matrix)", attention},
          {"loss", "lm_head + cross-entropy chunk", loss},
          {"checkpoint", "a save's copy of the adapter (and optimiser state)", checkpoint},
          {"scratch", "dequantisation tiles (and the BiDoRA regulariser)", scratch},
          {"overhead", "process, libraries, tokenizer", overhead}};
}

MemoryEstimate estimate_training_memory(const ModelConfig& c, WeightStorage storage, const TrainingShape& s) {
  BIDORA_CHECK(c.hidden_size > 0 && c.num_layers > 0 && c.vocab_size > 0,
               "memory estimate: the model config has no dimensions (hidden_size {}, layers {}, vocab {})",
               c.hidden_size, c.num_layers, c.vocab_size);
  BIDORA_CHECK(s.batch >= 1 && s.seq_len >= 1 && s.lora_rank >= 1,
               "memory estimate: batch {}, seq_len {} and rank {} must all be >= 1", s.batch, s.seq_len,
               s.lora_rank);
  const int64_t H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim(), L = c.num_layers,
                r = s.lora_rank;
  const int64_t N = s.tokens();
  constexpr int64_t A = kActivationBytes;
  MemoryEstimate e;
  e.weights = frozen_weight_bytes(c, storage);

  // Adapter tensors and their optimiser state, per adapted Linear of one layer.
  int64_t directions = 0, magnitudes = 0, optimizer = 0, regulariser_floats = 0, max_in = 0, max_out = 0;
  int64_t targeted_in = 0, targeted_kinds = 0;  // DoRA keeps one dropped set per adapted kind
  for (const auto& l : block_linear_shapes(c)) {
    if (!targeted(s, l.name)) continue;
    targeted_in += l.in;
    ++targeted_kinds;
    directions += r * (l.in + l.out);
    optimizer += optimizer_state_bytes(r * l.in, s.adam_8bit) + optimizer_state_bytes(l.out * r, s.adam_8bit);
    if (s.dora) {
      magnitudes += l.out;
      optimizer += optimizer_state_bytes(l.out, s.adam_8bit);
    }
    max_in = std::max(max_in, l.in);
    max_out = std::max(max_out, l.out);
    regulariser_floats =
        std::max(regulariser_floats, l.out * l.in + std::min(l.out, l.in) * std::min(l.out, l.in));
  }
  directions *= L;
  magnitudes *= L;
  e.trainable_params = directions + magnitudes;
  e.adapter = e.trainable_params * kF32 * 2 + magnitudes * kF64;  // values + gradients, DoRA's ‖W_i‖²
  if (s.bilevel) e.adapter += directions * kF32 * 2 + magnitudes * kF64 * 2;
  e.optimizer = optimizer * L;

  // Kept across layers: the checkpoints and down_proj's adapter state (a replay does not run
  // down_proj), and without checkpointing every layer's activations and adapter state.
  const int64_t saved = adapter_saved_floats_per_token(c, s);
  const int64_t saved_down = adapter_saved_floats_per_token(c, s, /*only_down=*/true);
  e.activations = L * N * (H + saved_down) * A;
  if (!s.gradient_checkpointing)
    e.activations += L * N * (layer_activation_floats(c) + saved - saved_down) * A;
  if (s.gradient_checkpointing && s.dora) {  // the row norms the replay reuses, [out] per linear
    int64_t outs = 0;
    for (const auto& l : block_linear_shapes(c))
      if (targeted(s, l.name)) outs += l.out;
    e.activations += L * outs * kF32;
  }

  // One layer's working set (decoder.h's shared buffers and the adapters' scratch).
  int64_t layer = 2 * H + layer_activation_floats(c);         // residual stream + o/down output, block
  layer += 3 * H + std::max({H, I, Q}) + Q + 2 * KV + 3 * I;  // gradient buffers
  if (s.gradient_checkpointing) layer += saved - saved_down;  // one slot per replayed kind
  if (s.dropout > 0) layer += 2 * max_in;                     // dropped input, its gradient
  if (s.dora) layer += max_out;                               // dy ⊙ g
  e.layer = N * layer * A;
  if (s.dora) e.layer += std::min<int64_t>(N, 128) * max_out * kF32;  // s·u Bᵀ, 128 tokens at a time
  if (s.dora && s.dropout > 0) {
    // Dropped positions: a set per adapted kind (int32 column each, int64 offset per token), the
    // f32 sampled product and gathered input of the widest, and one weight tile transposed into
    // panels (a whole matrix if smaller): bf16 for bf16 weights, else f32.
    auto dropped = [&](int64_t in) {
      return static_cast<int64_t>(s.dropout * static_cast<double>(N * in)) + 1;
    };
    e.layer +=
        dropped(targeted_in) * 4 + targeted_kinds * (N + 1) * 8 + dropped(max_in) * 2 * kF32 +
        std::min(max_out * max_in, kWeightTileFloats) * (storage == WeightStorage::BF16 ? kBF16 : kF32);
  }

  // Attention: K and V packed per row in tiles of 64 keys, and the backward's delta.
  const int64_t packed = s.batch * ceil_div(s.seq_len, kAttentionKeyTile) * kAttentionKeyTile * KV;
  e.attention = (2 * packed + N * c.num_heads) * A;

  // Fused loss: a hidden chunk, its gradient and one tile of logits (plus per-row max/sum/target).
  const int64_t chunk = std::min(kLossTokenChunk, N);
  const int64_t vocab_tile = std::min(c.vocab_size, std::max<int64_t>(1, kWeightTileFloats / H));
  e.loss = chunk * (2 * H + vocab_tile + 3) * A;

  // A save's copy of what it writes: the adapter's values, and the optimiser state in checkpoints.
  e.checkpoint = e.trainable_params * kF32 + (s.saves_optimizer ? e.optimizer : 0);

  e.scratch = kWeightTiles * kWeightTileFloats * kF32;
  if (s.bilevel && s.orth_regulariser) e.scratch += regulariser_floats * kF32 + kRegulariserTileBytes;
  if (s.bf16_compute) {
    e.scratch += 2 * N * std::max({H, I, Q}) * kBF16;  // the decoder's and the adapters' activations
    if (storage != WeightStorage::BF16) e.scratch += kWeightTiles * kWeightTileFloats * kBF16;
    e.loss += chunk * (H + vocab_tile) * kBF16;
  }
  e.overhead = kRuntimeOverheadBytes + kTokenizerBytesPerToken * c.vocab_size;
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
