#pragma once
// PEFT-format adapter directories (shared/reference/formats.md §2.1-2.2):
// adapter_config.json + adapter_model.safetensors, loadable by PEFT's PeftModel.from_pretrained.
#include <optional>
#include <string>
#include <vector>

#include "adapters/adapter_config.h"
#include "adapters/adapter_set.h"
#include "model/weights.h"

namespace bidora {

// adapter_config.json text: only the keys every PEFT version accepts, sorted, 2-space indent,
// ASCII-escaped, no trailing newline (as PEFT's json.dumps(indent=2, sort_keys=True)).
std::string adapter_config_json(const AdapterConfig& cfg, const std::string& base_model_name_or_path);
// Parses adapter_config.json as PEFT would apply it to a decoder of `num_layers` layers (0 = not
// known: target_modules is resolved against layer 0's names only). target_modules may be a list
// (names or dotted suffixes such as "self_attn.q_proj"), "all-linear", or a regular expression
// matched against whole module names ("model.layers.0.self_attn.q_proj"). Keys of newer PEFT
// versions that change nothing are ignored; settings bidora cannot honour (rank/alpha patterns,
// layers_to_transform, modules_to_save, biases, fan_in_fan_out, targets that differ between
// layers, PiSSA/OLoRA/LoftQ-initialised adapters, non-LORA peft_type) are errors naming the file
// and key.
AdapterConfig parse_adapter_config(const std::string& text, const std::string& source,
                                   int64_t num_layers = 0);
// base_model_name_or_path of adapter_config.json text; nullopt when absent, null or empty.
std::optional<std::string> peft_base_model(const std::string& text, const std::string& source);

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
// keys with or without the ".default" adapter name (and every spelling of the DoRA magnitude);
// every targeted linear must be present with the shapes the model implies, and no unknown tensor
// is accepted. A shape or layer-count mismatch says which model dimension differs. The base
// model named in the config is not checked here (adapter_loading.h does that).
AdapterSet read_peft_adapter(const std::string& dir, const std::vector<LayerWeights>& layers);

}  // namespace bidora
