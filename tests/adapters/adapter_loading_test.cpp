// load_adapter_for_model: adapters written by bidora and adapters in the layout real PEFT versions
// write (".default" keys, every magnitude spelling, bf16 tensors, configs full of newer keys)
// load into the bundled tiny Qwen2 and give the logits of the in-memory adapter; every refusal
// names the file, the key and what differs.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "adapter_test_util.h"
#include "adapters/adapter_loading.h"
#include "adapters/peft_io.h"
#include "core/error.h"
#include "core/files.h"
#include "core/half.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "test_support.h"

namespace bidora {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using enum LinearKind;

const std::vector<LinearKind> kAll = {Q, K, V, O, Gate, Up, Down};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

#define EXPECT_ERROR_HAS(call, ...)                                                           \
  do {                                                                                        \
    const std::string msg_ = error_of([&] { (void)(call); });                                 \
    for (const std::string& part_ : std::vector<std::string>{__VA_ARGS__})                    \
      EXPECT_NE(msg_.find(part_), std::string::npos) << "'" << part_ << "' not in: " << msg_; \
  } while (0)

// The tiny Qwen2 of examples/: hidden 64, 4 heads of 16 (2 KV heads), intermediate 192, 2 layers.
class AdapterLoading : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_path_ = test::source_path("examples/tiny-qwen2");
    weights_ = ModelWeights::load(model_path_, LoadOptions(WeightStorage::BF16)).release();
  }
  static void TearDownTestSuite() {
    delete weights_;
    weights_ = nullptr;
  }
  void SetUp() override { tmp = test::make_temp_dir("adapter-loading"); }

  const ModelWeights& w() const { return *weights_; }

  AdapterSet random_set(LoraVariant method, std::vector<LinearKind> targets, bool rslora = false) const {
    AdapterConfig c;
    c.method = method;
    c.r = 4;
    c.alpha = 8;
    c.dropout = 0.1;  // must be off after loading: the runtime is in eval mode
    c.use_rslora = rslora;
    c.targets = std::move(targets);
    AdapterSet set(c, w().layers(), 3);
    uint32_t seed = 10;
    for (LoraLayer* l : set.all()) {
      l->A = test::random_vec(l->A.size(), seed++, 0.3f);
      l->B = test::random_vec(l->B.size(), seed++, 0.3f);
      for (float& m : l->m) m *= 1.0f + 0.3f * test::random_vec(1, seed++)[0];
    }
    return set;
  }

  // Logits of a fixed two-row batch, through `adapters` (nullptr: the base model).
  std::vector<float> logits(LinearAdapters* adapters) const {
    TokenBatch b;
    b.rows = 2;
    b.seq_len = 6;
    b.input_ids = {1, 17, 300, 45, 9, 570, 568, 2, 88, 101, 250, 5};
    Decoder dec(w());
    dec.set_adapters(adapters);
    return dec.logits(b);
  }

  static inline std::string model_path_;
  static inline ModelWeights* weights_ = nullptr;
  std::string tmp;
};

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float d = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

TEST_F(AdapterLoading, BidoraAdapterGivesTheLogitsOfTheSavedSet) {
  const std::vector<float> base = logits(nullptr);
  for (auto [method, rslora] : {std::pair{LoraVariant::LoRA, true}, std::pair{LoraVariant::DoRA, false}}) {
    AdapterSet set = random_set(method, kAll, rslora);
    AdapterRuntime rt(set);
    const std::vector<float> expected = logits(&rt);
    ASSERT_GT(max_abs_diff(expected, base), 0.05f) << "the adapter must change the logits to be tested";

    const std::string dir = tmp + "/" + method_name(method);
    write_peft_adapter(dir, set, model_path_);
    const LoadedAdapter loaded = load_adapter_for_model(dir, w(), model_path_, false);
    EXPECT_EQ(loaded.dir, dir);
    ASSERT_TRUE(loaded.set && loaded.runtime);
    EXPECT_EQ(loaded.set->config().method, method);
    EXPECT_EQ(loaded.set->config().use_rslora, rslora);
    EXPECT_DOUBLE_EQ(loaded.set->config().scaling(), set.config().scaling());
    EXPECT_EQ(loaded.set->all().size(), 14u);
    EXPECT_FALSE(loaded.runtime->mode().training);  // no dropout although lora_dropout = 0.1
    EXPECT_EQ(&loaded.runtime->set(), loaded.set.get());
    EXPECT_EQ(max_abs_diff(logits(loaded.runtime.get()), expected), 0.0f);
  }
}

// Writes `tensors` (name -> f32 values, stored as bf16) with its shape table into a PEFT-style
// directory, together with `config`.
struct PeftFixture {
  std::vector<std::tuple<std::string, std::vector<int64_t>, std::vector<float>>> tensors;
  void write(const std::string& dir, const json& config, DType dtype = DType::BF16) const {
    fs::create_directories(dir);
    SafetensorsWriter st;
    for (const auto& [name, shape, values] : tensors) {
      if (dtype == DType::F32) {
        st.add_f32(name, shape, values);
        continue;
      }
      std::vector<uint8_t> bytes(values.size() * 2);
      for (size_t i = 0; i < values.size(); ++i) {
        const uint16_t h = f32_to_bf16(values[i]);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
      }
      st.add(name, DType::BF16, shape, bytes);
    }
    st.write(dir + "/adapter_model.safetensors");
    write_file_atomic(dir + "/adapter_config.json", config.dump(2));
  }
};

// adapter_config.json as PEFT 0.17 writes it for a Qwen2 LoRA/DoRA adapter (keys sorted).
json peft_config(const std::string& base, bool dora) {
  json j = json::parse(R"({
  "alora_invocation_tokens": null, "alpha_pattern": {}, "arrow_config": null, "auto_mapping": null,
  "bias": "none", "corda_config": null, "ensure_weight_tying": false, "eva_config": null,
  "exclude_modules": null, "fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true,
  "layer_replication": null, "layers_pattern": null, "layers_to_transform": null, "loftq_config": {},
  "lora_alpha": 16, "lora_bias": false, "lora_dropout": 0.05, "megatron_config": null,
  "megatron_core": "megatron.core", "modules_to_save": null, "peft_type": "LORA", "peft_version": "0.17.1",
  "qalora_group_size": 16, "r": 8, "rank_pattern": {}, "revision": null,
  "runtime_config": {"ephemeral_gpu_offload": false}, "target_modules": ["v_proj", "q_proj", "down_proj"],
  "target_parameters": null, "task_type": "CAUSAL_LM", "trainable_token_indices": null,
  "use_dora": false, "use_qalora": false, "use_rslora": true})");
  j["base_model_name_or_path"] = base;
  j["use_dora"] = dora;
  return j;
}

// The same values as `set`, in PEFT's key spellings: ".default" on some keys, and the magnitude
// as "lora_magnitude_vector" (PEFT >= 0.12) or ".lora_magnitude_vector.default.weight" (older).
// Values are rounded to bf16 in `set` too, so that both give bit-identical logits.
PeftFixture peft_layout_of(AdapterSet& set) {
  PeftFixture fx;
  int i = 0;
  for (LoraLayer* l : set.all()) {
    for (auto* v : {&l->A, &l->B, &l->m})
      for (float& x : *v) x = round_to_bf16(x);
    const std::string stem =
        fmt::format("base_model.model.model.layers.{}.{}.", l->layer(), linear_path(l->kind()));
    const std::string adapter_name = i % 2 ? ".default" : "";
    fx.tensors.emplace_back(stem + "lora_A" + adapter_name + ".weight",
                            std::vector<int64_t>{l->rank(), l->in_features()}, l->A);
    fx.tensors.emplace_back(stem + "lora_B" + adapter_name + ".weight",
                            std::vector<int64_t>{l->out_features(), l->rank()}, l->B);
    if (l->dora())
      fx.tensors.emplace_back(
          stem + (i % 2 ? "lora_magnitude_vector.default.weight" : "lora_magnitude_vector"),
          std::vector<int64_t>{l->out_features()}, l->m);
    ++i;
  }
  return fx;
}

TEST_F(AdapterLoading, PeftLayoutWithNewerKeysAndBf16Tensors) {
  for (bool dora : {false, true}) {
    AdapterConfig c;
    c.method = dora ? LoraVariant::DoRA : LoraVariant::LoRA;
    c.r = 8;
    c.alpha = 16;
    c.use_rslora = true;
    c.targets = {Q, V, Down};
    AdapterSet set(c, w().layers(), 5);
    uint32_t seed = 1;
    for (LoraLayer* l : set.all()) {
      l->B = test::random_vec(l->B.size(), seed++, 0.3f);
      for (float& m : l->m) m *= 1.1f;
    }
    const PeftFixture fx = peft_layout_of(set);
    const std::string dir = tmp + (dora ? "/peft-dora" : "/peft-lora");
    fx.write(dir, peft_config("Qwen/tiny-qwen2", dora));  // the hub id of a local copy: same model

    AdapterRuntime rt(set);
    const LoadedAdapter loaded = load_adapter_for_model(dir, w(), model_path_, false);
    EXPECT_EQ(loaded.set->config().r, 8);
    EXPECT_TRUE(loaded.set->config().use_rslora);
    EXPECT_DOUBLE_EQ(loaded.set->config().scaling(), 16.0 / std::sqrt(8.0));
    EXPECT_EQ(loaded.set->config().targets, (std::vector<LinearKind>{Q, V, Down}));
    for (const LoraLayer* l : set.all()) {
      const LoraLayer* b = loaded.set->find(l->layer(), l->kind());
      ASSERT_NE(b, nullptr);
      EXPECT_EQ(b->A, l->A);
      EXPECT_EQ(b->B, l->B);
      EXPECT_EQ(b->m, l->m);
    }
    EXPECT_EQ(max_abs_diff(logits(loaded.runtime.get()), logits(&rt)), 0.0f);
  }
}

TEST_F(AdapterLoading, TargetModulesAsStringRegexSuffixOrAllLinear) {
  AdapterSet set = random_set(LoraVariant::LoRA, kAll);
  const PeftFixture fx = peft_layout_of(set);
  json cfg = peft_config(model_path_, false);
  cfg["r"] = 4;
  cfg["lora_alpha"] = 8;
  cfg["use_rslora"] = false;
  for (const json& tm : {json("all-linear"), json(R"(.*\.(q|k|v|o|gate|up|down)_proj)"),
                         json(R"(model\.layers\.\d+\.(self_attn|mlp)\..*)"),
                         json::array({"self_attn.q_proj", "k_proj", "v_proj", "o_proj", "mlp.gate_proj",
                                      "up_proj", "down_proj"})}) {
    cfg["target_modules"] = tm;
    fx.write(tmp + "/a", cfg, DType::F32);
    const LoadedAdapter loaded = load_adapter_for_model(tmp + "/a", w(), model_path_, false);
    EXPECT_EQ(loaded.set->config().targets, kAll) << tm.dump();
  }
  // A regex that PEFT would match against no module name (fullmatch) is refused, as PEFT does.
  cfg["target_modules"] = "q_proj|v_proj";
  fx.write(tmp + "/a", cfg, DType::F32);
  EXPECT_ERROR_HAS(load_adapter_for_model(tmp + "/a", w(), model_path_, false), "adapter_config.json",
                   "target_modules \"q_proj|v_proj\"", "matches no linear layer");
}

TEST_F(AdapterLoading, RefusesAdaptersOfAnotherModel) {
  AdapterSet set = random_set(LoraVariant::DoRA, {Q, V});
  const PeftFixture good = peft_layout_of(set);
  json cfg = peft_config(model_path_, true);
  cfg["r"] = 4;
  cfg["target_modules"] = {"q_proj", "v_proj"};
  const std::string dir = tmp + "/bad";
  const std::string q3 = "base_model.model.model.layers.1.self_attn.q_proj.";
  auto with = [&](const std::function<void(PeftFixture&)>& edit) {
    PeftFixture fx = good;
    edit(fx);
    fx.write(dir, cfg);
  };
  auto load = [&] { return load_adapter_for_model(dir, w(), model_path_, false); };
  auto find = [&](PeftFixture & fx, const std::string& name) -> auto& {
    for (auto& t : fx.tensors) {
      std::string key = std::get<0>(t);  // without PEFT's adapter name
      if (auto p = key.find(".default"); p != std::string::npos) key.erase(p, 8);
      if (key == name) return t;
    }
    throw std::runtime_error("no tensor " + name);
  };

  // Trained with another hidden size: q_proj's A takes 96 inputs, this model's takes 64.
  with([&](PeftFixture& fx) {
    auto& t = find(fx, q3 + "lora_A.weight");
    std::get<1>(t) = {4, 96};
    std::get<2>(t).resize(4 * 96);
  });
  EXPECT_ERROR_HAS(load(), "adapter_model.safetensors", q3 + "lora_A.weight", "has shape [4, 96]",
                   "expected [4, 64]", "this model's q_proj takes 64 inputs (hidden_size 64)",
                   "trained for another model");
  // Another number of heads: v_proj's B has 48 outputs, this model's has 32.
  with([&](PeftFixture& fx) {
    auto& t = find(fx, "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight");
    std::get<1>(t) = {48, 4};
    std::get<2>(t).resize(48 * 4);
  });
  EXPECT_ERROR_HAS(load(), "layers.0.self_attn.v_proj.lora_B.default.weight", "[48, 4]", "expected [32, 4]",
                   "v_proj has 32 outputs (num_key_value_heads × head_dim 32)");
  // A rank that contradicts adapter_config.json.
  with([&](PeftFixture& fx) {
    auto& t = find(fx, q3 + "lora_A.weight");
    std::get<1>(t) = {2, 64};
    std::get<2>(t).resize(2 * 64);
  });
  EXPECT_ERROR_HAS(load(), q3 + "lora_A.weight", "rank 2 is not r = 4", "adapter_config.json");
  // More layers than the model.
  with([&](PeftFixture& fx) {
    auto t = find(fx, q3 + "lora_A.weight");
    std::get<0>(t) = "base_model.model.model.layers.5.self_attn.q_proj.lora_A.weight";
    fx.tensors.push_back(t);
  });
  EXPECT_ERROR_HAS(load(), "layers.5.self_attn.q_proj.lora_A.weight", "is for layer 5",
                   "this model has 2 layers");
  // Fewer layers than the model (an adapter of a 1-layer model).
  with([&](PeftFixture& fx) {
    std::erase_if(fx.tensors,
                  [](const auto& t) { return std::get<0>(t).find("layers.1.") != std::string::npos; });
  });
  EXPECT_ERROR_HAS(load(), "tensors for layers 0-0 only", "this model has 2 layers");
  // Tensors of modules bidora does not adapt (an lm_head or embedding adapter).
  with([&](PeftFixture& fx) {
    fx.tensors.emplace_back("base_model.model.lm_head.lora_A.weight", std::vector<int64_t>{4, 64},
                            std::vector<float>(256, 0.0f));
  });
  EXPECT_ERROR_HAS(load(), "adapter_model.safetensors", "unexpected tensor", "lm_head.lora_A.weight");
  // The magnitude of a LoRA adapter.
  cfg["use_dora"] = false;
  with([](PeftFixture&) {});
  EXPECT_ERROR_HAS(load(), "lora_magnitude_vector", "use_dora false");
  cfg["use_dora"] = true;

  // Config settings that cannot be honoured name the file and the key.
  auto config_error = [&](const char* key, const json& value, const std::vector<std::string>& parts) {
    json edited = cfg;
    edited[key] = value;
    good.write(dir, edited);
    const std::string msg = error_of([&] { load(); });
    EXPECT_NE(msg.find("adapter_config.json"), std::string::npos) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  };
  config_error("target_modules", {"q_proj", "c_attn"}, {"\"c_attn\"", "is not one of"});
  config_error("target_modules", {"embed_tokens", "q_proj", "v_proj"}, {"\"embed_tokens\""});
  config_error("target_modules", R"(model\.layers\.0\.self_attn\.(q|v)_proj)",
               {"adapts q_proj in 1 of the model's 2 layers only (layers 0)"});
  config_error("target_modules", {"layers.1.self_attn.q_proj", "v_proj"}, {"q_proj in 1 of", "(layers 1)"});
  config_error("target_modules", "(unclosed", {"not a regular expression"});
  config_error("layers_to_transform", {0}, {"layers_to_transform is set ([0])"});
  config_error("rank_pattern", {{"q_proj", 16}}, {"rank_pattern"});
  config_error("modules_to_save", {"lm_head"}, {"modules_to_save"});
  config_error("lora_bias", true, {"lora_bias is true"});
  config_error("init_lora_weights", "pissa_niter_4", {"init_lora_weights is \"pissa_niter_4\""});
  config_error("peft_type", "IA3", {"peft_type", "IA3"});
  // Harmless settings are accepted: other init names, extra keys, empty patterns.
  json relaxed = cfg;
  relaxed["init_lora_weights"] = "eva";
  relaxed["some_future_key"] = {{"x", 1}};
  relaxed["exclude_modules"] = json::array();
  good.write(dir, relaxed);
  EXPECT_EQ(load().set->all().size(), 4u);
}

TEST_F(AdapterLoading, BaseModelMustMatchUnlessAllowed) {
  AdapterSet set = random_set(LoraVariant::LoRA, {Q, V});
  const PeftFixture fx = peft_layout_of(set);
  json cfg = peft_config("Qwen/Qwen2.5-0.5B-Instruct", false);
  cfg["r"] = 4;
  cfg["target_modules"] = {"q_proj", "v_proj"};
  cfg["use_rslora"] = false;
  const std::string dir = tmp + "/a";
  fx.write(dir, cfg);
  EXPECT_ERROR_HAS(load_adapter_for_model(dir, w(), model_path_, false), "adapter_config.json",
                   "base_model_name_or_path is \"Qwen/Qwen2.5-0.5B-Instruct\"", "\"" + model_path_ + "\"",
                   "--allow-base-mismatch");
  // With the override the adapter loads (its shapes fit this model).
  EXPECT_EQ(load_adapter_for_model(dir, w(), model_path_, true).set->all().size(), 4u);
  // Absent, null or empty: accepted (with a warning on stderr).
  for (const json& base : {json(nullptr), json("")}) {
    cfg["base_model_name_or_path"] = base;
    fx.write(dir, cfg);
    testing::internal::CaptureStderr();
    const LoadedAdapter loaded = load_adapter_for_model(dir, w(), model_path_, false);
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_EQ(loaded.set->all().size(), 4u);
    EXPECT_NE(err.find("warning"), std::string::npos) << err;
    EXPECT_NE(err.find("base_model_name_or_path"), std::string::npos) << err;
  }
  cfg.erase("base_model_name_or_path");
  fx.write(dir, cfg);
  EXPECT_EQ(load_adapter_for_model(dir, w(), model_path_, false).set->all().size(), 4u);
  // The same model reached through a symlink: the same real directory.
  const std::string link = tmp + "/model-link";
  fs::create_directory_symlink(model_path_, link);
  cfg["base_model_name_or_path"] = link;
  fx.write(dir, cfg);
  EXPECT_EQ(load_adapter_for_model(dir, w(), model_path_, false).set->all().size(), 4u);
}

TEST_F(AdapterLoading, DirectoryErrors) {
  EXPECT_ERROR_HAS(load_adapter_for_model(tmp + "/nope", w(), model_path_, false), tmp + "/nope",
                   "no such adapter directory");
  // A training output directory: point at its final_model.
  AdapterSet set = random_set(LoraVariant::LoRA, {Q, V});
  write_peft_adapter(tmp + "/run/final_model", set, model_path_);
  EXPECT_ERROR_HAS(load_adapter_for_model(tmp + "/run", w(), model_path_, false),
                   "adapter_config.json: missing", "training output directory", tmp + "/run/final_model");
  fs::create_directories(tmp + "/empty");
  EXPECT_ERROR_HAS(load_adapter_for_model(tmp + "/empty", w(), model_path_, false),
                   "adapter_config.json: missing", "not a PEFT adapter directory");
}

TEST(SameBaseModel, ComparesIdsPathsAndNames) {
  EXPECT_TRUE(same_base_model("Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B"));
  // A directory of the hub cache is its id.
  EXPECT_TRUE(same_base_model("/root/.cache/huggingface/hub/models--Qwen--Qwen2.5-0.5B/snapshots/abc123",
                              "Qwen/Qwen2.5-0.5B"));
  EXPECT_TRUE(same_base_model("Qwen/Qwen2.5-0.5B", "/x/hub/models--Qwen--Qwen2.5-0.5B/snapshots/def/"));
  // The same last path component, case-insensitively: a local copy of the hub model.
  EXPECT_TRUE(same_base_model("/models/qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B"));
  EXPECT_TRUE(same_base_model("./models/Qwen2.5-0.5B/", "/srv/Qwen2.5-0.5B"));
  // Different models.
  EXPECT_FALSE(same_base_model("Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B-Instruct"));
  EXPECT_FALSE(same_base_model("/x/hub/models--Qwen--Qwen2.5-1.5B/snapshots/abc", "Qwen/Qwen2.5-0.5B"));
  EXPECT_FALSE(same_base_model("meta-llama/Llama-3.2-1B", "/models/SmolLM2-135M"));
  EXPECT_FALSE(same_base_model("", "Qwen/Qwen2.5-0.5B"));
  EXPECT_FALSE(same_base_model("Qwen/Qwen2.5-0.5B", ""));
  // The same real directory under two spellings.
  const std::string tmp = test::make_temp_dir("same-base");
  fs::create_directories(tmp + "/m");
  fs::create_directory_symlink(tmp + "/m", tmp + "/renamed");
  EXPECT_TRUE(same_base_model(tmp + "/renamed", tmp + "/m"));
  EXPECT_TRUE(same_base_model(tmp + "/./m", tmp + "/m"));
}

}  // namespace
}  // namespace bidora
