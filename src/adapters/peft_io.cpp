#include "adapters/peft_io.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "core/files.h"
#include "io/json_util.h"
#include "io/safetensors.h"

namespace bidora {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kConfigFile = "adapter_config.json";
constexpr const char* kModelFile = "adapter_model.safetensors";
constexpr const char* kKeyPrefix = "base_model.model.model.layers.";

std::vector<std::string> sorted_target_names(const AdapterConfig& cfg) {
  std::vector<std::string> names;
  for (LinearKind k : cfg.targets) names.emplace_back(linear_name(k));
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

// A non-null, non-empty value for a key whose feature bidora does not implement.
bool is_set(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && !it->is_null() && !(it->is_object() && it->empty()) &&
         !(it->is_array() && it->empty());
}

struct ParsedKey {
  int64_t layer;
  LinearKind kind;
  AdapterTensor which;
};

// "base_model.model.model.layers.{i}.{path}.{suffix}" with suffix one of the PEFT spellings,
// with or without the ".default" adapter name.
std::optional<ParsedKey> parse_key(const std::string& key) {
  if (key.rfind(kKeyPrefix, 0) != 0) return std::nullopt;
  size_t pos = std::char_traits<char>::length(kKeyPrefix);
  size_t digits_end = pos;
  while (digits_end < key.size() && std::isdigit(static_cast<unsigned char>(key[digits_end]))) ++digits_end;
  if (digits_end == pos || digits_end - pos > 9 || digits_end >= key.size() || key[digits_end] != '.')
    return std::nullopt;
  const int64_t layer = std::stoll(key.substr(pos, digits_end - pos));
  const std::string rest = key.substr(digits_end + 1);
  static const std::pair<const char*, AdapterTensor> suffixes[] = {
      {"lora_A.weight", AdapterTensor::A},
      {"lora_A.default.weight", AdapterTensor::A},
      {"lora_B.weight", AdapterTensor::B},
      {"lora_B.default.weight", AdapterTensor::B},
      {"lora_magnitude_vector", AdapterTensor::Magnitude},
      {"lora_magnitude_vector.weight", AdapterTensor::Magnitude},
      {"lora_magnitude_vector.default", AdapterTensor::Magnitude},
      {"lora_magnitude_vector.default.weight", AdapterTensor::Magnitude}};
  for (int k = 0; k < kNumLinearKinds; ++k) {
    const std::string path = std::string(linear_path(static_cast<LinearKind>(k))) + ".";
    if (rest.rfind(path, 0) != 0) continue;
    const std::string suffix = rest.substr(path.size());
    for (const auto& [s, which] : suffixes)
      if (suffix == s) return ParsedKey{layer, static_cast<LinearKind>(k), which};
  }
  return std::nullopt;
}

std::string shape_str(const std::vector<int64_t>& s) {
  return fmt::format("[{}]", fmt::join(s, ", "));
}

}  // namespace

std::string adapter_config_json(const AdapterConfig& cfg, const std::string& base_model_name_or_path) {
  json j = json::object();  // std::map keys: serialised in sorted order, as sort_keys=True
  j["alpha_pattern"] = json::object();
  j["base_model_name_or_path"] = base_model_name_or_path;
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  j["inference_mode"] = true;
  if (cfg.init == AdapterInit::Gaussian)
    j["init_lora_weights"] = "gaussian";
  else
    j["init_lora_weights"] = true;
  j["layers_pattern"] = nullptr;
  j["layers_to_transform"] = nullptr;
  // PEFT types lora_alpha as int; keep a fractional alpha exact rather than truncating it.
  if (cfg.alpha == std::floor(cfg.alpha) && std::abs(cfg.alpha) < 1e15)
    j["lora_alpha"] = static_cast<int64_t>(cfg.alpha);
  else
    j["lora_alpha"] = cfg.alpha;
  j["lora_dropout"] = cfg.dropout;
  j["modules_to_save"] = nullptr;
  j["peft_type"] = "LORA";
  j["r"] = cfg.r;
  j["rank_pattern"] = json::object();
  j["revision"] = nullptr;
  j["target_modules"] = sorted_target_names(cfg);
  j["task_type"] = "CAUSAL_LM";
  j["use_dora"] = cfg.method == LoraVariant::DoRA;
  j["use_rslora"] = cfg.use_rslora;
  return j.dump(2, ' ', /*ensure_ascii=*/true);
}

AdapterConfig parse_adapter_config(const std::string& text, const std::string& source) {
  const json j = json_util::parse(text, source);
  BIDORA_CHECK(j.is_object(), "{}: expected a JSON object", source);
  if (auto t = json_util::opt_string(j, "peft_type", source))
    BIDORA_CHECK(*t == "LORA", "{}: peft_type is \"{}\", expected \"LORA\"", source, *t);
  AdapterConfig cfg;
  // Missing keys take PEFT's defaults, as every PEFT version does when loading.
  cfg.r = json_util::opt_int(j, "r", source).value_or(8);
  cfg.alpha = json_util::opt_number(j, "lora_alpha", source).value_or(8.0);
  cfg.dropout = json_util::opt_number(j, "lora_dropout", source).value_or(0.0);
  cfg.use_rslora = json_util::opt_bool(j, "use_rslora", source).value_or(false);
  cfg.method =
      json_util::opt_bool(j, "use_dora", source).value_or(false) ? LoraVariant::DoRA : LoraVariant::LoRA;
  if (auto it = j.find("init_lora_weights"); it != j.end() && it->is_string() && *it == "gaussian")
    cfg.init = AdapterInit::Gaussian;
  // Absent target_modules: PEFT's default for llama/mistral/qwen2/qwen3 (the AdapterConfig default).
  if (auto it = j.find("target_modules"); it != j.end() && !it->is_null()) {
    const json& tm = *it;
    BIDORA_CHECK(tm.is_array(),
                 "{}: target_modules must be a list of module names (regex strings are not supported)",
                 source);
    cfg.targets.clear();
    for (const json& name : tm) {
      BIDORA_CHECK(name.is_string(), "{}: target_modules must hold strings, found {}", source, name.dump());
      const auto kind = linear_kind_from_name(name.get<std::string>());
      BIDORA_CHECK(kind.has_value(),
                   "{}: target_modules entry \"{}\" is not one of q_proj, k_proj, v_proj, o_proj, "
                   "gate_proj, up_proj, down_proj",
                   source, name.get<std::string>());
      if (!cfg.targets_kind(*kind)) cfg.targets.push_back(*kind);
    }
  }
  for (const char* key : {"rank_pattern", "alpha_pattern", "layers_to_transform", "modules_to_save"})
    BIDORA_CHECK(!is_set(j, key),
                 "{}: {} is set ({}); bidora supports only the same r and alpha on every layer and no extra "
                 "saved modules",
                 source, key, j.at(key).dump());
  if (auto b = json_util::opt_string(j, "bias", source))
    BIDORA_CHECK(*b == "none", "{}: bias is \"{}\", only \"none\" is supported", source, *b);
  BIDORA_CHECK(!json_util::opt_bool(j, "fan_in_fan_out", source).value_or(false),
               "{}: fan_in_fan_out is true (GPT-2 Conv1D layout), not supported", source);
  cfg.validate(source);
  return cfg;
}

std::string peft_tensor_key(int64_t layer, LinearKind kind, AdapterTensor which) {
  const char* suffix = which == AdapterTensor::A   ? "lora_A.weight"
                       : which == AdapterTensor::B ? "lora_B.weight"
                                                   : "lora_magnitude_vector";  // PEFT strips ".weight" here
  return fmt::format("{}{}.{}.{}", kKeyPrefix, layer, linear_path(kind), suffix);
}

void write_peft_adapter_files(const std::string& dir, const AdapterSet& adapters,
                              const std::string& base_model_name_or_path) {
  SafetensorsWriter st;
  for (const LoraLayer* l : adapters.all()) {
    st.add_f32(peft_tensor_key(l->layer(), l->kind(), AdapterTensor::A), {l->rank(), l->in_features()}, l->A);
    st.add_f32(peft_tensor_key(l->layer(), l->kind(), AdapterTensor::B), {l->out_features(), l->rank()},
               l->B);
    if (l->dora())
      st.add_f32(peft_tensor_key(l->layer(), l->kind(), AdapterTensor::Magnitude), {l->out_features()}, l->m);
  }
  st.set_metadata({{"format", "pt"}});
  st.write((fs::path(dir) / kModelFile).string());
  write_file_atomic((fs::path(dir) / kConfigFile).string(),
                    adapter_config_json(adapters.config(), base_model_name_or_path));
}

void write_peft_adapter(const std::string& dir, const AdapterSet& adapters,
                        const std::string& base_model_name_or_path) {
  replace_directory(
      dir, [&](const std::string& tmp) { write_peft_adapter_files(tmp, adapters, base_model_name_or_path); });
}

AdapterSet read_peft_adapter(const std::string& dir, const std::vector<LayerWeights>& layers) {
  const std::string config_path = (fs::path(dir) / kConfigFile).string();
  const std::string model_path = (fs::path(dir) / kModelFile).string();
  BIDORA_CHECK(fs::exists(config_path), "{}: missing (not a PEFT adapter directory?)", config_path);
  BIDORA_CHECK(fs::exists(model_path), "{}: missing (legacy adapter_model.bin is not supported)", model_path);
  AdapterSet set(parse_adapter_config(read_file(config_path), config_path), layers, /*init_seed=*/0);
  const SafetensorsFile file(model_path);

  std::map<std::string, const TensorView*> found;  // canonical key -> tensor, to catch duplicates
  for (const TensorView& t : file.tensors()) {
    const auto key = parse_key(t.name);
    BIDORA_CHECK(key.has_value(),
                 "{}: unexpected tensor \"{}\" (expected LoRA A/B or DoRA magnitude tensors of "
                 "base_model.model.model.layers.N.<module>)",
                 model_path, t.name);
    LoraLayer* layer = set.find(key->layer, key->kind);
    BIDORA_CHECK(key->layer < set.num_layers(),
                 "{}: tensor \"{}\" is for layer {} but the model has {} layers", model_path, t.name,
                 key->layer, set.num_layers());
    BIDORA_CHECK(layer != nullptr, "{}: tensor \"{}\" adapts {}, which is not in target_modules of {}",
                 model_path, t.name, linear_name(key->kind), config_path);
    BIDORA_CHECK(key->which != AdapterTensor::Magnitude || layer->dora(),
                 "{}: tensor \"{}\" is a DoRA magnitude but {} has use_dora false", model_path, t.name,
                 config_path);
    const std::string canonical = peft_tensor_key(key->layer, key->kind, key->which);
    BIDORA_CHECK(found.emplace(canonical, &t).second, "{}: tensor \"{}\" duplicates \"{}\"", model_path,
                 t.name, found[canonical]->name);
  }
  for (LoraLayer* l : set.all()) {
    struct Want {
      AdapterTensor which;
      std::vector<int64_t> shape;
      std::vector<float>* dst;
    };
    std::vector<Want> wants = {{AdapterTensor::A, {l->rank(), l->in_features()}, &l->A},
                               {AdapterTensor::B, {l->out_features(), l->rank()}, &l->B}};
    if (l->dora()) wants.push_back({AdapterTensor::Magnitude, {l->out_features()}, &l->m});
    for (const Want& w : wants) {
      const std::string key = peft_tensor_key(l->layer(), l->kind(), w.which);
      auto it = found.find(key);
      BIDORA_CHECK(it != found.end(), "{}: missing tensor \"{}\" (or its \".default\" form)", model_path,
                   key);
      const TensorView& t = *it->second;
      BIDORA_CHECK(t.dtype == DType::F32 || t.dtype == DType::BF16 || t.dtype == DType::F16,
                   "{}: tensor \"{}\" has dtype {}, expected F32, BF16 or F16", model_path, t.name,
                   dtype_name(t.dtype));
      BIDORA_CHECK(t.shape == w.shape,
                   "{}: tensor \"{}\" has shape {}, expected {} (r = {}, linear [{}, {}])", model_path,
                   t.name, t.shape_str(), shape_str(w.shape), l->rank(), l->out_features(), l->in_features());
      w.dst->resize(static_cast<size_t>(t.numel()));
      tensor_to_f32(t, w.dst->data(), model_path);
    }
    l->zero_grad();
  }
  return set;
}

}  // namespace bidora
