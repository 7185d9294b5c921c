#pragma once
// Loading a trained adapter directory (ours or any PEFT LoRA/DoRA adapter) for a loaded base model,
// ready to run: the entry point `eval`, `generate`, `merge` and `train --adapter` share, so every
// command checks the adapter against the model the same way.
#include <memory>
#include <string>

#include "adapters/adapter_runtime.h"
#include "adapters/adapter_set.h"
#include "model/weights.h"

namespace bidora {

struct LoadedAdapter {
  std::string dir;
  std::unique_ptr<AdapterSet> set;
  // AdapterRuntime over *set with AdapterMode training=false (no dropout): plug it into the decoder
  // as its LinearAdapters. Declared after `set` so it is destroyed first.
  std::unique_ptr<AdapterRuntime> runtime;
};

// Reads adapter_config.json + adapter_model.safetensors from `dir` and checks them against `w`:
// every tensor's shape against the model's linears, the number of layers, the module names, and
// the config's base_model_name_or_path against `model_name_or_path` (what the user passed as
// --model). The base is considered the same when the strings are equal, name the same HF id
// (".../models--Org--Name/snapshots/<sha>" is "Org/Name"), resolve to the same real directory, or
// share their last path component case-insensitively (".../Qwen2.5-0.5B" vs "Qwen/Qwen2.5-0.5B").
// A different base is an Error naming both values and --allow-base-mismatch unless
// `allow_base_mismatch`; an empty/null base is accepted with a warning on stderr.
// Every refusal is an Error naming the file and the key or tensor, with expected vs found.
LoadedAdapter load_adapter_for_model(const std::string& dir, const ModelWeights& w,
                                     const std::string& model_name_or_path, bool allow_base_mismatch);

// The base-model comparison above, exposed for tests and for `train --adapter`.
bool same_base_model(const std::string& adapter_base, const std::string& model_name_or_path);

}  // namespace bidora
