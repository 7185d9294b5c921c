#pragma once
// generation_config.json (transformers' GenerationConfig file next to config.json): the model
// author's stop tokens and default sampling values, and how `bidora generate` resolves its
// sampling settings from them.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "generate/sampler.h"

namespace bidora {

struct GenerationDefaults {
  bool present = false;  // the file exists
  std::optional<bool> do_sample;
  std::optional<double> temperature, top_p, repetition_penalty;
  std::optional<int64_t> top_k;
  std::vector<int64_t> eos_token_ids;  // eos_token_id: an int or a list
};

// Reads <model_dir>/generation_config.json; a missing file gives present = false. A value of the
// wrong type is an Error naming the file and the key.
GenerationDefaults read_generation_config(const std::string& model_dir);
GenerationDefaults parse_generation_config(const std::string& json_text, const std::string& source);

// The sampling settings before command-line flags: generation_config.json's values where it has
// them (do_sample false means greedy, temperature 0), else bidora's defaults (temperature 0.7,
// top-k 50, top-p 0.9, repetition penalty 1.0).
SamplingParams default_sampling(const GenerationDefaults& g);

}  // namespace bidora
