#include "adapters/peft_io.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>

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

// PEFT's name of a linear inside the transformers model, which target_modules is matched against.
std::string module_name(int64_t layer, LinearKind kind) {
  return fmt::format("model.layers.{}.{}", layer, linear_path(kind));
}

constexpr const char* kLinearNames = "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj";

// target_modules as PEFT applies it to a decoder of `num_layers` layers: a list of names, each
// matching a module whose full name equals it or ends with "." + it; the string "all-linear"
// (every linear but the output layer); any other string is a regular expression that must match
// a full module name (re.fullmatch). bidora adapts the same kinds in every layer, so a selection
// that differs between layers is refused.
std::vector<LinearKind> resolve_target_modules(const json& tm, const std::string& source,
                                               int64_t num_layers) {
  num_layers = std::max<int64_t>(num_layers, 1);
  // selected[kind] = the layers where that kind is targeted.
  std::vector<std::vector<int64_t>> selected(kNumLinearKinds);
  auto select_where = [&](const std::function<bool(const std::string&)>& matches) {
    bool any = false;
    for (int64_t l = 0; l < num_layers; ++l)
      for (int k = 0; k < kNumLinearKinds; ++k)
        if (matches(module_name(l, static_cast<LinearKind>(k)))) {
          if (selected[k].empty() || selected[k].back() != l) selected[k].push_back(l);
          any = true;
        }
    return any;
  };
  if (tm.is_string() && tm.get<std::string>() == "all-linear") {
    select_where([](const std::string&) { return true; });
  } else if (tm.is_string()) {
    const std::string pattern = tm.get<std::string>();
    std::regex re;
    try {
      re = std::regex(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      fail("{}: target_modules \"{}\" is not a regular expression bidora can read: {}", source, pattern,
           e.what());
    }
    BIDORA_CHECK(select_where([&](const std::string& name) { return std::regex_match(name, re); }),
                 "{}: target_modules \"{}\" is a regular expression (PEFT matches it against whole module "
                 "names such as \"{}\") and matches no linear layer of this model",
                 source, pattern, module_name(0, LinearKind::Q));
  } else {
    BIDORA_CHECK(tm.is_array(), "{}: target_modules must be a list of module names or a string, found {}",
                 source, tm.dump());
    for (const json& entry : tm) {
      BIDORA_CHECK(entry.is_string(), "{}: target_modules must hold strings, found {}", source, entry.dump());
      const std::string t = entry.get<std::string>();
      const std::string dotted = "." + t;
      const bool found = !t.empty() && select_where([&](const std::string& name) {
        return name == t || (name.size() > dotted.size() &&
                             name.compare(name.size() - dotted.size(), dotted.size(), dotted) == 0);
      });
      BIDORA_CHECK(found,
                   "{}: target_modules entry \"{}\" is not one of {} (bidora adapts the linear layers of "
                   "the decoder blocks only)",
                   source, t, kLinearNames);
    }
  }
  std::vector<LinearKind> targets;
  for (int k = 0; k < kNumLinearKinds; ++k) {
    if (selected[k].empty()) continue;
    BIDORA_CHECK(static_cast<int64_t>(selected[k].size()) == num_layers,
                 "{}: target_modules {} adapts {} in {} of the model's {} layers only (layers {}); bidora "
                 "adapts the same modules in every layer",
                 source, tm.dump(), linear_name(static_cast<LinearKind>(k)), selected[k].size(), num_layers,
                 fmt::join(selected[k], ", "));
    targets.push_back(static_cast<LinearKind>(k));
  }
  return targets;
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

AdapterConfig parse_adapter_config(const std::string& text, const std::string& source, int64_t num_layers) {
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
  if (auto it = j.find("init_lora_weights"); it != j.end() && it->is_string()) {
    const std::string init = it->get<std::string>();
    // PiSSA, OLoRA, CorDA and LoftQ subtract the initial adapter from the base weights: the saved
    // adapter only works on that modified base, which bidora does not have.
    for (const char* modified : {"pissa", "olora", "corda", "loftq"})
      BIDORA_CHECK(init.rfind(modified, 0) != 0,
                   "{}: init_lora_weights is \"{}\": such an adapter applies to base weights that PEFT "
                   "modified at initialisation, not to the original model (save it with PEFT's "
                   "path_initial_model_for_weight_conversion to get a plain LoRA adapter)",
                   source, init);
    if (init == "gaussian") cfg.init = AdapterInit::Gaussian;
  }
  // Absent target_modules: PEFT's default for llama/mistral/qwen2/qwen3 (the AdapterConfig default).
  if (auto it = j.find("target_modules"); it != j.end() && !it->is_null())
    cfg.targets = resolve_target_modules(*it, source, num_layers);
  for (const char* key :
       {"rank_pattern", "alpha_pattern", "layers_to_transform", "modules_to_save", "exclude_modules",
        "layer_replication", "trainable_token_indices", "target_parameters"})
    BIDORA_CHECK(!is_set(j, key),
                 "{}: {} is set ({}); bidora supports only the same r and alpha on the same modules of "
                 "every layer and no extra saved modules or tokens",
                 source, key, j.at(key).dump());
  if (auto b = json_util::opt_string(j, "bias", source))
    BIDORA_CHECK(*b == "none", "{}: bias is \"{}\", only \"none\" is supported", source, *b);
  for (const char* key : {"fan_in_fan_out", "lora_bias", "use_qalora"})
    BIDORA_CHECK(!json_util::opt_bool(j, key, source).value_or(false),
                 "{}: {} is true, which bidora does not support ({})", source, key,
                 std::string_view(key) == "fan_in_fan_out" ? "GPT-2 Conv1D layout"
                 : std::string_view(key) == "lora_bias"    ? "a trained bias on lora_B"
                                                           : "QA-LoRA pooling");
  cfg.validate(source);
  return cfg;
}

std::optional<std::string> peft_base_model(const std::string& text, const std::string& source) {
  const json j = json_util::parse(text, source);
  BIDORA_CHECK(j.is_object(), "{}: expected a JSON object", source);
  auto name = json_util::opt_string(j, "base_model_name_or_path", source);
  if (name && name->empty()) return std::nullopt;
  return name;
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

namespace {

// What a linear's input and output sizes are in terms of the model config, for messages.
const char* input_size_name(LinearKind k) {
  switch (k) {
    case LinearKind::O:
      return "num_attention_heads × head_dim";
    case LinearKind::Down:
      return "intermediate_size";
    default:
      return "hidden_size";
  }
}
const char* output_size_name(LinearKind k) {
  switch (k) {
    case LinearKind::Q:
      return "num_attention_heads × head_dim";
    case LinearKind::K:
    case LinearKind::V:
      return "num_key_value_heads × head_dim";
    case LinearKind::Gate:
    case LinearKind::Up:
      return "intermediate_size";
    default:
      return "hidden_size";
  }
}

// Why a tensor of shape `found` does not fit `l` (expected shape `want`): the rank disagrees with
// adapter_config.json, or a dimension of the model's linear differs (an adapter for another model).
std::string shape_mismatch(const std::string& model_path, const std::string& config_path, const TensorView& t,
                           AdapterTensor which, const std::vector<int64_t>& want, const LoraLayer& l) {
  const std::string head = fmt::format("{}: tensor \"{}\" has shape {}, expected {}", model_path, t.name,
                                       t.shape_str(), shape_str(want));
  const char* name = linear_name(l.kind());
  if (t.shape.size() != want.size())
    return fmt::format("{} (a {}-D tensor where {}-D is expected)", head, t.shape.size(), want.size());
  if (which == AdapterTensor::A) {
    if (t.shape[0] != l.rank())
      return fmt::format("{}: its rank {} is not r = {} of {}", head, t.shape[0], l.rank(), config_path);
    return fmt::format(
        "{}: this model's {} takes {} inputs ({} {}), so the adapter was trained for another model", head,
        name, l.in_features(), input_size_name(l.kind()), l.in_features());
  }
  if (which == AdapterTensor::B && t.shape[1] != l.rank())
    return fmt::format("{}: its rank {} is not r = {} of {}", head, t.shape[1], l.rank(), config_path);
  return fmt::format(
      "{}: this model's {} has {} outputs ({} {}), so the adapter was trained for another model", head, name,
      l.out_features(), output_size_name(l.kind()), l.out_features());
}

}  // namespace

AdapterSet read_peft_adapter(const std::string& dir, const std::vector<LayerWeights>& layers) {
  const std::string config_path = (fs::path(dir) / kConfigFile).string();
  const std::string model_path = (fs::path(dir) / kModelFile).string();
  BIDORA_CHECK(fs::exists(config_path), "{}: missing (not a PEFT adapter directory?)", config_path);
  BIDORA_CHECK(fs::exists(model_path), "{}: missing (legacy adapter_model.bin is not supported)", model_path);
  const int64_t num_layers = static_cast<int64_t>(layers.size());
  AdapterSet set(parse_adapter_config(read_file(config_path), config_path, num_layers), layers,
                 /*init_seed=*/0);
  const SafetensorsFile file(model_path);

  std::map<std::string, const TensorView*> found;  // canonical key -> tensor, to catch duplicates
  int64_t max_layer = -1;
  for (const TensorView& t : file.tensors()) {
    const auto key = parse_key(t.name);
    BIDORA_CHECK(key.has_value(),
                 "{}: unexpected tensor \"{}\" (expected LoRA A/B or DoRA magnitude tensors of "
                 "base_model.model.model.layers.N.<module>)",
                 model_path, t.name);
    BIDORA_CHECK(key->layer < num_layers,
                 "{}: tensor \"{}\" is for layer {} but this model has {} layers (num_hidden_layers): the "
                 "adapter was trained for another model",
                 model_path, t.name, key->layer, num_layers);
    max_layer = std::max(max_layer, key->layer);
    LoraLayer* layer = set.find(key->layer, key->kind);
    BIDORA_CHECK(layer != nullptr, "{}: tensor \"{}\" adapts {}, which is not in target_modules of {}",
                 model_path, t.name, linear_name(key->kind), config_path);
    BIDORA_CHECK(key->which != AdapterTensor::Magnitude || layer->dora(),
                 "{}: tensor \"{}\" is a DoRA magnitude but {} has use_dora false", model_path, t.name,
                 config_path);
    const std::string canonical = peft_tensor_key(key->layer, key->kind, key->which);
    BIDORA_CHECK(found.emplace(canonical, &t).second, "{}: tensor \"{}\" duplicates \"{}\"", model_path,
                 t.name, found[canonical]->name);
  }
  BIDORA_CHECK(max_layer >= 0, "{}: holds no LoRA tensors", model_path);
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
      BIDORA_CHECK(it != found.end() || l->layer() <= max_layer,
                   "{}: the adapter has tensors for layers 0-{} only, but this model has {} layers "
                   "(num_hidden_layers): the adapter was trained for another model (missing \"{}\")",
                   model_path, max_layer, num_layers, key);
      BIDORA_CHECK(it != found.end(), "{}: missing tensor \"{}\" (or its \".default\" form)", model_path,
                   key);
      const TensorView& t = *it->second;
      BIDORA_CHECK(t.dtype == DType::F32 || t.dtype == DType::BF16 || t.dtype == DType::F16,
                   "{}: tensor \"{}\" has dtype {}, expected F32, BF16 or F16", model_path, t.name,
                   dtype_name(t.dtype));
      if (t.shape != w.shape) fail("{}", shape_mismatch(model_path, config_path, t, w.which, w.shape, *l));
      w.dst->resize(static_cast<size_t>(t.numel()));
      tensor_to_f32(t, w.dst->data(), model_path);
    }
    l->zero_grad();
  }
  return set;
}

}  // namespace bidora
