#pragma once
// Tiny random Hugging Face model directories (config.json + model.safetensors, f32) of each family,
// written by the tests themselves: for checks that compare two code paths of bidora on the same
// model (e.g. the KV-cache forward against Decoder::logits), where no PyTorch reference is needed.
#include <cstdint>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace bidora::test {

struct TinyModelSpec {
  std::string family = "llama";  // llama | mistral | qwen2 | qwen3
  int64_t hidden = 64, intermediate = 96, layers = 2, heads = 4, kv_heads = 2;
  int64_t head_dim = 0;  // 0: hidden / heads
  int64_t vocab = 97;
  bool tied = false;
  bool llama_biases = false;              // llama attention_bias + mlp_bias
  std::optional<int64_t> sliding_window;  // mistral: every layer
  uint32_t seed = 1;
};

// Writes the model into `dir` (which must exist) and returns `dir`.
inline std::string write_tiny_model(const std::string& dir, const TinyModelSpec& s) {
  const int64_t hd = s.head_dim > 0 ? s.head_dim : s.hidden / s.heads;
  const int64_t Q = s.heads * hd, KV = s.kv_heads * hd, H = s.hidden, I = s.intermediate;
  static const std::map<std::string, std::string> arch = {{"llama", "LlamaForCausalLM"},
                                                          {"mistral", "MistralForCausalLM"},
                                                          {"qwen2", "Qwen2ForCausalLM"},
                                                          {"qwen3", "Qwen3ForCausalLM"}};
  nlohmann::json cfg = {{"architectures", {arch.at(s.family)}},
                        {"model_type", s.family},
                        {"hidden_size", H},
                        {"intermediate_size", I},
                        {"num_hidden_layers", s.layers},
                        {"num_attention_heads", s.heads},
                        {"num_key_value_heads", s.kv_heads},
                        {"head_dim", hd},
                        {"vocab_size", s.vocab},
                        {"max_position_embeddings", 512},
                        {"rope_theta", 10000.0},
                        {"rms_norm_eps", 1e-6},
                        {"tie_word_embeddings", s.tied},
                        {"hidden_act", "silu"},
                        {"bos_token_id", 1},
                        {"eos_token_id", 2},
                        {"torch_dtype", "float32"}};
  if (s.llama_biases) cfg["attention_bias"] = cfg["mlp_bias"] = true;
  if (s.sliding_window) cfg["sliding_window"] = *s.sliding_window;
  std::ofstream(dir + "/config.json") << cfg.dump(2);

  std::mt19937 gen(s.seed);
  SafetensorsWriter wr;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float center, float scale) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::uniform_real_distribution<float> u(-scale, scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& e : v) e = center + u(gen);
    wr.add_f32(name, std::move(shape), v);
  };
  const bool qwen2 = s.family == "qwen2", qwen3 = s.family == "qwen3";
  add("model.embed_tokens.weight", {s.vocab, H}, 0.0f, 1.0f);
  if (!s.tied) add("lm_head.weight", {s.vocab, H}, 0.0f, 0.2f);
  add("model.norm.weight", {H}, 1.0f, 0.1f);
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {H}, 1.0f, 0.1f);
    add(p + "post_attention_layernorm.weight", {H}, 1.0f, 0.1f);
    // Large enough q/k weights that attention is far from uniform.
    add(p + "self_attn.q_proj.weight", {Q, H}, 0.0f, 0.3f);
    add(p + "self_attn.k_proj.weight", {KV, H}, 0.0f, 0.3f);
    add(p + "self_attn.v_proj.weight", {KV, H}, 0.0f, 0.2f);
    add(p + "self_attn.o_proj.weight", {H, Q}, 0.0f, 0.1f);
    add(p + "mlp.gate_proj.weight", {I, H}, 0.0f, 0.2f);
    add(p + "mlp.up_proj.weight", {I, H}, 0.0f, 0.2f);
    add(p + "mlp.down_proj.weight", {H, I}, 0.0f, 0.1f);
    if (qwen2 || s.llama_biases) {
      add(p + "self_attn.q_proj.bias", {Q}, 0.0f, 0.5f);
      add(p + "self_attn.k_proj.bias", {KV}, 0.0f, 0.5f);
      add(p + "self_attn.v_proj.bias", {KV}, 0.0f, 0.5f);
    }
    if (s.llama_biases) {
      add(p + "self_attn.o_proj.bias", {H}, 0.0f, 0.1f);
      add(p + "mlp.gate_proj.bias", {I}, 0.0f, 0.1f);
      add(p + "mlp.up_proj.bias", {I}, 0.0f, 0.1f);
      add(p + "mlp.down_proj.bias", {H}, 0.0f, 0.1f);
    }
    if (qwen3) {
      add(p + "self_attn.q_norm.weight", {hd}, 1.0f, 0.2f);
      add(p + "self_attn.k_norm.weight", {hd}, 1.0f, 0.2f);
    }
  }
  wr.write(dir + "/model.safetensors");
  return dir;
}

}  // namespace bidora::test
