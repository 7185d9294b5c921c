#pragma once
// A LoRA adapter as the GGUF file llama.cpp loads with --lora (formats.md §4), laid out as
// llama.cpp's convert_lora_to_gguf.py writes it:
//   KVs: general.architecture (llama.cpp's name for the base model: "llama" for Llama, Mistral,
//        TinyLlama and SmolLM2; "qwen2"; "qwen3"), general.type = "adapter", adapter.type = "lora",
//        general.name, general.base_model.*, adapter.lora.alpha (f32), general.quantization_version.
//   tensors: "blk.N.<attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down>.weight.lora_a" with
//        PyTorch shape [r, in] (ne = {in, r}) and ".lora_b" [out, r] (ne = {r, out}): PEFT's layout.
// llama.cpp computes W x + (alpha / r) · B (A x), with r read from lora_b per tensor; rsLoRA's
// alpha / sqrt(r) is kept by writing alpha' = alpha · sqrt(r).
// For the llama architecture convert_hf_to_gguf.py reorders the rows of q_proj and k_proj
// (LlamaModel.permute: within each head the two rotary halves are interleaved, because llama.cpp
// rotates adjacent pairs where transformers rotates i with i + head_dim / 2). The base GGUF holds
// W_q and W_k permuted, so lora_b of q and k must be permuted the same way (lora_a is unchanged),
// exactly what convert_lora_to_gguf.py does through its LoraTorchTensor wrapper.
// DoRA adapters have no llama.cpp equivalent (no magnitude term) and are refused.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/adapter_set.h"
#include "io/gguf.h"
#include "model/model_config.h"

namespace bidora {

// convert_lora_to_gguf.py --outtype: f32 (its default), f16, bf16, q8_0.
enum class GgufOutType { F32, F16, BF16, Q8_0 };
std::optional<GgufOutType> gguf_outtype_from_string(std::string_view s);
const char* gguf_outtype_name(GgufOutType t);  // "f32", "f16", "bf16", "q8_0"

const char* llama_cpp_architecture(ModelFamily f);               // "llama", "llama", "qwen2", "qwen3"
bool llama_cpp_permutes_qk(ModelFamily f);                       // true for the llama architecture
std::string llama_cpp_tensor_name(int64_t layer, LinearKind k);  // "blk.3.attn_q.weight"

// The rows of a row-major [rows, cols] matrix reordered as LlamaModel.permute(w, n_head, n_head):
// reshape(n_head, 2, rows / n_head / 2, cols), swap axes 1 and 2, reshape back. Within each head
// of size hd, new row 2i + j is old row j·hd/2 + i. Error if rows is not a multiple of 2·n_head.
std::vector<float> llama_cpp_permute_rows(std::span<const float> w, int64_t rows, int64_t cols,
                                          int64_t n_head);

struct GgufExportOptions {
  GgufOutType outtype = GgufOutType::F32;
  std::string name;        // general.name (required)
  std::string base_model;  // general.base_model.0.name; empty: no base-model keys
};

// What the export wrote, for the command's summary.
struct GgufExportSummary {
  std::string architecture;
  float alpha = 0.0f;  // adapter.lora.alpha as written
  int64_t rank = 0;
  int64_t linears = 0;  // adapted linears (two tensors each)
  bool permuted_qk = false;
  // Q8_0 only: tensors written as F16 because their rows (r for lora_b) are not a multiple of 32,
  // as convert_lora_to_gguf.py falls back.
  int64_t f16_fallbacks = 0;
};

// Builds the GGUF of `adapters` (trained for a model with config `model`). `source` names the
// adapter in errors; a DoRA adapter is an Error that points to `bidora merge`.
GgufWriter lora_gguf(const AdapterSet& adapters, const ModelConfig& model, const GgufExportOptions& opts,
                     const std::string& source, GgufExportSummary* summary = nullptr);

// The refusal for DoRA adapters (also used before loading anything).
[[noreturn]] void refuse_dora_gguf(const std::string& source);

}  // namespace bidora
