#include "generate/generation_config.h"

#include <filesystem>

#include "core/error.h"
#include "core/files.h"
#include "io/json_util.h"

namespace bidora {

namespace ju = json_util;

GenerationDefaults parse_generation_config(const std::string& json_text, const std::string& source) {
  const nlohmann::json j = ju::parse(json_text, source);
  if (!j.is_object()) fail("{}: expected a JSON object", source);
  GenerationDefaults g;
  g.present = true;
  g.do_sample = ju::opt_bool(j, "do_sample", source);
  g.temperature = ju::opt_number(j, "temperature", source);
  g.top_p = ju::opt_number(j, "top_p", source);
  g.top_k = ju::opt_int(j, "top_k", source);
  g.repetition_penalty = ju::opt_number(j, "repetition_penalty", source);
  if (auto it = j.find("eos_token_id"); it != j.end() && !it->is_null()) {
    const auto bad = [&] {
      fail("{}: field \"eos_token_id\" must be an integer or a list of integers, got {}", source, it->dump());
    };
    if (it->is_number_integer()) {
      g.eos_token_ids.push_back(it->get<int64_t>());
    } else if (it->is_array()) {
      for (const auto& v : *it) {
        if (!v.is_number_integer()) bad();
        g.eos_token_ids.push_back(v.get<int64_t>());
      }
    } else {
      bad();
    }
  }
  return g;
}

GenerationDefaults read_generation_config(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "generation_config.json").string();
  if (!std::filesystem::exists(path)) return {};
  return parse_generation_config(read_file(path), path);
}

SamplingParams default_sampling(const GenerationDefaults& g) {
  SamplingParams p;  // bidora's defaults
  if (g.temperature) p.temperature = *g.temperature;
  if (g.top_k) p.top_k = *g.top_k;
  if (g.top_p) p.top_p = *g.top_p;
  if (g.repetition_penalty) p.repetition_penalty = *g.repetition_penalty;
  if (g.do_sample && !*g.do_sample) p.temperature = 0.0;
  return p;
}

}  // namespace bidora
