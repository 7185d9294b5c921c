// PEFT adapter directory: write → read round trip, key spellings, dtypes, and malformed input.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "adapter_test_util.h"
#include "adapters/peft_io.h"
#include "core/error.h"
#include "core/files.h"
#include "core/half.h"
#include "io/safetensors.h"
#include "test_support.h"

namespace bidora {
namespace {

namespace fs = std::filesystem;

// float → IEEE half, round to nearest even (finite values below 65504 only: test data).
uint16_t to_f16(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const float a = std::abs(f);
  if (a < 6.103515625e-05f) return sign | static_cast<uint16_t>(std::nearbyint(a / 5.960464477539063e-08f));
  const uint32_t bits = std::bit_cast<uint32_t>(a);
  uint32_t exp = (bits >> 23) - 127 + 15, man = bits & 0x7fffffu;
  man = (man + 0xfffu + ((man >> 13) & 1u)) >> 13;
  if (man == 0x400u) {
    ++exp;
    man = 0;
  }
  return sign | static_cast<uint16_t>(exp << 10 | man);
}

// Two layers of a small GQA model: q/o [32, 32], k/v [16, 32], gate/up [48, 32], down [32, 48].
std::vector<LayerWeights> small_model(WeightStorage st = WeightStorage::BF16) {
  const int64_t out[] = {32, 16, 16, 32, 48, 48, 32}, in[] = {32, 32, 32, 32, 32, 32, 48};
  std::vector<LayerWeights> layers(2);
  for (int l = 0; l < 2; ++l)
    for (int k = 0; k < kNumLinearKinds; ++k)
      layers[l].linear[k] =
          FrozenMatrix::from_f32(test::random_vec(out[k] * in[k], 100 + 10 * l + k, 0.2f), out[k], in[k], st);
  return layers;
}

AdapterConfig all_linear(LoraVariant m) {
  AdapterConfig c;
  c.method = m;
  c.r = 4;
  c.alpha = 8;
  c.dropout = 0.1;
  c.targets = {LinearKind::Down, LinearKind::Q,    LinearKind::K, LinearKind::V,
               LinearKind::O,    LinearKind::Gate, LinearKind::Up};
  return c;
}

// Gives every parameter a distinct trained-looking value.
void perturb(AdapterSet& set) {
  uint32_t seed = 1;
  for (LoraLayer* l : set.all()) {
    l->A = test::random_vec(l->A.size(), seed++);
    l->B = test::random_vec(l->B.size(), seed++);
    if (l->dora()) l->m = test::random_vec(l->m.size(), seed++);
  }
}

// Rewrites adapter_model.safetensors of `dir` with `edit` applied to a name → tensor map.
struct RawTensor {
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
using RawMap = std::map<std::string, RawTensor>;

RawMap read_raw(const std::string& path) {
  const SafetensorsFile f(path);
  RawMap m;
  for (const TensorView& t : f.tensors()) m[t.name] = {t.dtype, t.shape, {t.data, t.data + t.nbytes}};
  return m;
}

void write_raw(const std::string& path, const RawMap& m) {
  SafetensorsWriter w;
  for (const auto& [name, t] : m) w.add(name, t.dtype, t.shape, t.bytes);
  w.write(path);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

class PeftIo : public ::testing::Test {
 protected:
  void SetUp() override {
    layers = small_model();
    tmp = test::make_temp_dir("peft");
    dir = tmp + "/adapter";
  }
  std::vector<LayerWeights> layers;
  std::string tmp, dir;
};

TEST_F(PeftIo, RoundTripLoraAndDora) {
  for (LoraVariant m : {LoraVariant::LoRA, LoraVariant::DoRA}) {
    AdapterSet set(all_linear(m), layers, 42);
    perturb(set);
    write_peft_adapter(m == LoraVariant::DoRA ? dir + "/" : dir, set, "org/tiny");
    const AdapterSet back = read_peft_adapter(dir, layers);
    EXPECT_EQ(back.config().method, m);
    EXPECT_EQ(back.config().r, 4);
    EXPECT_DOUBLE_EQ(back.config().scaling(), 2.0);
    EXPECT_DOUBLE_EQ(back.config().dropout, 0.1);
    ASSERT_EQ(back.all().size(), 14u);
    for (const LoraLayer* l : set.all()) {
      const LoraLayer* b = back.find(l->layer(), l->kind());
      ASSERT_NE(b, nullptr);
      EXPECT_EQ(b->A, l->A);
      EXPECT_EQ(b->B, l->B);
      EXPECT_EQ(b->m, l->m);
    }
    // The file holds exactly the PEFT keys and shapes, F32, metadata {"format": "pt"}.
    const SafetensorsFile st(dir + "/adapter_model.safetensors");
    EXPECT_EQ(st.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
    EXPECT_EQ(st.tensors().size(), m == LoraVariant::DoRA ? 42u : 28u);
    const TensorView& a = st.get("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight");
    EXPECT_EQ(a.shape, (std::vector<int64_t>{4, 48}));
    EXPECT_EQ(a.dtype, DType::F32);
    EXPECT_EQ(st.get("base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight").shape,
              (std::vector<int64_t>{16, 4}));
    if (m == LoraVariant::DoRA) {
      EXPECT_EQ(st.get("base_model.model.model.layers.0.self_attn.v_proj.lora_magnitude_vector").shape,
                (std::vector<int64_t>{16}));
    }
  }
  // Overwriting replaced the previous adapter and left no temporary directories behind.
  int entries = 0;
  for (const auto& e : fs::directory_iterator(tmp)) entries += e.path().filename() == "adapter" ? 1 : 100;
  EXPECT_EQ(entries, 1);
}

TEST_F(PeftIo, ConfigHasCoreKeysSortedWithoutTrailingNewline) {
  AdapterConfig c = all_linear(LoraVariant::LoRA);
  c.alpha = 16;
  c.init = AdapterInit::Gaussian;
  const std::string text = adapter_config_json(c, "x/y");
  EXPECT_NE(text.back(), '\n');
  const auto j = nlohmann::json::parse(text);
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys.size(), 19u);
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  EXPECT_EQ(j["init_lora_weights"], "gaussian");
  EXPECT_TRUE(j["lora_alpha"].is_number_integer());
  EXPECT_EQ(j["target_modules"][0], "down_proj");
  EXPECT_NE(text.find("\n  \"bias\": \"none\",\n"), std::string::npos);
  // Round trip of the settings.
  const AdapterConfig back = parse_adapter_config(text, "cfg");
  EXPECT_EQ(back.init, AdapterInit::Gaussian);
  EXPECT_EQ(back.targets.size(), 7u);
  EXPECT_DOUBLE_EQ(back.alpha, 16.0);
}

TEST_F(PeftIo, AcceptsBf16F16AndDefaultSuffix) {
  AdapterSet set(all_linear(LoraVariant::DoRA), layers, 1);
  perturb(set);
  write_peft_adapter(dir, set, "m");
  RawMap raw = read_raw(dir + "/adapter_model.safetensors"), edited;
  int i = 0;
  for (auto& [name, t] : raw) {
    std::vector<float> v(t.bytes.size() / 4);
    std::memcpy(v.data(), t.bytes.data(), t.bytes.size());
    RawTensor e{i % 2 ? DType::BF16 : DType::F16, t.shape, std::vector<uint8_t>(v.size() * 2)};
    for (size_t k = 0; k < v.size(); ++k) {
      const uint16_t h = i % 2 ? f32_to_bf16(v[k]) : to_f16(v[k]);
      std::memcpy(e.bytes.data() + 2 * k, &h, 2);
    }
    std::string key = name;
    if (i % 3 == 0) {  // PEFT's in-memory spelling with the adapter name
      if (auto p = key.find(".lora_A.weight"); p != std::string::npos)
        key.replace(p, 14, ".lora_A.default.weight");
      if (auto p = key.find(".lora_B.weight"); p != std::string::npos)
        key.replace(p, 14, ".lora_B.default.weight");
    }
    edited[key] = std::move(e);
    ++i;
  }
  write_raw(dir + "/adapter_model.safetensors", edited);
  const AdapterSet back = read_peft_adapter(dir, layers);
  for (const LoraLayer* l : set.all()) {
    const LoraLayer* b = back.find(l->layer(), l->kind());
    EXPECT_LT(test::rel_error(b->A, l->A), 1e-2);  // bf16 / f16 rounding
    EXPECT_LT(test::rel_error(b->B, l->B), 1e-2);
    EXPECT_LT(test::rel_error(b->m, l->m), 1e-2);
  }
}

TEST_F(PeftIo, MalformedAdaptersGivePreciseErrors) {
  AdapterConfig c = all_linear(LoraVariant::DoRA);
  c.targets = {LinearKind::Q, LinearKind::V};
  AdapterSet set(c, layers, 1);
  write_peft_adapter(dir, set, "m");
  const std::string st_path = dir + "/adapter_model.safetensors", cfg_path = dir + "/adapter_config.json";
  const RawMap good = read_raw(st_path);
  const std::string good_cfg = read_file(cfg_path);
  auto expect_error = [&](const RawMap& m, const std::string& cfg_text,
                          const std::vector<std::string>& parts) {
    write_raw(st_path, m);
    write_file_atomic(cfg_path, cfg_text);
    const std::string msg = error_of([&] { read_peft_adapter(dir, layers); });
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  };
  const std::string q0 = "base_model.model.model.layers.0.self_attn.q_proj.";
  {  // wrong shape
    RawMap m = good;
    m[q0 + "lora_A.weight"].shape = {2, 64};
    expect_error(m, good_cfg,
                 {"adapter_model.safetensors", q0 + "lora_A.weight", "[2, 64]", "expected [4, 32]"});
  }
  {  // missing tensor
    RawMap m = good;
    m.erase(q0 + "lora_magnitude_vector");
    expect_error(m, good_cfg, {"missing tensor", q0 + "lora_magnitude_vector"});
  }
  {  // a module that is not targeted
    RawMap m = good;
    m["base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"] = m[q0 + "lora_A.weight"];
    expect_error(m, good_cfg, {"k_proj", "not in target_modules"});
  }
  {  // unknown tensor, layer out of range, duplicate spellings, integer dtype
    RawMap m = good;
    m["base_model.model.lm_head.weight"] = m[q0 + "lora_A.weight"];
    expect_error(m, good_cfg, {"unexpected tensor", "lm_head"});
    m = good;
    m["base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight"] = m[q0 + "lora_A.weight"];
    expect_error(m, good_cfg, {"layer 7", "2 layers"});
    m = good;
    m[q0 + "lora_A.default.weight"] = m[q0 + "lora_A.weight"];
    expect_error(m, good_cfg, {"duplicates"});
    m = good;
    m[q0 + "lora_B.weight"].dtype = DType::I32;
    expect_error(m, good_cfg, {q0 + "lora_B.weight", "dtype I32", "expected F32, BF16 or F16"});
  }
  // Config problems.
  expect_error(good, "{\"r\": 4, \"target_modules\": \"q_proj|v_proj\"}",
               {"adapter_config.json", "target_modules"});
  expect_error(good, "{\"r\": 4, \"target_modules\": [\"qkv\"]}", {"\"qkv\"", "not one of"});
  expect_error(good, "{\"r\": 0, \"target_modules\": [\"q_proj\"]}", {"r must be a positive"});
  expect_error(good, "{\"r\": 4, \"target_modules\": [\"q_proj\"], \"peft_type\": \"IA3\"}",
               {"peft_type", "IA3"});
  expect_error(good, "{\"r\": 4, \"target_modules\": [\"q_proj\"], \"rank_pattern\": {\"q\": 8}}",
               {"rank_pattern"});
  expect_error(good, "{\"r\": 4, \"target_modules\": [\"q_proj\"], \"bias\": \"all\"}", {"bias"});
  // Absent keys take PEFT's defaults (r = 8, q_proj + v_proj), which this r = 4 file contradicts.
  expect_error(good, "{\"use_dora\": true}", {q0 + "lora_A.weight", "expected [8, 32]"});
  expect_error(good, "{\"r\": 4, ", {"adapter_config.json"});
  expect_error(good, "{\"r\": \"four\", \"target_modules\": [\"q_proj\"]}", {"adapter_config.json", "r"});
  // A missing directory names the file.
  EXPECT_NE(error_of([&] { read_peft_adapter(tmp + "/nope", layers); }).find("adapter_config.json"),
            std::string::npos);
}

}  // namespace
}  // namespace bidora
