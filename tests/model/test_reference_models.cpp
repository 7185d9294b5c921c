// The whole decoder against the PyTorch reference (tests/reference/model_reference.py): tiny
// random models of every family, tied and untied, sharded, f32/bf16/f16 checkpoints, packed and
// unpacked rows, every RoPE scaling, sliding windows.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <tuple>

#include "io/safetensors.h"
#include "model/decoder.h"
#include "model/reference_cases.h"
#include "test_support.h"

namespace bidora {
namespace {

struct Case {
  std::string name;
  std::string model_dir;
  std::unique_ptr<SafetensorsFile> ref;
  TokenBatch batch;

  std::vector<float> f32(const std::string& key) const {
    const TensorView& t = ref->get(key);
    std::vector<float> v(t.numel());
    tensor_to_f32(t, v.data(), ref->path());
    return v;
  }
  bool has(const std::string& key) const { return ref->find(key) != nullptr; }
};

Case load_case(const std::string& name) {
  Case c;
  c.name = name;
  c.model_dir = test::reference_model_dir(name);
  c.ref = std::make_unique<SafetensorsFile>(test::reference_case_path(name));
  c.batch = test::reference_batch(*c.ref);
  return c;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

const char* kCases[] = {
    "llama_f32",       "llama_bias_linear_rope_f32", "llama3_rope_params_bf16", "qwen2_tied_sharded_f32",
    "qwen2_yarn_bf16", "qwen3_headdim_f32",          "mistral_window_f16"};

class ReferenceModel : public ::testing::TestWithParam<const char*> {};

// f32 storage reproduces the checkpoint exactly: logits within 1e-4 of PyTorch f32.
TEST_P(ReferenceModel, F32LogitsAndLossMatchPyTorch) {
  Case c = load_case(GetParam());
  auto w = ModelWeights::load(c.model_dir, LoadOptions(WeightStorage::F32));
  Decoder dec(*w);
  const auto logits = dec.logits(c.batch);
  const float err = max_abs_diff(logits, c.f32("logits"));
  RecordProperty("max_abs_logit_error", std::to_string(err));
  EXPECT_LT(err, 1e-4f) << c.name;
  const LossSums loss = dec.loss(c.batch);
  EXPECT_NEAR(loss.mean(), c.f32("loss")[0], 1e-5) << c.name;
}

// bf16 storage: matrices rounded to bf16 (exact for bf16 checkpoints), maths in f32. Against the
// same computation in PyTorch the error stays at f32 level (< 1e-4). Against the exact f32 model,
// bidora's bf16 mode must be at least as close as transformers running with
// torch_dtype=bfloat16, whose every op rounds to bf16 (documented gap: a few % of max |logit|).
TEST_P(ReferenceModel, Bf16StorageMatchesPyTorch) {
  Case c = load_case(GetParam());
  auto w = ModelWeights::load(c.model_dir, LoadOptions(WeightStorage::BF16));
  Decoder dec(*w);
  const auto logits = dec.logits(c.batch);
  const float err = max_abs_diff(logits, c.f32("logits_wbf16"));
  EXPECT_LT(err, 1e-4f) << c.name;
  const auto exact = c.f32("logits");
  const float ours = max_abs_diff(logits, exact);
  const float hf_bf16 = max_abs_diff(c.f32("logits_bf16_compute"), exact);
  RecordProperty("bf16_storage_error_vs_f32", std::to_string(ours));
  RecordProperty("hf_bf16_compute_error_vs_f32", std::to_string(hf_bf16));
  EXPECT_LE(ours, hf_bf16) << c.name;
}

// NF4 (bitsandbytes, double quantisation) and int8 (blockwise) storage: the reference
// dequantises with its own implementation of the same formats, so the logits agree at f32
// level; the quantisation error itself (vs the exact model) is reported, and bounded loosely to
// catch a broken dequantisation: relative RMS logit error < 30% for NF4 (measured 18-23%: ≈ 4 bits per
// weight on 2-layer 64-wide models) and < 3% for int8 (measured 1.2-1.6%).
TEST_P(ReferenceModel, QuantisedStorageMatchesPyTorch) {
  Case c = load_case(GetParam());
  const auto exact = c.f32("logits");
  for (auto [storage, key, bound] : {std::tuple{WeightStorage::NF4, "logits_wnf4", 0.3},
                                     std::tuple{WeightStorage::INT8, "logits_wint8", 0.03}}) {
    auto w = ModelWeights::load(c.model_dir, LoadOptions(storage));
    Decoder dec(*w);
    const auto logits = dec.logits(c.batch);
    const float vs_reference = max_abs_diff(logits, c.f32(key));
    RecordProperty(std::string(storage_name(storage)) + "_max_abs_error_vs_reference",
                   std::to_string(vs_reference));
    EXPECT_LT(vs_reference, 2e-4f) << c.name << " " << storage_name(storage);
    // Relative RMS error of the logits against the unquantised model.
    double num = 0, den = 0;
    for (size_t i = 0; i < exact.size(); ++i) {
      num += (logits[i] - exact[i]) * (logits[i] - exact[i]);
      den += exact[i] * exact[i];
    }
    const double rel = std::sqrt(num / den);
    RecordProperty(std::string(storage_name(storage)) + "_relative_rms_error_vs_exact", std::to_string(rel));
    EXPECT_LT(rel, bound) << c.name << " " << storage_name(storage);
  }
}

INSTANTIATE_TEST_SUITE_P(AllFamilies, ReferenceModel, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param); });

TEST(ReferenceModel, PackedRowEqualsSeparateDocuments) {
  // Row 1 of every case is packed; the reference computes each document on its own. This
  // checks directly that the packed row's logits equal those of the documents run alone.
  Case c = load_case("llama_f32");
  auto w = ModelWeights::load(c.model_dir, LoadOptions(WeightStorage::F32));
  Decoder dec(*w);
  const auto packed = dec.logits(c.batch);
  const int64_t T = c.batch.seq_len, V = w->config().vocab_size;
  int64_t start = 0;
  for (int64_t t = 1; t <= T; ++t) {
    if (t < T && c.batch.position_ids[T + t] != 0) continue;
    TokenBatch doc;
    doc.rows = 1;
    doc.seq_len = t - start;
    doc.input_ids.assign(c.batch.input_ids.begin() + T + start, c.batch.input_ids.begin() + T + t);
    const auto alone = dec.logits(doc);
    for (int64_t i = 0; i < doc.seq_len * V; ++i) ASSERT_NEAR(alone[i], packed[(T + start) * V + i], 1e-5);
    start = t;
  }
}

}  // namespace
}  // namespace bidora
