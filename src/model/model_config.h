#pragma once
// A decoder's architecture as read from Hugging Face config.json (llama, mistral, qwen2, qwen3).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace bidora {

enum class ModelFamily { Llama, Mistral, Qwen2, Qwen3 };
const char* family_name(ModelFamily f);  // "llama", "mistral", "qwen2", "qwen3"

struct RopeScaling {
  std::string type = "default";  // default | linear | dynamic | llama3 | yarn
  double factor = 1.0;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  int64_t original_max_position_embeddings = 0;
  double beta_fast = 32.0;                 // yarn
  double beta_slow = 1.0;                  // yarn
  std::optional<double> attention_factor;  // yarn
};

struct ModelConfig {
  ModelFamily family = ModelFamily::Llama;
  std::string architecture;  // architectures[0], e.g. "Qwen2ForCausalLM"
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // may differ from hidden_size / num_heads (Qwen3)
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // q/k/v projections carry a bias (Qwen2 always; llama/qwen3 attention_bias)
  bool o_bias = false;    // o_proj carries a bias (llama/qwen3 attention_bias)
  bool mlp_bias = false;  // llama mlp_bias
  bool qk_norm = false;   // Qwen3 per-head RMSNorm on q and k before RoPE
  std::optional<int64_t> sliding_window;  // applied to every layer when set (see model_config.cpp)
  int64_t max_window_layers = 0;          // qwen: layers >= this use the window
  std::string torch_dtype;                // storage dtype in the checkpoint, e.g. "bfloat16"
  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> pad_token_id;

  // The attention window of `layer` (keys j with i - window < j <= i), or none for full causal.
  std::optional<int64_t> window_for_layer(int64_t layer) const;

  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
  // Number of parameters of the whole model (embeddings, all layers, final norm, lm_head if untied).
  int64_t num_parameters() const;
  // Parameters in the Linear layers inside the blocks (the ones NF4/int8 quantise).
  int64_t num_block_linear_parameters() const;

  // Parses config.json text; `source` names the file in error messages.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source);
  static ModelConfig from_file(const std::string& path);
  void validate(const std::string& source) const;
};

}  // namespace bidora
