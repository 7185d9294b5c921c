#pragma once
// `bidora merge`: a LoRA / rsLoRA / DoRA adapter folded into its base model's weights, written as
// a standard Hugging Face model directory that transformers (and bidora) load without PEFT.
//
// Maths (PEFT's merge, lora/layer.py merge + get_delta_weight, dora.py): per adapted Linear,
//   LoRA / rsLoRA: W' = W + s·B·A                      (s = alpha / r, or alpha / √r with rsLoRA)
//   DoRA:          W' = (m / ‖W + s·B·A‖_row) ⊙ (W + s·B·A)   (one factor per output row)
// computed by LoraLayer::merged_weight in float32/float64 from the base weights as the checkpoint
// stores them (f32 / bf16 / f16), never from quantised weights: merging onto NF4 or int8 values
// would bake their rounding error into the model, so an adapter trained over NF4 is merged into
// the original base, as PEFT users do. Each output tensor is rounded once to the output dtype
// (round to nearest even, as torch's .to(dtype)).
//
// Output directory: every tensor of the base checkpoint (embeddings, norms, biases, lm_head when
// the base has one: tied embeddings stay tied), the adapted projections replaced, all floating
// tensors in the output dtype; "model.safetensors", or HF-style shards
// "model-00001-of-00003.safetensors" + "model.safetensors.index.json" when the data exceeds the
// shard size; metadata {"format": "pt"}; config.json with torch_dtype set to the output dtype;
// the tokenizer / generation / chat-template files copied.
//
// Memory: tensors are produced and written one at a time (one merged Linear in float32 plus its
// output bytes at most); the base checkpoint stays memory-mapped and each tensor's pages are
// released once written. The directory is built in "<output>.tmp.<pid>" and renamed into place,
// so a failure leaves no half-written model (core/files.h replace_directory).
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "io/dtype.h"

namespace bidora {

struct MergeOptions {
  std::string model;    // base model directory or Hugging Face id in the local cache
  std::string adapter;  // PEFT adapter directory
  std::string output;   // model directory to write
  // F32, BF16 or F16; nullopt: config.json's torch_dtype (the stored dtype when it is absent).
  std::optional<DType> dtype;
  uint64_t max_shard_bytes = 5'000'000'000;  // transformers' default max_shard_size "5GB"
  bool overwrite = false;                    // replace an existing output directory
  bool allow_base_mismatch = false;          // accept an adapter trained for another base model
};

struct MergeResult {
  std::string output;  // the directory written
  std::string model_dir;
  DType dtype = DType::F32;
  std::vector<std::string> files;   // safetensors files written, in shard order
  std::vector<std::string> copied;  // config / tokenizer files copied
  int64_t tensors = 0;              // tensors written
  int64_t merged_linears = 0;       // of which merged projections
  uint64_t total_size = 0;          // tensor data bytes (the index's metadata.total_size)
};

// Called after each safetensors file is complete: (index from 0, count, file name, file bytes).
using MergeProgress =
    std::function<void(size_t shard, size_t shards, const std::string& file, uint64_t bytes)>;

// Runs the whole merge. Refuses (Error, nothing written) an existing output without overwrite, an
// output that is or contains the base model or the adapter directory, an adapter that does not fit
// the model (adapters/adapter_loading.h), and an output that cannot be created.
MergeResult merge_adapter(const MergeOptions& o, const MergeProgress& progress = {});

// max_shard_size as huggingface_hub / transformers parse it: an integer number of bytes, or a number
// with a unit: KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), any case.
// Error naming `what` and the text otherwise.
uint64_t parse_byte_size(const std::string& text, const std::string& what = "--max-shard-size");

// huggingface_hub's split_state_dict_into_shards: tensors (their byte sizes, in order) fill a shard
// until the next one would take it past `max_bytes`; a tensor larger than `max_bytes` gets a shard
// of its own, placed before the shard being filled. Returns tensor indices per shard.
std::vector<std::vector<size_t>> plan_shards(const std::vector<uint64_t>& sizes, uint64_t max_bytes);

// "model-00002-of-00005.safetensors" for index 1 of 5; "model.safetensors" when count is 1.
std::string shard_file_name(size_t index, size_t count);

// config.json's torch_dtype spelling ("float32", "bfloat16", "float16") of F32 / BF16 / F16.
const char* torch_dtype_name(DType t);

}  // namespace bidora
