// An adapter written by bidora loads in the reference's PEFT-format loader and gives the same
// logits. Each case here trains nothing: it gives every adapted linear random, non-zero A and B
// (and, for DoRA, magnitudes away from the row norms, so m / ‖W + sBA‖ ≠ 1 matters), writes the
// adapter with write_peft_adapter into <reference_dir>/peft_export/<case>/ and, next to it,
// bidora's logits for the model's reference batch (peft_export_case.h). tests/reference/check_peft_export.py
// then loads that directory the way PEFT does (adapter_config.json → r, alpha, rsLoRA, DoRA, targets;
// adapter_model.safetensors → A, B, m) and recomputes the logits in PyTorch. CMake runs these
// cases as the FIXTURES_SETUP of that Python test, which therefore always sees this run's files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "adapters/adapter_runtime.h"
#include "adapters/peft_export_case.h"
#include "adapters/peft_io.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "model/reference_cases.h"
#include "test_support.h"

namespace bidora {
namespace {

namespace fs = std::filesystem;

struct ExportCase {
  const char* name;   // directory under <reference_dir>/peft_export
  const char* model;  // tests/reference/model_reference.py case
  LoraVariant method;
  bool rslora;
  int64_t r;
  double alpha;
  std::vector<LinearKind> targets;
};

using enum LinearKind;
using enum LoraVariant;
const std::vector<LinearKind> kAllLinears = {Q, K, V, O, Gate, Up, Down};

// r and alpha are chosen so that alpha / r and alpha / sqrt(r) differ (r ≠ 1): a writer that
// dropped use_rslora, or wrote the wrong alpha, changes the Python side's scaling.
const ExportCase kCases[] = {
    {"llama_lora", "llama_f32", LoRA, false, 4, 8, {Q, V, Gate, Down}},
    {"llama_bias_rslora_all", "llama_bias_linear_rope_f32", LoRA, true, 8, 6, kAllLinears},
    {"qwen2_tied_dora", "qwen2_tied_sharded_f32", DoRA, false, 4, 8, kAllLinears},
    {"qwen3_dora_rslora", "qwen3_headdim_f32", DoRA, true, 4, 4, {Q, K, O, Up, Down}},
    {"mistral_rslora", "mistral_window_f16", LoRA, true, 2, 3, {K, O, Up}},
};

// The case name, rather than gtest's byte dump, in test names and failure messages.
void PrintTo(const ExportCase& c, std::ostream* os) {
  *os << c.name;
}

class PeftExport : public ::testing::TestWithParam<ExportCase> {};

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float d = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

TEST_P(PeftExport, WritesAdapterAndLogits) {
  const ExportCase& c = GetParam();
  const std::string model_dir = test::reference_model_dir(c.model);
  // f32 storage: the Python check compares against f32 weights with a 1e-4 bound.
  auto w = ModelWeights::load(model_dir, LoadOptions(WeightStorage::F32));
  AdapterConfig cfg;
  cfg.method = c.method;
  cfg.r = c.r;
  cfg.alpha = c.alpha;
  cfg.use_rslora = c.rslora;
  cfg.targets = c.targets;
  AdapterSet set(cfg, w->layers(), /*init_seed=*/11);
  ASSERT_EQ(set.all().size(), c.targets.size() * static_cast<size_t>(w->config().num_layers));

  // PEFT's init has B = 0 and m = ‖W‖_row, which would make the adapter an identity and let a
  // mis-ordered or mis-scaled tensor go unnoticed; give every value a random, non-trivial one.
  std::seed_seq seed(c.name, c.name + std::strlen(c.name));  // a different stream per case
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f), ratio(0.6f, 1.4f);
  for (LoraLayer* l : set.all()) {
    const float a_bound = 1.0f / std::sqrt(static_cast<float>(l->in_features()));
    for (float& v : l->A) v = a_bound * uniform(rng);
    for (float& v : l->B) v = 0.2f * normal(rng);
    for (float& v : l->m) v *= ratio(rng);
  }
  for (const LoraLayer* l : set.all()) {
    ASSERT_EQ(l->dora(), c.method == DoRA);
    ASSERT_EQ(l->m.size(), l->dora() ? static_cast<size_t>(l->out_features()) : 0u);
  }

  const TokenBatch batch = test::reference_batch(c.model);
  Decoder dec(*w);
  const std::vector<float> base = dec.logits(batch);
  const std::vector<float> logits = test::write_peft_export_case(c.name, c.model, *w, set);
  const fs::path dir = fs::path(test::reference_dir()) / "peft_export" / c.name;
  ASSERT_TRUE(fs::exists(dir / "adapter_config.json"));
  ASSERT_TRUE(fs::exists(dir / "adapter_model.safetensors"));
  const int64_t vocab = w->config().vocab_size;
  ASSERT_EQ(logits.size(), static_cast<size_t>(batch.tokens() * vocab));

  // The adapter must move the logits far beyond the Python check's 1e-4 bound, or that check
  // could not tell a correct export from one whose adapter is silently ignored.
  for (size_t i = 0; i < logits.size(); ++i) ASSERT_TRUE(std::isfinite(logits[i])) << "logit " << i;
  EXPECT_GT(max_abs_diff(logits, base), 0.05f) << "the adapter barely changes the logits";

  // bidora reads back what it wrote (the PEFT reader itself is tested in test_peft_io): the
  // logits the Python side compares with are those of the adapter as stored.
  AdapterSet back = read_peft_adapter(dir.string(), w->layers());
  AdapterRuntime back_runtime(back);
  dec.set_adapters(&back_runtime);
  const std::vector<float> reread = dec.logits(batch);
  ASSERT_EQ(reread.size(), logits.size());
  ASSERT_EQ(max_abs_diff(reread, logits), 0.0f) << "logits change when the adapter is read back";
}

INSTANTIATE_TEST_SUITE_P(Families, PeftExport, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace bidora
