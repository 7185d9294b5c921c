#pragma once
// PEFT-format adapter directories (shared/reference/formats.md §2.1-2.2):
// adapter_config.json + adapter_model.safetensors, loadable by PEFT's PeftModel.from_pretrained.
#include <string>
#include <vector>

#include "adapters/adapter_config.h"
#include "adapters/adapter_set.h"
#include "model/weights.h"

namespace bidora {

// adapter_config.json text: only the keys every PEFT version accepts, sorted, 2-space indent,
// ASCII-escaped, no trailing newline (as PEFT's json.dumps(indent=2, sort_keys=True)).
std::string adapter_config_json(const AdapterConfig& cfg, const std::string& base_model_name_or_path);
// Parses adapter_config.json; unsupported settings (regex target_modules, rank/alpha patterns,
// biases, fan_in_fan_out, non-LORA peft_type) are errors naming the file and key.
AdapterConfig parse_adapter_config(const std::string& text, const std::string& source);

// safetensors key of a parameter, e.g. "base_model.model.model.layers.3.mlp.up_proj.lora_A.weight".
enum class AdapterTensor { A, B, Magnitude };
std::string peft_tensor_key(int64_t layer, LinearKind kind, AdapterTensor which);

// Writes adapter_config.json and adapter_model.safetensors into an existing directory.
void write_peft_adapter_files(const std::string& dir, const AdapterSet& adapters,
                              const std::string& base_model_name_or_path);

// Writes the directory atomically (core/files.h replace_directory): everything goes into "<dir>.tmp.<pid>"
// first, which then replaces `dir`, so a crash never leaves a half-written adapter. Tensors are F32.
void write_peft_adapter(const std::string& dir, const AdapterSet& adapters,
                        const std::string& base_model_name_or_path);

// Reads an adapter directory for a model with these layers. Accepts F32/BF16/F16 tensors and
// keys with or without the ".default" adapter name; every targeted linear must be present
// with the shapes the model implies, and no unknown tensor is accepted.
AdapterSet read_peft_adapter(const std::string& dir, const std::vector<LayerWeights>& layers);

}  // namespace bidora
