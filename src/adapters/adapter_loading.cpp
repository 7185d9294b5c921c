#include "adapters/adapter_loading.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <vector>

#include "adapters/peft_io.h"
#include "core/error.h"
#include "core/files.h"

namespace bidora {

namespace fs = std::filesystem;

namespace {

// Path components of `s` with empty ones and "." dropped ("a//b/./c/" -> a, b, c).
std::vector<std::string> components(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t slash = s.find('/', start);
    if (slash == std::string::npos) slash = s.size();
    std::string part = s.substr(start, slash - start);
    if (!part.empty() && part != ".") out.push_back(std::move(part));
    start = slash + 1;
  }
  return out;
}

// The Hugging Face id a name stands for, when it shows one: "Org/Name" as given (not an existing
// path), or a directory inside the hub cache, ".../models--Org--Name/snapshots/<sha>" -> "Org/Name".
std::optional<std::string> hf_id(const std::string& s) {
  const std::vector<std::string> parts = components(s);
  for (const std::string& p : parts)
    if (p.rfind("models--", 0) == 0) {
      std::string id = p.substr(8);
      const size_t sep = id.find("--");
      if (sep == std::string::npos) return id;  // an id without organisation: "models--gpt2"
      return id.substr(0, sep) + "/" + id.substr(sep + 2);
    }
  std::error_code ec;
  if (parts.size() == 2 && !s.empty() && s.front() != '/' && s.front() != '.' && !fs::exists(s, ec)) return s;
  return std::nullopt;
}

// The model's own name: the last component of its id or path, lower-cased.
std::string last_component(const std::string& s) {
  const std::optional<std::string> id = hf_id(s);
  const std::vector<std::string> parts = components(id ? *id : s);
  std::string last = parts.empty() ? s : parts.back();
  std::transform(last.begin(), last.end(), last.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return last;
}

std::optional<fs::path> real_dir(const std::string& s) {
  std::error_code ec;
  fs::path p = fs::canonical(s, ec);
  if (ec || !fs::is_directory(p, ec)) return std::nullopt;
  return p;
}

}  // namespace

bool same_base_model(const std::string& adapter_base, const std::string& model_name_or_path) {
  if (adapter_base == model_name_or_path) return true;
  const auto id_a = hf_id(adapter_base), id_b = hf_id(model_name_or_path);
  if (id_a && id_b && *id_a == *id_b) return true;
  const auto dir_a = real_dir(adapter_base), dir_b = real_dir(model_name_or_path);
  if (dir_a && dir_b && *dir_a == *dir_b) return true;
  // Adapters are often trained from a local copy and used with the hub id, or the other way
  // round: ".../Qwen2.5-0.5B" and "Qwen/Qwen2.5-0.5B" are the same model.
  const std::string last_a = last_component(adapter_base);
  return !last_a.empty() && last_a == last_component(model_name_or_path);
}

LoadedAdapter load_adapter_for_model(const std::string& dir, const ModelWeights& w,
                                     const std::string& model_name_or_path, bool allow_base_mismatch) {
  std::error_code ec;
  BIDORA_CHECK(fs::is_directory(dir, ec), "{}: no such adapter directory", dir);
  const fs::path config_path = fs::path(dir) / "adapter_config.json";
  if (!fs::exists(config_path, ec)) {
    // A training output directory holds its adapters one level down.
    for (const char* sub : {"final_model", "best_model"})
      BIDORA_CHECK(!fs::exists(fs::path(dir) / sub / "adapter_config.json", ec),
                   "{}: missing (this looks like a training output directory: use {})", config_path.string(),
                   (fs::path(dir) / sub).string());
    fail("{}: missing (not a PEFT adapter directory?)", config_path.string());
  }

  // The base model first: for an adapter of another model it is the clearest message (its
  // shapes would not fit either).
  const std::optional<std::string> base =
      peft_base_model(read_file(config_path.string()), config_path.string());
  if (!base) {
    fmt::print(stderr,
               "warning: {} names no base_model_name_or_path: cannot check that the adapter was trained for "
               "{}\n",
               config_path.string(), model_name_or_path);
  } else if (!same_base_model(*base, model_name_or_path) && !same_base_model(*base, w.dir())) {
    BIDORA_CHECK(
        allow_base_mismatch,
        "{}: base_model_name_or_path is \"{}\" but the model is \"{}\": the adapter was trained for "
        "another model (pass --allow-base-mismatch to use it anyway, e.g. with a renamed copy of the "
        "same model)",
        config_path.string(), *base, model_name_or_path);
    fmt::print(stderr, "warning: {}: the adapter was trained on \"{}\", not \"{}\" (--allow-base-mismatch)\n",
               config_path.string(), *base, model_name_or_path);
  }

  LoadedAdapter out;
  out.dir = dir;
  out.set = std::make_unique<AdapterSet>(read_peft_adapter(dir, w.layers()));
  out.runtime = std::make_unique<AdapterRuntime>(*out.set);
  out.runtime->set_mode(AdapterMode{.training = false, .dropout = {}});
  return out;
}

}  // namespace bidora
