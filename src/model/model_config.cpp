#include "model/model_config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json_util.h"

namespace bidora {

namespace ju = json_util;
using nlohmann::json;

const char* family_name(ModelFamily f) {
  switch (f) {
    case ModelFamily::Llama:
      return "llama";
    case ModelFamily::Mistral:
      return "mistral";
    case ModelFamily::Qwen2:
      return "qwen2";
    case ModelFamily::Qwen3:
      return "qwen3";
  }
  return "?";
}

namespace {

ModelFamily parse_family(const json& j, const std::string& src, std::string* arch) {
  auto model_type = ju::opt_string(j, "model_type", src);
  if (auto it = j.find("architectures");
      it != j.end() && it->is_array() && !it->empty() && (*it)[0].is_string())
    *arch = (*it)[0].get<std::string>();
  std::string mt = model_type.value_or("");
  if (mt.empty()) {  // fall back to the architecture name
    if (arch->rfind("Llama", 0) == 0)
      mt = "llama";
    else if (arch->rfind("Mistral", 0) == 0)
      mt = "mistral";
    else if (arch->rfind("Qwen2", 0) == 0)
      mt = "qwen2";
    else if (arch->rfind("Qwen3", 0) == 0)
      mt = "qwen3";
  }
  if (mt == "llama") return ModelFamily::Llama;
  if (mt == "mistral") return ModelFamily::Mistral;
  if (mt == "qwen2") return ModelFamily::Qwen2;
  if (mt == "qwen3") return ModelFamily::Qwen3;
  fail(
      "{}: model_type \"{}\" (architecture \"{}\") is not supported; supported: llama, mistral, qwen2, qwen3 "
      "(Llama 2/3, TinyLlama, SmolLM2, Mistral, Qwen2/2.5, Qwen3)",
      src, mt, *arch);
}

// rope_scaling (v4), or rope_parameters (v5, may also hold rope_theta). `type` or `rope_type`.
void parse_rope(const json& j, const std::string& src, ModelConfig& c) {
  if (auto theta = ju::opt_number(j, "rope_theta", src)) c.rope_theta = *theta;
  const json* rs = nullptr;
  std::string key;
  for (const char* k : {"rope_scaling", "rope_parameters"}) {
    auto it = j.find(k);
    if (it != j.end() && !it->is_null()) {
      if (!it->is_object()) fail("{}: field \"{}\" must be an object or null", src, k);
      rs = &*it;
      key = k;
      break;
    }
  }
  if (!rs) return;
  const std::string ctx = src + " (" + key + ")";
  if (auto theta = ju::opt_number(*rs, "rope_theta", ctx)) c.rope_theta = *theta;
  auto type = ju::opt_string(*rs, "rope_type", ctx);
  if (!type) type = ju::opt_string(*rs, "type", ctx);
  RopeScaling& r = c.rope_scaling;
  r.type = type.value_or("default");
  if (r.type == "default") return;
  if (r.type != "linear" && r.type != "dynamic" && r.type != "llama3" && r.type != "yarn")
    fail("{}: rope type \"{}\" is not supported; supported: default, linear, dynamic, llama3, yarn", ctx,
         r.type);
  r.factor = ju::opt_number(*rs, "factor", ctx).value_or(1.0);
  if (!(r.factor >= 1.0) && r.type != "yarn")
    fail("{}: field \"factor\" must be >= 1, got {}", ctx, r.factor);
  r.low_freq_factor = ju::opt_number(*rs, "low_freq_factor", ctx).value_or(1.0);
  r.high_freq_factor = ju::opt_number(*rs, "high_freq_factor", ctx).value_or(4.0);
  r.original_max_position_embeddings =
      ju::opt_int(*rs, "original_max_position_embeddings", ctx).value_or(c.max_position_embeddings);
  r.beta_fast = ju::opt_number(*rs, "beta_fast", ctx).value_or(32.0);
  r.beta_slow = ju::opt_number(*rs, "beta_slow", ctx).value_or(1.0);
  r.attention_factor = ju::opt_number(*rs, "attention_factor", ctx);
  if (r.type == "llama3") {
    ju::require(*rs, "factor", ctx);
    ju::require(*rs, "original_max_position_embeddings", ctx);
    if (!(r.high_freq_factor > r.low_freq_factor))
      fail("{}: llama3 rope needs high_freq_factor > low_freq_factor, got {} and {}", ctx, r.high_freq_factor,
           r.low_freq_factor);
  }
}

std::vector<int64_t> parse_token_ids(const json& j, const char* key, const std::string& src) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  if (it->is_number_integer()) return {it->get<int64_t>()};
  if (it->is_array()) {
    std::vector<int64_t> ids;
    for (const auto& v : *it) {
      if (!v.is_number_integer()) fail("{}: field \"{}\" must be an integer or a list of integers", src, key);
      ids.push_back(v.get<int64_t>());
    }
    return ids;
  }
  fail("{}: field \"{}\" must be an integer or a list of integers, got {}", src, key, it->dump());
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& j, const std::string& src) {
  if (!j.is_object()) fail("{}: expected a JSON object", src);
  ModelConfig c;
  c.family = parse_family(j, src, &c.architecture);
  c.hidden_size = ju::get_int(j, "hidden_size", src);
  c.intermediate_size = ju::get_int(j, "intermediate_size", src);
  c.num_layers = ju::get_int(j, "num_hidden_layers", src);
  c.num_heads = ju::get_int(j, "num_attention_heads", src);
  c.vocab_size = ju::get_int(j, "vocab_size", src);
  // Defaults of the transformers config classes when the key is absent (formats.md §5.1).
  int64_t kv_default = c.num_heads;
  if (c.family == ModelFamily::Qwen2 || c.family == ModelFamily::Qwen3) kv_default = 32;
  if (c.family == ModelFamily::Mistral) kv_default = 8;
  c.num_kv_heads = ju::opt_int(j, "num_key_value_heads", src).value_or(kv_default);
  c.head_dim = ju::opt_int(j, "head_dim", src).value_or(c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
  c.max_position_embeddings = ju::opt_int(j, "max_position_embeddings", src).value_or(2048);
  c.rms_norm_eps = ju::opt_number(j, "rms_norm_eps", src).value_or(1e-6);
  parse_rope(j, src, c);
  c.tie_word_embeddings = ju::opt_bool(j, "tie_word_embeddings", src).value_or(false);

  switch (c.family) {
    case ModelFamily::Qwen2:  // hard-coded in Qwen2Attention: q/k/v biased, o not
      c.qkv_bias = true;
      c.o_bias = false;
      break;
    case ModelFamily::Llama:
    case ModelFamily::Qwen3:
      c.qkv_bias = c.o_bias = ju::opt_bool(j, "attention_bias", src).value_or(false);
      break;
    case ModelFamily::Mistral:
      c.qkv_bias = c.o_bias = false;
      break;
  }
  if (c.family == ModelFamily::Llama) c.mlp_bias = ju::opt_bool(j, "mlp_bias", src).value_or(false);
  c.qk_norm = c.family == ModelFamily::Qwen3;

  if (auto act = ju::opt_string(j, "hidden_act", src); act && *act != "silu")
    fail("{}: hidden_act \"{}\" is not supported (expected \"silu\")", src, *act);

  // Sliding window: Mistral applies it to every layer; Qwen only with use_sliding_window, from
  // max_window_layers on.
  auto window = ju::opt_int(j, "sliding_window", src);
  if (c.family == ModelFamily::Mistral) {
    c.sliding_window = window;
    c.max_window_layers = 0;
  } else if (c.family == ModelFamily::Qwen2 || c.family == ModelFamily::Qwen3) {
    if (ju::opt_bool(j, "use_sliding_window", src).value_or(false) && window) {
      c.sliding_window = window;
      c.max_window_layers = ju::opt_int(j, "max_window_layers", src).value_or(c.num_layers);
    }
  }

  if (auto d = ju::opt_string(j, "torch_dtype", src))
    c.torch_dtype = *d;
  else if (auto d2 = ju::opt_string(j, "dtype", src))
    c.torch_dtype = *d2;
  c.eos_token_ids = parse_token_ids(j, "eos_token_id", src);
  if (auto b = parse_token_ids(j, "bos_token_id", src); !b.empty()) c.bos_token_id = b[0];
  if (auto p = parse_token_ids(j, "pad_token_id", src); !p.empty()) c.pad_token_id = p[0];
  c.validate(src);
  return c;
}

ModelConfig ModelConfig::from_file(const std::string& path) {
  return from_json(ju::parse_file(path), path);
}

void ModelConfig::validate(const std::string& src) const {
  auto positive = [&](const char* field, int64_t v, int64_t max) {
    if (v < 1 || v > max) fail("{}: field \"{}\" = {} is out of range [1, {}]", src, field, v, max);
  };
  positive("hidden_size", hidden_size, 1 << 17);
  positive("intermediate_size", intermediate_size, 1 << 19);
  positive("num_hidden_layers", num_layers, 1024);
  positive("num_attention_heads", num_heads, 1024);
  positive("num_key_value_heads", num_kv_heads, 1024);
  positive("head_dim", head_dim, 1024);
  positive("vocab_size", vocab_size, 1 << 24);
  if (num_heads % num_kv_heads != 0)
    fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", src, num_heads,
         num_kv_heads);
  if (head_dim % 2 != 0) fail("{}: head_dim {} must be even for rotary embeddings", src, head_dim);
  if (!(rms_norm_eps > 0)) fail("{}: rms_norm_eps must be > 0, got {}", src, rms_norm_eps);
  if (!(rope_theta > 0)) fail("{}: rope_theta must be > 0, got {}", src, rope_theta);
  if (sliding_window && *sliding_window < 1)
    fail("{}: sliding_window must be >= 1, got {}", src, *sliding_window);
}

std::optional<int64_t> ModelConfig::window_for_layer(int64_t layer) const {
  if (sliding_window && layer >= max_window_layers) return sliding_window;
  return std::nullopt;
}

int64_t ModelConfig::num_block_linear_parameters() const {
  const int64_t H = hidden_size, I = intermediate_size;
  const int64_t per_layer = H * q_dim() + 2 * H * kv_dim() + q_dim() * H + 3 * H * I;
  return per_layer * num_layers;
}

int64_t ModelConfig::num_parameters() const {
  const int64_t H = hidden_size, I = intermediate_size;
  int64_t per_layer = 2 * H;  // the two norms
  if (qkv_bias) per_layer += q_dim() + 2 * kv_dim();
  if (o_bias) per_layer += H;
  if (mlp_bias) per_layer += 2 * I + H;
  if (qk_norm) per_layer += 2 * head_dim;
  const int64_t embed = vocab_size * H;
  return embed + num_block_linear_parameters() + per_layer * num_layers + H +
         (tie_word_embeddings ? 0 : embed);
}

}  // namespace bidora
