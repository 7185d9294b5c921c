#pragma once
// How much RAM fine-tuning a model with LoRA on this engine needs, computed from its config.
// Used by `bidora list-models` to mark what fits this machine and by `quantization: auto`.
//
// The estimate is a sum of five documented parts (all bytes):
//   weights      frozen base weights in their storage, tensor by tensor:
//                  f32  4 B/param;  bf16 2 B/param;
//                  nf4  block Linear weights as bitsandbytes stores them with double quantisation
//                       (packed nibbles + one u8 absmax per 64 + one f32 per 256 absmax + offset
//                       = 4.127 bits/param, plus the code tables); embeddings and lm_head stay bf16;
//                  int8 block Linear weights 1 B/param + one f32 scale per kInt8ScaleBlock values
//                       (the loader's blockwise default); embeddings and lm_head stay bf16;
//                (per matrix these equal FrozenMatrix::bytes(), which a test checks);
//                norms are kept in f32 and biases in f32 with every storage (the k-bit loader
//                upcasts them like PEFT's prepare_model_for_kbit_training; they are tiny).
//   adapter      LoRA A and B (plus the DoRA magnitude when enabled) in f32 with their gradients
//                and the two AdamW moments: 16 B per trainable parameter.
//   activations  f32 (the engine computes in f32), N = batch x seq_len tokens:
//                - with gradient checkpointing: each layer's input [N, H] is kept, plus the final
//                  hidden states; one layer at a time is recomputed, so add ONE layer's working
//                  set (below);
//                - without: the same, plus every layer's stored activations as the decoder keeps
//                  them, per token: layer_activation_floats (decoder.h: norm outputs, q/k/v,
//                  attention output and log-sum-exp, residual after attention, gate/up/act) and
//                  the adapters' saved state per adapted Linear (x·Aᵀ [r], DoRA's pre-scale output
//                  [out]; dropout masks are regenerated, not stored). Attention keeps no [T, T]
//                  matrix and the gradient buffers stay one layer's worth, so those are not
//                  multiplied by the depth (measured: bench/bench_decoder.cpp);
//                a layer's working set = its saved tensors (two norm outputs, q/k/v before and
//                after RoPE, attention output, gate/up/act, the LoRA dropout inputs) plus the
//                attention probabilities [batch, heads, T, T], doubled for the gradient buffers of
//                the backward pass;
//                - the fused lm_head + cross-entropy works on kLossTokenChunk tokens and one weight
//                  tile of vocabulary at a time, so logits for all tokens never exist.
//   scratch      the weight tiles the Linear layers dequantise into before each GEMM.
//   overhead     a fixed allowance for the process, oneDNN/OpenMP, tokenizer and dataset.
// It is a first model, meant to be refined against measured peak RSS by a later issue.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/frozen_matrix.h"  // WeightStorage
#include "model/model_config.h"

namespace bidora {

// Parameters grouped by how the loader stores them.
struct ParameterBreakdown {
  int64_t embedding = 0;     // embed_tokens [V, H]
  int64_t lm_head = 0;       // [V, H] when untied, else 0
  int64_t block_linear = 0;  // the seven projection weights of every block (what nf4/int8 quantise)
  int64_t block_bias = 0;    // q/k/v (Qwen2, attention_bias), o and MLP biases
  int64_t norms = 0;         // RMSNorm weights: two per block, Qwen3 q/k norms, the final norm
  int64_t total() const { return embedding + lm_head + block_linear + block_bias + norms; }
};
ParameterBreakdown count_parameters(const ModelConfig& cfg);

struct LinearShape {
  const char* name;  // "q_proj", ..., "down_proj"
  int64_t out, in;
};
// The seven Linear layers of one block, in checkpoint order (q, k, v, o, gate, up, down).
std::array<LinearShape, 7> block_linear_shapes(const ModelConfig& cfg);

// One f32 scale per this many int8 values (symmetric absmax blocks along the flattened weight).
inline constexpr int64_t kInt8ScaleBlock = 64;
// Tokens per chunk of the fused lm_head + loss (matches LmLossWorkspace's default).
inline constexpr int64_t kLossTokenChunk = 256;
// Floats in one dequantisation tile (matches WeightTile's default).
inline constexpr int64_t kWeightTileFloats = int64_t{1} << 21;
// The orthogonality regulariser's tile of gradient rows (RegulariserScratch's default).
inline constexpr int64_t kRegulariserTileBytes = int64_t{4} << 20;
inline constexpr int64_t kRuntimeOverheadBytes = int64_t{256} << 20;

// Bytes of the frozen weights stored as `storage` (see the header comment).
int64_t frozen_weight_bytes(const ModelConfig& cfg, WeightStorage storage);
// Bytes of one [out, in] Linear weight in `storage`.
int64_t linear_weight_bytes(int64_t out, int64_t in, WeightStorage storage);

// The training run the estimate is for. The defaults are what `list-models` assumes.
struct TrainingShape {
  int64_t lora_rank = 16;
  std::vector<std::string> targets = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                      "gate_proj", "up_proj", "down_proj"};
  bool dora = false;         // adds the magnitude vector [out] per adapted Linear
  bool lora_dropout = true;  // dropout > 0 keeps a dropped copy of each adapted Linear's input
  int64_t batch = 4;
  int64_t seq_len = 512;
  bool gradient_checkpointing = true;
  // BiDoRA: the hypergradient keeps a copy of A, B and of v = ∂L_val/∂(A, B) and, in double, the
  // direct and finite-difference magnitude gradients; the orthogonality regulariser needs the
  // normalised direction D [out, in] and the smaller Gram of the largest adapted Linear.
  bool bilevel = false;
  bool orth_regulariser = false;
};

struct MemoryEstimate {
  int64_t weights = 0;
  int64_t adapter = 0;
  int64_t activations = 0;
  int64_t scratch = 0;
  int64_t overhead = 0;
  int64_t trainable_params = 0;  // for display; its bytes are in `adapter`
  int64_t total() const { return weights + adapter + activations + scratch + overhead; }
};

MemoryEstimate estimate_training_memory(const ModelConfig& cfg, WeightStorage storage,
                                        const TrainingShape& shape = {});

// Storages in the order worth trying: best quality (and on a CPU also fastest) first.
inline constexpr std::array<WeightStorage, 3> kStoragePreference = {WeightStorage::BF16, WeightStorage::INT8,
                                                                    WeightStorage::NF4};
// Headroom kept free when deciding what fits: the estimate is approximate and the OS needs room.
inline constexpr double kFitMargin = 0.90;
bool fits(const MemoryEstimate& e, int64_t available_bytes);
// The first storage of kStoragePreference whose estimate fits, or nullopt if none does.
std::optional<WeightStorage> recommend_storage(const ModelConfig& cfg, int64_t available_bytes,
                                               const TrainingShape& shape = {});

}  // namespace bidora
