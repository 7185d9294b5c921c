// Model loading: config.json variants, the HF cache lookup, and broken checkpoints that must
// give an error naming the file and the tensor instead of a crash.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "model/weights.h"
#include "test_support.h"

namespace bidora {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json tiny_config() {
  return json{{"model_type", "llama"},    {"architectures", {"LlamaForCausalLM"}},
              {"hidden_size", 16},        {"intermediate_size", 24},
              {"num_hidden_layers", 1},   {"num_attention_heads", 2},
              {"num_key_value_heads", 1}, {"vocab_size", 40},
              {"rms_norm_eps", 1e-5},     {"tie_word_embeddings", false}};
}

// Writes config.json and a model.safetensors with all tensors the config needs.
void write_tiny_model(const std::string& dir, const json& cfg, const std::string& skip = "",
                      const std::string& reshape = "") {
  fs::create_directories(dir);
  std::ofstream(dir + "/config.json") << cfg.dump(2);
  const ModelConfig c = ModelConfig::from_json(cfg, "test");
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0, 0.3f);
  SafetensorsWriter w;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    if (name == skip) return;
    if (name == reshape) shape.back() += 1;
    int64_t n = 1;
    for (auto d : shape) n *= d;
    std::vector<float> v(n);
    for (auto& x : v) x = nd(rng);
    w.add_f32(name, shape, v);
  };
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  add("model.embed_tokens.weight", {c.vocab_size, H});
  if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, H});
  add("model.norm.weight", {H});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {H});
    add(p + "post_attention_layernorm.weight", {H});
    add(p + "self_attn.q_proj.weight", {c.q_dim(), H});
    add(p + "self_attn.k_proj.weight", {c.kv_dim(), H});
    add(p + "self_attn.v_proj.weight", {c.kv_dim(), H});
    add(p + "self_attn.o_proj.weight", {H, c.q_dim()});
    add(p + "mlp.gate_proj.weight", {I, H});
    add(p + "mlp.up_proj.weight", {I, H});
    add(p + "mlp.down_proj.weight", {H, I});
  }
  w.write(dir + "/model.safetensors");
}

void expect_load_error(const std::string& dir, const std::vector<std::string>& fragments) {
  try {
    ModelWeights::load(dir, LoadOptions(WeightStorage::F32));
    FAIL() << "expected an error loading " << dir;
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& f : fragments)
      EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
  }
}

TEST(ModelConfig, DefaultsAndSpellings) {
  json j = tiny_config();
  j.erase("num_key_value_heads");
  j["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 5000.0}};
  ModelConfig c = ModelConfig::from_json(j, "c.json");
  EXPECT_EQ(c.num_kv_heads, 2);  // llama: defaults to the number of heads
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(c.rope_theta, 5000.0);

  json q = tiny_config();
  q["model_type"] = "qwen2";
  q["eos_token_id"] = {5, 6};
  q["use_sliding_window"] = false;
  q["sliding_window"] = 4;
  c = ModelConfig::from_json(q, "c.json");
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.sliding_window.has_value());
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{5, 6}));

  json m = tiny_config();
  m["model_type"] = "mistral";
  m["sliding_window"] = 7;
  c = ModelConfig::from_json(m, "c.json");
  EXPECT_EQ(c.window_for_layer(0), std::optional<int64_t>(7));

  json q3 = tiny_config();
  q3["model_type"] = "qwen3";
  q3["head_dim"] = 12;
  c = ModelConfig::from_json(q3, "c.json");
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.q_dim(), 24);
}

TEST(ModelConfig, ParameterCountOfQwen25_05B) {
  json j{{"model_type", "qwen2"},   {"hidden_size", 896},         {"intermediate_size", 4864},
         {"num_hidden_layers", 24}, {"num_attention_heads", 14},  {"num_key_value_heads", 2},
         {"vocab_size", 151936},    {"tie_word_embeddings", true}};
  EXPECT_EQ(ModelConfig::from_json(j, "q").num_parameters(), 494032768);
}

TEST(ModelConfig, ErrorsNameFileFieldAndValue) {
  auto expect = [](json j, std::vector<std::string> frags) {
    try {
      ModelConfig::from_json(j, "cfg.json");
      FAIL() << j.dump();
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("cfg.json"), std::string::npos) << msg;
      for (auto& f : frags) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
    }
  };
  json j = tiny_config();
  j.erase("hidden_size");
  expect(j, {"hidden_size", "missing"});
  j = tiny_config();
  j["hidden_size"] = "big";
  expect(j, {"hidden_size", "integer"});
  j = tiny_config();
  j["model_type"] = "gpt2";
  expect(j, {"gpt2", "not supported"});
  j = tiny_config();
  j["num_key_value_heads"] = 3;
  expect(j, {"multiple"});
  j = tiny_config();
  j["num_hidden_layers"] = 0;
  expect(j, {"num_hidden_layers", "0", "[1,"});
  j = tiny_config();
  j["rope_scaling"] = {{"type", "longrope"}, {"factor", 2.0}};
  expect(j, {"longrope"});
  j = tiny_config();
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  expect(j, {"original_max_position_embeddings"});
}

TEST(ModelLoading, LoadsAndRunsATinyModel) {
  const std::string dir = test::make_temp_dir("tiny");
  write_tiny_model(dir, tiny_config());
  auto w = ModelWeights::load(dir, LoadOptions(WeightStorage::F32));
  EXPECT_TRUE(w->embed().zero_copy());
  Decoder dec(*w);
  TokenBatch b;
  b.rows = 1;
  b.seq_len = 5;
  b.input_ids = {1, 2, 3, 4, 5};
  b.labels = {1, 2, 3, 4, 5};
  const LossSums loss = dec.loss(b);
  EXPECT_EQ(loss.count, 4);
  EXPECT_GT(loss.mean(), 0.0);
  b.input_ids[2] = 40;  // out of vocabulary
  EXPECT_THROW(dec.loss(b), Error);
  b.input_ids[2] = 3;
  b.position_ids = {0, 1, 5, 3, 4};
  EXPECT_THROW(dec.loss(b), Error);
}

TEST(ModelLoading, BrokenCheckpointsNameFileAndTensor) {
  const std::string root = test::make_temp_dir("broken");
  expect_load_error(root + "/nothing-here", {"not found"});

  const std::string no_cfg = root + "/no-config";
  write_tiny_model(no_cfg, tiny_config());
  fs::remove(no_cfg + "/config.json");
  expect_load_error(no_cfg, {"config.json"});

  const std::string bad_json = root + "/bad-json";
  write_tiny_model(bad_json, tiny_config());
  std::ofstream(bad_json + "/config.json") << "{\"hidden_size\": 16,";
  expect_load_error(bad_json, {"config.json", "invalid JSON"});

  const std::string missing = root + "/missing-tensor";
  write_tiny_model(missing, tiny_config(), "model.layers.0.mlp.up_proj.weight");
  expect_load_error(missing, {"model.layers.0.mlp.up_proj.weight", "missing"});

  const std::string shape = root + "/wrong-shape";
  write_tiny_model(shape, tiny_config(), "", "model.layers.0.self_attn.k_proj.weight");
  expect_load_error(shape,
                    {"model.safetensors", "model.layers.0.self_attn.k_proj.weight", "[8, 17]", "[8, 16]"});

  const std::string trunc = root + "/truncated";
  write_tiny_model(trunc, tiny_config());
  fs::resize_file(trunc + "/model.safetensors", fs::file_size(trunc + "/model.safetensors") - 100);
  expect_load_error(trunc, {"model.safetensors", "truncated"});

  const std::string no_weights = root + "/no-weights";
  write_tiny_model(no_weights, tiny_config());
  fs::remove(no_weights + "/model.safetensors");
  expect_load_error(no_weights, {"no model.safetensors"});

  const std::string bad_index = root + "/bad-index";
  write_tiny_model(bad_index, tiny_config());
  std::ofstream(bad_index + "/model.safetensors.index.json")
      << R"({"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"}})";
  expect_load_error(bad_index, {"model-00002-of-00002.safetensors"});
}

TEST(ModelFiles, ResolvesIdsInTheHuggingFaceCache) {
  const std::string home = test::make_temp_dir("hf");
  const std::string snap = home + "/hub/models--acme--tiny/snapshots/abc123";
  write_tiny_model(snap, tiny_config());
  fs::create_directories(home + "/hub/models--acme--tiny/refs");
  std::ofstream(home + "/hub/models--acme--tiny/refs/main") << "abc123\n";
  setenv("HF_HOME", home.c_str(), 1);
  unsetenv("HF_HUB_CACHE");
  EXPECT_EQ(resolve_model_dir("acme/tiny"), snap);
  auto w = ModelWeights::load("acme/tiny", LoadOptions(WeightStorage::F32));
  EXPECT_EQ(w->config().hidden_size, 16);
  try {
    resolve_model_dir("acme/absent");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("models--acme--absent"), std::string::npos) << e.what();
  }
  unsetenv("HF_HOME");
}

}  // namespace
}  // namespace bidora
