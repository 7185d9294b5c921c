// `bidora merge` as a library (adapters/merge.h): tiny random llama (untied) and qwen2 (tied, q/k/v
// biases) checkpoints with LoRA / rsLoRA / DoRA adapters whose B and m are far from their initial
// values. The merged model, loaded by ModelWeights::load, must give the logits the base model gives
// with the adapter (1e-5 in f32; bf16 output: every tensor is the round-to-nearest-even of the f32
// merge); merged tensors equal a naive double-precision W + s·BA (DoRA: scaled per row) and every
// other tensor is the base's, byte for byte; sharding follows huggingface_hub; the refusals leave
// nothing behind. A PyTorch re-statement of PEFT's merge (tests/reference/check_merge.py) checks
// the written directories from the same files.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "adapters/adapter_runtime.h"
#include "adapters/merge.h"
#include "adapters/peft_io.h"
#include "core/error.h"
#include "core/files.h"
#include "core/half.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "test_support.h"

namespace bidora {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::vector<LinearKind> kAll = {LinearKind::Q,    LinearKind::K,  LinearKind::V,   LinearKind::O,
                                      LinearKind::Gate, LinearKind::Up, LinearKind::Down};
const std::vector<LinearKind> kQV = {LinearKind::Q, LinearKind::V};

// Files a model directory carries besides the weights: the tokenizer ones must be copied, the
// README must not (it describes the base model, not the merged one).
const std::map<std::string, std::string> kSideFiles = {
    {"tokenizer.json", "{\"model\": {\"type\": \"BPE\"}}\n"},
    {"tokenizer_config.json", "{\"eos_token\": \"</s>\"}\n"},
    {"generation_config.json", "{\"do_sample\": false}\n"},
    {"chat_template.jinja", "{% for m in messages %}{{ m.content }}{% endfor %}"},
    {"README.md", "# the base model\n"}};

json tiny_config(const std::string& family, bool tied, DType dtype) {
  return json{{"model_type", family},
              {"architectures", {family == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
              {"hidden_size", 32},
              {"intermediate_size", 48},
              {"num_hidden_layers", 2},
              {"num_attention_heads", 4},
              {"num_key_value_heads", 2},
              {"vocab_size", 64},
              {"rms_norm_eps", 1e-6},
              {"rope_theta", 10000.0},
              {"max_position_embeddings", 128},
              {"tie_word_embeddings", tied},
              {"torch_dtype", dtype == DType::BF16 ? "bfloat16" : "float32"}};
}

// Writes config.json, model.safetensors (every tensor the config implies, random, in `dtype`) and
// the side files into `dir`.
void write_model(const std::string& dir, const json& cfg, DType dtype, uint32_t seed) {
  fs::create_directories(dir);
  write_file_atomic(dir + "/config.json", cfg.dump(2));
  for (const auto& [name, text] : kSideFiles) write_file_atomic(dir + "/" + name, text);
  const ModelConfig c = ModelConfig::from_json(cfg, "test");
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  SafetensorsWriter w;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale, float center) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = center + scale * nd(rng);
    if (dtype == DType::F32) {
      w.add_f32(name, shape, v);
    } else {
      std::vector<uint16_t> h(v.size());
      f32_to_bf16_n(v.data(), h.data(), v.size());
      w.add(name, DType::BF16, shape, {reinterpret_cast<const uint8_t*>(h.data()), h.size() * 2});
    }
  };
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const float sH = 1.0f / std::sqrt(static_cast<float>(H)), sI = 1.0f / std::sqrt(static_cast<float>(I));
  add("model.embed_tokens.weight", {V, H}, 0.25f, 0.0f);
  if (!c.tie_word_embeddings) add("lm_head.weight", {V, H}, sH, 0.0f);
  add("model.norm.weight", {H}, 0.1f, 1.0f);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {H}, 0.1f, 1.0f);
    add(p + "post_attention_layernorm.weight", {H}, 0.1f, 1.0f);
    add(p + "self_attn.q_proj.weight", {c.q_dim(), H}, sH, 0.0f);
    add(p + "self_attn.k_proj.weight", {c.kv_dim(), H}, sH, 0.0f);
    add(p + "self_attn.v_proj.weight", {c.kv_dim(), H}, sH, 0.0f);
    add(p + "self_attn.o_proj.weight", {H, c.q_dim()}, sH, 0.0f);
    if (c.qkv_bias) {
      add(p + "self_attn.q_proj.bias", {c.q_dim()}, 0.1f, 0.0f);
      add(p + "self_attn.k_proj.bias", {c.kv_dim()}, 0.1f, 0.0f);
      add(p + "self_attn.v_proj.bias", {c.kv_dim()}, 0.1f, 0.0f);
    }
    add(p + "mlp.gate_proj.weight", {I, H}, sH, 0.0f);
    add(p + "mlp.up_proj.weight", {I, H}, sH, 0.0f);
    add(p + "mlp.down_proj.weight", {H, I}, sI, 0.0f);
  }
  w.write(dir + "/model.safetensors");
}

// A trained-looking adapter over `w`, written to `dir`: B random (PEFT starts it at 0) and DoRA's
// magnitudes moved by up to ±20% from ‖W‖_row.
AdapterSet make_adapter(const ModelWeights& w, LoraVariant method, bool rslora,
                        std::vector<LinearKind> targets, uint32_t seed) {
  AdapterConfig cfg;
  cfg.method = method;
  cfg.r = 4;
  cfg.alpha = 8;
  cfg.use_rslora = rslora;
  cfg.targets = std::move(targets);
  AdapterSet set(cfg, w.layers(), seed);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  std::uniform_real_distribution<float> u(-0.2f, 0.2f);
  for (LoraLayer* l : set.all()) {
    for (float& b : l->B) b = nd(rng);
    for (float& m : l->m) m *= 1.0f + u(rng);
  }
  return set;
}

TokenBatch test_batch(int64_t vocab) {
  TokenBatch b;
  b.rows = 2;
  b.seq_len = 9;
  std::mt19937 rng(11);
  for (int64_t i = 0; i < b.tokens(); ++i) b.input_ids.push_back(static_cast<int32_t>(rng() % vocab));
  return b;
}

// Logits of the model in `dir` (F32 storage: bf16 / f16 values are used exactly), with `set`
// applied when given.
std::vector<float> logits_of(const std::string& dir, AdapterSet* set = nullptr) {
  const auto w = ModelWeights::load(dir, LoadOptions(WeightStorage::F32));
  Decoder dec(*w);
  std::unique_ptr<AdapterRuntime> rt;
  if (set) {
    rt = std::make_unique<AdapterRuntime>(*set);  // eval mode: no dropout
    dec.set_adapters(rt.get());
  }
  return dec.logits(test_batch(w->config().vocab_size));
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    m = std::max(m, std::abs(double(a[i]) - double(b[i])));
  return m;
}

double max_abs(const std::vector<float>& a) {
  double m = 0;
  for (float v : a) m = std::max(m, std::abs(double(v)));
  return m;
}

std::vector<float> values_f32(const TensorView& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  tensor_to_f32(t, v.data(), t.name);
  return v;
}

std::vector<uint8_t> bytes_of(const TensorView& t) {
  return {t.data, t.data + t.nbytes};
}

// W + s·B·A, and for DoRA m_i / ‖(W + s·B·A)_i‖ per row, in double from the base values.
std::vector<double> naive_merge(const std::vector<float>& W, const LoraLayer& l) {
  const int64_t out = l.out_features(), in = l.in_features(), r = l.rank();
  const double s = l.scaling();
  std::vector<double> V(static_cast<size_t>(out * in));
  for (int64_t i = 0; i < out; ++i) {
    double n2 = 0;
    for (int64_t j = 0; j < in; ++j) {
      double d = 0;
      for (int64_t k = 0; k < r; ++k) d += double(l.B[i * r + k]) * double(l.A[k * in + j]);
      V[i * in + j] = W[i * in + j] + s * d;
      n2 += V[i * in + j] * V[i * in + j];
    }
    if (l.dora())
      for (int64_t j = 0; j < in; ++j) V[i * in + j] *= l.m[i] / std::sqrt(n2);
  }
  return V;
}

// MergeOptions for one merge, defaults unless a setter says otherwise.
struct Job {
  Job(const std::string& model, const std::string& adapter, const std::string& output) {
    o.model = model;
    o.adapter = adapter;
    o.output = output;
  }
  Job& dtype(DType d) {
    o.dtype = d;
    return *this;
  }
  Job& max_shard_bytes(uint64_t n) {
    o.max_shard_bytes = n;
    return *this;
  }
  Job& overwrite(bool b) {
    o.overwrite = b;
    return *this;
  }
  Job& allow_base_mismatch(bool b) {
    o.allow_base_mismatch = b;
    return *this;
  }
  operator const MergeOptions&() const { return o; }
  MergeOptions o;
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Entries of `dir` whose name contains ".tmp." or ".old.": what a failed or interrupted write
// would leave behind.
std::vector<std::string> leftovers(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.find(".tmp.") != std::string::npos || n.find(".old.") != std::string::npos) out.push_back(n);
  }
  return out;
}

struct Case {
  const char* label;
  const char* family;
  bool tied;
  LoraVariant method;
  bool rslora;
  const std::vector<LinearKind>* targets;
};

class MergeCase : public ::testing::TestWithParam<Case> {};

TEST_P(MergeCase, MergedModelGivesTheAdaptedLogits) {
  const Case c = GetParam();
  const std::string tmp = test::make_temp_dir(std::string("merge-") + c.label);
  const std::string base = tmp + "/base-" + c.family, adapter = tmp + "/adapter", out = tmp + "/merged";
  const json cfg = tiny_config(c.family, c.tied, DType::F32);
  write_model(base, cfg, DType::F32, 3);
  const auto w = ModelWeights::load(base, LoadOptions(WeightStorage::F32));
  AdapterSet set = make_adapter(*w, c.method, c.rslora, *c.targets, 21);
  write_peft_adapter(adapter, set, base);

  const MergeResult r = merge_adapter(Job(base, adapter, out));
  EXPECT_EQ(r.dtype, DType::F32);  // config.json torch_dtype float32
  EXPECT_EQ(r.files, std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(r.merged_linears, static_cast<int64_t>(2 * c.targets->size()));
  EXPECT_TRUE(leftovers(tmp).empty());

  // The merged model alone computes what the base computes with the adapter.
  const std::vector<float> adapted = logits_of(base, &set), merged = logits_of(out), plain = logits_of(base);
  EXPECT_LE(max_abs_diff(merged, adapted), 1e-5) << "logits up to " << max_abs(adapted);
  EXPECT_GT(max_abs_diff(plain, adapted), 0.05)
      << "the adapter must move the logits for the test to mean anything";

  // Tensors: the base's set (tied: still no lm_head), merged projections as a naive double merge,
  // everything else byte for byte.
  const SafetensorsFile merged_st(out + "/model.safetensors");
  EXPECT_EQ(merged_st.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  const CheckpointTensors base_ck(base);
  std::set<std::string> merged_names;
  for (const TensorView& t : merged_st.tensors()) merged_names.insert(t.name);
  const auto base_names = base_ck.names();
  EXPECT_EQ(merged_names, std::set<std::string>(base_names.begin(), base_names.end()));
  EXPECT_EQ(merged_names.count("lm_head.weight"), c.tied ? 0u : 1u);
  int merged_seen = 0;
  for (const std::string& name : base_names) {
    const TensorView& b = base_ck.get(name);
    const TensorView& m = merged_st.get(name);
    EXPECT_EQ(m.dtype, DType::F32) << name;
    EXPECT_EQ(m.shape, b.shape) << name;
    const LoraLayer* lora = nullptr;
    for (const LoraLayer* l : set.all())
      if (name == "model.layers." + std::to_string(l->layer()) + "." + linear_path(l->kind()) + ".weight")
        lora = l;
    if (!lora) {
      EXPECT_EQ(bytes_of(m), bytes_of(b)) << name;
      continue;
    }
    ++merged_seen;
    const std::vector<double> want = naive_merge(values_f32(b), *lora);
    const std::vector<float> got = values_f32(m);
    double err = 0, scale = 0, moved = 0;
    const std::vector<float> orig = values_f32(b);
    for (size_t i = 0; i < want.size(); ++i) {
      err = std::max(err, std::abs(got[i] - want[i]));
      scale = std::max(scale, std::abs(want[i]));
      moved = std::max(moved, std::abs(want[i] - orig[i]));
    }
    EXPECT_LE(err, 1e-6 * scale) << name;
    EXPECT_GT(moved, 1e-2 * scale) << name;
  }
  EXPECT_EQ(merged_seen, r.merged_linears);

  // config.json: torch_dtype set, everything else as the base has it; tokenizer files copied.
  json merged_cfg = json::parse(read_file(out + "/config.json"));
  EXPECT_EQ(merged_cfg["torch_dtype"], "float32");
  EXPECT_EQ(merged_cfg, cfg);
  for (const auto& [name, text] : kSideFiles) {
    if (name == "README.md")
      EXPECT_FALSE(fs::exists(out + "/" + name));
    else
      EXPECT_EQ(read_file(out + "/" + name), text) << name;
  }
}

const Case kCases[] = {
    {"llama_untied_lora_qv", "llama", false, LoraVariant::LoRA, false, &kQV},
    {"llama_untied_rslora_all", "llama", false, LoraVariant::LoRA, true, &kAll},
    {"qwen2_tied_dora_all", "qwen2", true, LoraVariant::DoRA, false, &kAll},
    {"qwen2_tied_dora_rslora_qv", "qwen2", true, LoraVariant::DoRA, true, &kQV},
};
INSTANTIATE_TEST_SUITE_P(Families, MergeCase, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.label); });

TEST(Merge, Bf16OutputIsTheRoundedF32Merge) {
  const std::string tmp = test::make_temp_dir("merge-bf16");
  const std::string base = tmp + "/llama", adapter = tmp + "/adapter";
  write_model(base, tiny_config("llama", false, DType::F32), DType::F32, 5);
  const auto w = ModelWeights::load(base, LoadOptions(WeightStorage::F32));
  AdapterSet set = make_adapter(*w, LoraVariant::DoRA, false, kAll, 8);
  write_peft_adapter(adapter, set, base);
  merge_adapter(Job(base, adapter, tmp + "/f32"));
  const MergeResult r = merge_adapter(Job(base, adapter, tmp + "/bf16").dtype(DType::BF16));
  EXPECT_EQ(r.dtype, DType::BF16);
  EXPECT_EQ(json::parse(read_file(tmp + "/bf16/config.json"))["torch_dtype"], "bfloat16");

  // Every tensor (merged or not) is torch's .to(bfloat16) of the f32 result: one rounding, to
  // nearest even.
  const SafetensorsFile f32(tmp + "/f32/model.safetensors"), bf16(tmp + "/bf16/model.safetensors");
  ASSERT_EQ(f32.tensors().size(), bf16.tensors().size());
  for (const TensorView& t : f32.tensors()) {
    const TensorView& h = bf16.get(t.name);
    ASSERT_EQ(h.dtype, DType::BF16) << t.name;
    const std::vector<float> v = values_f32(t);
    std::vector<uint16_t> want(v.size()), got(v.size());
    f32_to_bf16_n(v.data(), want.data(), v.size());
    std::memcpy(got.data(), h.data, h.nbytes);
    EXPECT_EQ(got, want) << t.name;
  }
  // Logits: within what rounding every weight to bf16 does (bound 10 units of bf16 roundoff,
  // 2^-9, of the largest logit; measured 0.8%), far below the adapter's own effect.
  const std::vector<float> adapted = logits_of(base, &set), merged = logits_of(tmp + "/bf16");
  EXPECT_LE(max_abs_diff(merged, adapted), 2e-2 * max_abs(adapted));
  EXPECT_GT(max_abs_diff(logits_of(base), adapted), 10 * max_abs_diff(merged, adapted));
}

TEST(Merge, Bf16BaseKeepsItsDtypeAndUnadaptedBytes) {
  const std::string tmp = test::make_temp_dir("merge-bf16-base");
  const std::string base = tmp + "/qwen2-bf16", adapter = tmp + "/adapter", out = tmp + "/merged";
  write_model(base, tiny_config("qwen2", true, DType::BF16), DType::BF16, 6);
  const auto w = ModelWeights::load(base, LoadOptions(WeightStorage::F32));
  AdapterSet set = make_adapter(*w, LoraVariant::LoRA, true, kQV, 9);
  write_peft_adapter(adapter, set, base);
  const MergeResult r = merge_adapter(Job(base, adapter, out));
  EXPECT_EQ(r.dtype, DType::BF16);  // the base's torch_dtype
  const CheckpointTensors b(base);
  const SafetensorsFile m(out + "/model.safetensors");
  for (const TensorView& t : m.tensors()) {
    EXPECT_EQ(t.dtype, DType::BF16) << t.name;
    const bool adapted = t.name.find("q_proj.weight") != std::string::npos ||
                         t.name.find("v_proj.weight") != std::string::npos;
    if (!adapted) {
      EXPECT_EQ(bytes_of(t), bytes_of(b.get(t.name))) << t.name;
    }
  }
  // Only the merged q/v projections were rounded here (measured 0.5% of the largest logit).
  const std::vector<float> adapted = logits_of(base, &set), merged = logits_of(out);
  EXPECT_LE(max_abs_diff(merged, adapted), 2e-2 * max_abs(adapted));
}

TEST(Merge, F16OutputRoundsToNearestEvenAndLoadsAsAnF16Base) {
  const std::string tmp = test::make_temp_dir("merge-f16");
  const std::string base = tmp + "/llama", adapter = tmp + "/adapter";
  write_model(base, tiny_config("llama", true, DType::F32), DType::F32, 12);
  const auto w = ModelWeights::load(base, LoadOptions(WeightStorage::F32));
  AdapterSet set = make_adapter(*w, LoraVariant::LoRA, false, kAll, 13);
  write_peft_adapter(adapter, set, base);
  merge_adapter(Job(base, adapter, tmp + "/f32"));
  merge_adapter(Job(base, adapter, tmp + "/f16").dtype(DType::F16));
  EXPECT_EQ(json::parse(read_file(tmp + "/f16/config.json"))["torch_dtype"], "float16");
  const SafetensorsFile f32(tmp + "/f32/model.safetensors"), f16(tmp + "/f16/model.safetensors");
  int64_t checked = 0;
  for (const TensorView& t : f32.tensors()) {
    const TensorView& h = f16.get(t.name);
    ASSERT_EQ(h.dtype, DType::F16) << t.name;
    const std::vector<float> v = values_f32(t);
    std::vector<uint16_t> got(v.size());
    std::memcpy(got.data(), h.data, h.nbytes);
    for (size_t i = 0; i < v.size(); ++i) {
      // Nearest: no neighbouring half is closer; on a tie the even one.
      const double x = v[i], d = std::abs(f16_to_f32(got[i]) - x);
      for (int step : {-1, 1}) {
        const uint16_t nb = static_cast<uint16_t>(got[i] + step);
        if ((nb & 0x7fff) >= 0x7c00 || (nb ^ got[i]) & 0x8000) continue;  // inf/NaN or sign change
        const double dn = std::abs(f16_to_f32(nb) - x);
        ASSERT_TRUE(d < dn || (d == dn && (got[i] & 1) == 0)) << t.name << "[" << i << "] " << x;
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 10000);

  // That output is an f16 model directory: as a base, its torch_dtype (float16) is the default
  // output, its unadapted tensors are copied as they are, and the merge reads its f16 values.
  const std::string base16 = tmp + "/f16", adapter16 = tmp + "/adapter16", out = tmp + "/f16-merged";
  const auto w16 = ModelWeights::load(base16, LoadOptions(WeightStorage::F32));
  AdapterSet set16 = make_adapter(*w16, LoraVariant::DoRA, false, kQV, 14);
  write_peft_adapter(adapter16, set16, base16);
  EXPECT_EQ(merge_adapter(Job(base16, adapter16, out)).dtype, DType::F16);
  const SafetensorsFile merged(out + "/model.safetensors");
  for (const TensorView& t : merged.tensors()) {
    EXPECT_EQ(t.dtype, DType::F16) << t.name;
    if (t.name.find("k_proj") != std::string::npos || t.name.find("norm") != std::string::npos) {
      EXPECT_EQ(bytes_of(t), bytes_of(f16.get(t.name))) << t.name;
    }
  }
  // Within 10 units of half's roundoff (2^-11) of the largest logit (measured 0.04%).
  const std::vector<float> adapted = logits_of(base16, &set16), got = logits_of(out);
  EXPECT_LE(max_abs_diff(got, adapted), 5e-3 * max_abs(adapted));
  EXPECT_GT(max_abs_diff(logits_of(base16), adapted), 10 * max_abs_diff(got, adapted));
}

TEST(Merge, ShardsFollowHuggingFaceAndLoadBack) {
  const std::string tmp = test::make_temp_dir("merge-shards");
  const std::string base = tmp + "/llama", adapter = tmp + "/adapter";
  write_model(base, tiny_config("llama", false, DType::F32), DType::F32, 14);
  const auto w = ModelWeights::load(base, LoadOptions(WeightStorage::F32));
  AdapterSet set = make_adapter(*w, LoraVariant::DoRA, true, kAll, 15);
  write_peft_adapter(adapter, set, base);
  merge_adapter(Job(base, adapter, tmp + "/single"));
  // 7000 bytes: the 8 KiB embedding and lm_head exceed it (a shard each), layers span several.
  const uint64_t max = 7000;
  const MergeResult r = merge_adapter(Job(base, adapter, tmp + "/sharded").max_shard_bytes(max));
  ASSERT_GT(r.files.size(), 4u);
  EXPECT_FALSE(fs::exists(tmp + "/sharded/model.safetensors"));
  const json index = json::parse(read_file(tmp + "/sharded/model.safetensors.index.json"));
  EXPECT_EQ(index.size(), 2u);
  EXPECT_EQ(index["metadata"].size(), 1u);
  const CheckpointTensors b(base);
  uint64_t total = 0;
  for (const std::string& n : b.names()) total += b.get(n).nbytes;
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
  EXPECT_EQ(r.total_size, total);
  EXPECT_EQ(index["weight_map"].size(), b.names().size());
  std::map<std::string, std::set<std::string>> per_file;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it)
    per_file[it.value().get<std::string>()].insert(it.key());
  ASSERT_EQ(per_file.size(), r.files.size());
  for (size_t i = 0; i < r.files.size(); ++i) {
    EXPECT_EQ(r.files[i], shard_file_name(i, r.files.size()));
    const SafetensorsFile f(tmp + "/sharded/" + r.files[i]);
    std::set<std::string> names;
    uint64_t bytes = 0;
    for (const TensorView& t : f.tensors()) {
      names.insert(t.name);
      bytes += t.nbytes;
    }
    EXPECT_EQ(names, per_file[r.files[i]]) << r.files[i];
    EXPECT_TRUE(bytes <= max || names.size() == 1) << r.files[i] << ": " << bytes << " bytes";
    EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  }
  // The embedding (first in state_dict order, over the limit) is alone in the first shard.
  EXPECT_EQ(index["weight_map"]["model.embed_tokens.weight"],
            "model-00001-of-" + fmt::format("{:05d}", r.files.size()) + ".safetensors");
  EXPECT_EQ(logits_of(tmp + "/sharded"), logits_of(tmp + "/single"));  // bit for bit
}

TEST(Merge, PlanShardsAsHuggingfaceHub) {
  // huggingface_hub split_state_dict_into_shards: an oversized tensor is pushed as its own shard
  // right away, before the shard being filled.
  EXPECT_EQ(plan_shards({3, 3, 3, 10, 2, 2}, 6),
            (std::vector<std::vector<size_t>>{{0, 1}, {3}, {2, 4}, {5}}));
  EXPECT_EQ(plan_shards({1, 2, 3}, 100), (std::vector<std::vector<size_t>>{{0, 1, 2}}));
  EXPECT_EQ(plan_shards({7}, 6), (std::vector<std::vector<size_t>>{{0}}));
  EXPECT_EQ(plan_shards({}, 6), (std::vector<std::vector<size_t>>{}));
  EXPECT_EQ(shard_file_name(1, 5), "model-00002-of-00005.safetensors");
  EXPECT_EQ(shard_file_name(0, 1), "model.safetensors");
}

TEST(Merge, ParsesShardSizes) {
  EXPECT_EQ(parse_byte_size("5GB"), 5'000'000'000u);
  EXPECT_EQ(parse_byte_size("500mb"), 500'000'000u);
  EXPECT_EQ(parse_byte_size(" 1.5 MB "), 1'500'000u);
  EXPECT_EQ(parse_byte_size("2GiB"), 2147483648u);
  EXPECT_EQ(parse_byte_size("10KiB"), 10240u);
  EXPECT_EQ(parse_byte_size("123456"), 123456u);
  EXPECT_EQ(parse_byte_size("64B"), 64u);
  for (const char* bad : {"", "GB", "abc", "-1GB", "0", "5 XB", "1e400", "nan"}) {
    const std::string msg = error_of([&] { parse_byte_size(bad, "--max-shard-size"); });
    EXPECT_NE(msg.find("--max-shard-size"), std::string::npos) << bad << ": " << msg;
  }
}

class MergeErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp = test::make_temp_dir("merge-errors");
    base = tmp + "/llama-a";
    write_model(base, tiny_config("llama", false, DType::F32), DType::F32, 30);
    w = ModelWeights::load(base, LoadOptions(WeightStorage::F32));
    adapter = tmp + "/adapter";
    write_peft_adapter(adapter, make_adapter(*w, LoraVariant::LoRA, false, kQV, 31), base);
  }
  std::string tmp, base, adapter;
  std::unique_ptr<ModelWeights> w;
};

TEST_F(MergeErrors, ExistingOutputNeedsOverwrite) {
  const std::string out = tmp + "/out";
  fs::create_directories(out);
  write_file_atomic(out + "/keep.txt", "mine");
  const std::string msg = error_of([&] { merge_adapter(Job(base, adapter, out)); });
  EXPECT_NE(msg.find(out), std::string::npos) << msg;
  EXPECT_NE(msg.find("--overwrite"), std::string::npos) << msg;
  EXPECT_EQ(read_file(out + "/keep.txt"), "mine");
  merge_adapter(Job(base, adapter, out).overwrite(true));
  EXPECT_FALSE(fs::exists(out + "/keep.txt"));
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
  EXPECT_TRUE(leftovers(tmp).empty());
}

TEST_F(MergeErrors, RefusesToReplaceItsInputs) {
  for (const std::string& out : {base, tmp, adapter + "/"}) {
    const std::string msg = error_of([&] { merge_adapter(Job(base, adapter, out).overwrite(true)); });
    EXPECT_NE(msg.find("would replace"), std::string::npos) << out << ": " << msg;
  }
  EXPECT_TRUE(fs::exists(base + "/model.safetensors"));
  EXPECT_TRUE(fs::exists(adapter + "/adapter_model.safetensors"));
}

TEST_F(MergeErrors, AdapterOfAnotherModel) {
  // Another base name: refused unless allowed.
  const std::string other = tmp + "/qwen-b";
  json cfg = tiny_config("llama", false, DType::F32);
  cfg["hidden_size"] = 48;
  write_model(other, cfg, DType::F32, 32);
  const auto ow = ModelWeights::load(other, LoadOptions(WeightStorage::F32));
  const std::string other_adapter = tmp + "/other-adapter";
  write_peft_adapter(other_adapter, make_adapter(*ow, LoraVariant::DoRA, false, kQV, 33), other);
  std::string msg = error_of([&] { merge_adapter(Job(base, other_adapter, tmp + "/out")); });
  EXPECT_NE(msg.find("--allow-base-mismatch"), std::string::npos) << msg;
  // Allowed, the shapes still do not fit: an error naming the tensor and the shapes.
  msg = error_of([&] { merge_adapter(Job(base, other_adapter, tmp + "/out").allow_base_mismatch(true)); });
  EXPECT_NE(msg.find("shape"), std::string::npos) << msg;
  EXPECT_NE(msg.find("adapter_model.safetensors"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(tmp + "/out"));
  // Same shapes, other name: merged with the flag.
  const std::string twin = tmp + "/renamed-copy";
  fs::copy(base, twin);
  EXPECT_NE(error_of([&] { merge_adapter(Job(twin, adapter, tmp + "/out")); }).find("--allow-base-mismatch"),
            std::string::npos);
  merge_adapter(Job(twin, adapter, tmp + "/out").allow_base_mismatch(true));
  EXPECT_TRUE(fs::exists(tmp + "/out/model.safetensors"));
  EXPECT_TRUE(leftovers(tmp).empty());
}

TEST_F(MergeErrors, UnwritableOutputLeavesNothing) {
  write_file_atomic(tmp + "/a-file", "x");
  const std::string msg = error_of([&] { merge_adapter(Job(base, adapter, tmp + "/a-file/merged")); });
  EXPECT_NE(msg.find(tmp + "/a-file/merged"), std::string::npos) << msg;
  EXPECT_EQ(read_file(tmp + "/a-file"), "x");
  EXPECT_TRUE(leftovers(tmp).empty());
  EXPECT_NE(error_of([&] { merge_adapter(Job(base, tmp + "/nope", tmp + "/o")); }).find(tmp + "/nope"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(tmp + "/o"));
}

TEST_F(MergeErrors, FailureMidWriteRemovesTheTemporaryDirectory) {
  // float16 output while a merged value exceeds half's range: the merge fails while writing,
  // after some tensors are out.
  const std::string out = tmp + "/out";
  const std::string msg = error_of([&] {
    AdapterSet set = make_adapter(*w, LoraVariant::LoRA, false, kQV, 34);
    for (float& b : set.find(1, LinearKind::V)->B) b = 1e5f;
    write_peft_adapter(adapter, set, base);
    merge_adapter(Job(base, adapter, out).dtype(DType::F16));
  });
  EXPECT_NE(msg.find("model.layers.1.self_attn.v_proj.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("float16"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_TRUE(leftovers(tmp).empty());
}

// Runs tests/reference/check_merge.py on (base, adapter, merged) triples; the PyTorch side
// re-states PEFT's merge from the same files.
TEST(MergeReference, PyTorchPeftMergeAgrees) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "no /usr/bin/python3";
  const std::string tmp = test::make_temp_dir("merge-torch");
  std::vector<std::string> args;
  struct Run {
    const char* family;
    bool tied;
    LoraVariant method;
    bool rslora;
    std::optional<DType> dtype;
    uint64_t shard;
  };
  const Run runs[] = {{"qwen2", true, LoraVariant::DoRA, false, std::nullopt, 5'000'000'000},
                      {"llama", false, LoraVariant::LoRA, true, DType::BF16, 7000},
                      {"llama", true, LoraVariant::DoRA, true, DType::F16, 5'000'000'000}};
  int i = 0;
  for (const Run& run : runs) {
    const std::string d = tmp + "/" + std::to_string(i++);
    write_model(d + "/base", tiny_config(run.family, run.tied, DType::F32), DType::F32, 40 + i);
    const auto w = ModelWeights::load(d + "/base", LoadOptions(WeightStorage::F32));
    write_peft_adapter(d + "/adapter", make_adapter(*w, run.method, run.rslora, kAll, 50 + i), d + "/base");
    Job job(d + "/base", d + "/adapter", d + "/merged");
    if (run.dtype) job.dtype(*run.dtype);
    merge_adapter(job.max_shard_bytes(run.shard));
    for (const char* part : {"/base", "/adapter", "/merged"}) args.push_back(d + part);
  }
  std::string cmd = "/usr/bin/python3 '" + test::source_path("tests/reference/check_merge.py") + "'";
  for (const std::string& a : args) cmd += " '" + a + "'";
  cmd += " > '" + tmp + "/check.log' 2>&1";
  const int status = std::system(cmd.c_str());
  const std::string log = read_file(tmp + "/check.log");
  ASSERT_TRUE(WIFEXITED(status)) << log;
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << log;
  EXPECT_EQ(WEXITSTATUS(status), 0) << log;
  std::cout << log;
}

}  // namespace
}  // namespace bidora
