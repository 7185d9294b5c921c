#pragma once
// How much RAM fine-tuning a model with LoRA / DoRA / BiDoRA on this engine needs, computed from
// its config and the run's shape. Used by `bidora estimate`, `bidora list-models`, `bidora config`,
// and by the auto-hardware plan (storage, batch, sequence length) of `bidora train`.
//
// The estimate is the sum of named parts (bytes), each counting buffers the engine really
// allocates, so a change in the code maps to one term here. N = batch x seq_len tokens, H hidden,
// I intermediate, Q = heads x head_dim, KV = kv_heads x head_dim, L layers, V vocabulary, r rank;
// the engine computes in f32 (kActivationBytes per value).
//
//   weights      frozen base weights in their storage, tensor by tensor:
//                  f32  4 B/param;  bf16 2 B/param (a bf16 checkpoint is mapped zero-copy: its
//                       pages count once touched, and training touches all of them);
//                  nf4  block Linear weights as bitsandbytes stores them with double quantisation
//                       (packed nibbles + one u8 absmax per 64 + one f32 per 256 absmax + offset
//                       = 4.127 bits/param, plus the code tables); embeddings and lm_head stay bf16;
//                  int8 block Linear weights 1 B/param + one f32 scale per kInt8ScaleBlock values
//                       (the loader's blockwise default); embeddings and lm_head stay bf16;
//                (per matrix these equal FrozenMatrix::bytes(), which a test checks);
//                norms and biases are kept in f32 with every storage (the loader upcasts them
//                like PEFT's prepare_model_for_kbit_training; they are tiny).
//   adapter      the trainable tensors A [r, in], B [out, r] (and DoRA's magnitude m [out]) in f32
//                with their f32 gradients (8 B per trainable parameter), plus DoRA's cached
//                ‖W_i‖² (f64 per magnitude). BiDoRA's hypergradient adds a copy of A, B and of
//                v = ∂L_val/∂(A, B) in f32 and the direct and finite-difference magnitude
//                gradients in f64.
//   optimizer    the optimiser's state per trainable tensor: AdamW keeps m and v in f32
//                (8 B/param); 8-bit AdamW (optim_adamw8bit.h) keeps one byte per moment plus an
//                f32 absmax per 256 values and moment, for tensors of >= 4096 values, and f32
//                moments for smaller ones (DoRA magnitudes of narrow layers).
//   activations  what a training pass keeps across layers for the backward:
//                  with gradient checkpointing: every layer's input [N, H] (the checkpoints)
//                  and down_proj's adapter state, which the replay does not recompute (u [N, r],
//                  DoRA's z [N, H]), and DoRA's row norms [out] per adapted linear;
//                  without: the same, plus every layer's activation store
//                  (layer_activation_floats(), decoder.h: norm outputs and inverse rms, q/k after
//                  RoPE, v, attention output and log-sum-exp, the residual after attention,
//                  gate/up/act) and each adapted Linear's saved state (u = x·Aᵀ [N, r], and for
//                  DoRA z [N, out]).
//   layer        one layer's working set, allocated once and reused by every layer (and by the
//                checkpoint replay): the residual stream and o/down output [N, H] x 2, the
//                shared activation block [N, layer_activation_floats], the backward's gradient
//                buffers (dx, d_mid, d_norm [N, H] x 3, a [N, max(H, I, Q)] accumulator, dq
//                [N, Q], dk and dv [N, KV], d_act, d_gate, d_up [N, I] x 3); with checkpointing
//                the adapters' saved state of one layer (one slot per replayed Linear kind);
//                the adapters' scratch: with dropout the dropped input and its gradient
//                [N, max in] x 2, for DoRA the row-scaled gradient [N, max out], and for DoRA
//                with dropout the dropped-position set (~p of the inputs: an int32 column and an
//                f32 product each, an int64 row offset per token) and a transposed weight block.
//   attention    the memory-efficient attention's workspace (attention.h): K and V transposed in
//                tiles of 64 keys [N rounded up per row, KV] x 2 and the backward's delta
//                [N, heads]. No [T, T] matrix exists: the forward keeps only the log-sum-exp
//                (counted in the activation block) and the score tiles are 32 x 64 on the stack.
//   loss         the fused lm_head + cross-entropy (lm_loss.h) on kLossTokenChunk tokens at a time:
//                the hidden chunk and its gradient [chunk, H] x 2 and one tile of logits
//                [chunk, vocab tile]; the [N, V] logits never exist.
//   checkpoint   saving: the safetensors writer copies the tensors it writes, so a save holds one
//                more copy of the adapter's values (final_model/, best_model/) and, for a
//                checkpoint-<step>/ (training.save_steps > 0), of the optimiser state too; the save
//                runs while the training buffers are allocated, so it adds to the peak.
//   scratch      dequantisation tiles: three WeightTiles of kWeightTileFloats f32 (the decoder's,
//                the loss's, the adapter runtime's), allocated and zeroed whatever the storage;
//                BiDoRA's orthogonality regulariser adds D and the Gram of the largest adapted
//                Linear and its gradient tile. With bf16 compute (model.compute_dtype bf16) each
//                of the decoder's and the adapters' tiles keeps a GEMM's activations rounded to
//                bf16 [N, max(H, I, Q)], each tile a bf16 copy of its weight rows when the storage is
//                not bf16, and the loss its hidden chunk and logits tile in bf16.
//   overhead     the process itself, measured (bench/memory_model_check.sh): code and libraries
//                (oneDNN, OpenMP), the allocator's slack, and the tokenizer, whose vocabulary,
//                merges and lookup tables grow with vocab_size (kTokenizerBytesPerToken each).
//                A training file adds about its size in tokenised examples: not counted (the
//                estimate needs no data), small next to the rest for typical datasets.
// Checked against the peak RSS of `bidora train` by bench/memory_model_check.sh (SmolLM2-135M and
// Qwen2.5-0.5B shapes; bf16 / nf4 / int8, LoRA / DoRA, checkpointing on and off, 512 and 2048 tokens,
// AdamW and 8-bit AdamW, BiDoRA): all 32 cases within 5.1%, BiDoRA the furthest (its hypergradient
// copies partly reuse heap the tokenizer's parse freed). bf16 compute on Qwen2.5-0.5B: 1878 / 1856 MB
// (bf16 weights), 1384 / 1364 MB (NF4). With checkpointing the largest parts are the weights and
// `layer` (of which the [N, I]-wide MLP buffers are ~80%); without it, `activations`. Only the
// overhead constant is fitted; every other term is counted.
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
// WeightTiles a training process holds: the decoder's, the loss workspace's, the adapter runtime's.
inline constexpr int64_t kWeightTiles = 3;
// The orthogonality regulariser's tile of gradient rows (RegulariserScratch's default).
inline constexpr int64_t kRegulariserTileBytes = int64_t{4} << 20;
// Bytes per activation value: the engine computes in f32.
inline constexpr int64_t kActivationBytes = 4;
// Keys per attention tile (attention.cpp's kBk): K/V are packed per row in multiples of it.
inline constexpr int64_t kAttentionKeyTile = 64;
// 8-bit AdamW: block size of the absmax and the smallest tensor it quantises (bitsandbytes).
inline constexpr int64_t kAdam8bitBlock = 256;
inline constexpr int64_t kAdam8bitMinNumel = 4096;
// The process without model or data: code and libraries, OpenMP/oneDNN state, the allocator's
// slack. Measured as what the peak RSS of the calibration runs (bench/memory_model_check.sh, two
// models, 16 configurations each) has beyond every other part: 32-40 MiB for LoRA and DoRA.
inline constexpr int64_t kRuntimeOverheadBytes = int64_t{32} << 20;
// The tokenizer in memory per vocabulary entry (token strings in both directions, BPE merges
// and ranks, the pre-tokenizer's caches; measured: `bidora data-preview` peak RSS with the
// Qwen3 (151k) and Llama 2 (32k) tokenizers minus the bare process, ~500 B per entry).
inline constexpr int64_t kTokenizerBytesPerToken = 512;

// Bytes of the frozen weights stored as `storage` (see the header comment).
int64_t frozen_weight_bytes(const ModelConfig& cfg, WeightStorage storage);
// Bytes of one [out, in] Linear weight in `storage`.
int64_t linear_weight_bytes(int64_t out, int64_t in, WeightStorage storage);
// Bytes of one tensor's optimiser state (AdamW: f32 m and v; 8-bit AdamW: see the header comment).
int64_t optimizer_state_bytes(int64_t numel, bool adam_8bit);

// The training run the estimate is for. The defaults are what `list-models` assumes.
struct TrainingShape {
  int64_t lora_rank = 16;
  std::vector<std::string> targets = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                      "gate_proj", "up_proj", "down_proj"};
  bool dora = false;       // adds the magnitude vector [out] per adapted Linear
  double dropout = 0.05;   // LoRA dropout p: > 0 keeps a dropped copy of each adapted Linear's input
  bool adam_8bit = false;  // training.optimizer = adamw_8bit
  int64_t batch = 4;
  int64_t seq_len = 512;
  bool gradient_checkpointing = true;
  bool saves_optimizer = true;  // checkpoints during training (save_steps > 0) hold the optimiser state
  // BiDoRA: the hypergradient keeps a copy of A, B and of v = ∂L_val/∂(A, B) and, in double, the
  // direct and finite-difference magnitude gradients; the orthogonality regulariser needs the
  // normalised direction D [out, in] and the smaller Gram of the largest adapted Linear.
  bool bilevel = false;
  bool orth_regulariser = false;
  bool bf16_compute = false;  // model.compute_dtype bf16: bf16 copies of GEMM inputs (scratch)
  int64_t tokens() const { return batch * seq_len; }
};

struct MemoryEstimate {
  int64_t weights = 0;
  int64_t adapter = 0;
  int64_t optimizer = 0;
  int64_t activations = 0;
  int64_t layer = 0;
  int64_t attention = 0;
  int64_t loss = 0;
  int64_t checkpoint = 0;
  int64_t scratch = 0;
  int64_t overhead = 0;
  int64_t trainable_params = 0;  // for display; its bytes are in `adapter` and `optimizer`
  int64_t total() const {
    return weights + adapter + optimizer + activations + layer + attention + loss + checkpoint + scratch +
           overhead;
  }
  // Bytes that grow with the tokens of a micro-batch (activations, layer, attention, loss).
  int64_t per_batch() const { return activations + layer + attention + loss; }

  struct Part {
    const char* key;   // JSON key, e.g. "activations"
    const char* what;  // one line for tables
    int64_t bytes;
  };
  // Every part above in a fixed order (sums to total()).
  std::vector<Part> parts() const;
};

MemoryEstimate estimate_training_memory(const ModelConfig& cfg, WeightStorage storage,
                                        const TrainingShape& shape = {});

// Storages in the order worth trying: best quality (and on a CPU also fastest) first.
inline constexpr std::array<WeightStorage, 3> kStoragePreference = {WeightStorage::BF16, WeightStorage::INT8,
                                                                    WeightStorage::NF4};
// Headroom kept free when deciding what fits: the estimate is within ~15% and the OS needs room.
inline constexpr double kFitMargin = 0.90;
bool fits(const MemoryEstimate& e, int64_t available_bytes);
// The first storage of kStoragePreference whose estimate fits, or nullopt if none does.
std::optional<WeightStorage> recommend_storage(const ModelConfig& cfg, int64_t available_bytes,
                                               const TrainingShape& shape = {});

}  // namespace bidora
