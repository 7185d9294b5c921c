// The KV-cache forward with LoRA and DoRA adapters (AdapterRuntime in inference mode, through the
// LinearAdapters hook) against Decoder::logits with the same adapters, on tiny random llama,
// qwen2 and qwen3 models. The adapters look trained: non-zero B on every linear and DoRA
// magnitudes moved away from the weight norms, so both the LoRA product and DoRA's rescaling
// change the logits (checked: they differ from the plain model's). Then the generation adapters
// (generate/inference_adapters.h) in place of AdapterRuntime in the cached forward, and directly.
#include <gtest/gtest.h>

#include <random>

#include "adapters/adapter_runtime.h"
#include "adapters/adapter_set.h"
#include "core/error.h"
#include "generate/inference_adapters.h"
#include "model/kv_cache_check.h"
#include "model/tiny_model.h"
#include "test_support.h"

namespace bidora {
namespace {

AdapterSet trained_adapter(const ModelWeights& w, LoraVariant method, uint32_t seed) {
  AdapterConfig cfg;
  cfg.method = method;
  cfg.r = 4;
  cfg.alpha = 8;
  cfg.dropout = 0.1;  // inference mode must ignore it
  cfg.targets = {LinearKind::Q,    LinearKind::K,  LinearKind::V,   LinearKind::O,
                 LinearKind::Gate, LinearKind::Up, LinearKind::Down};
  AdapterSet set(cfg, w.layers(), seed);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (LoraLayer* l : set.all()) {
    for (float& b : l->B) b = 0.2f * u(gen);
    for (float& m : l->m) m *= 1.0f + 0.2f * u(gen);
  }
  return set;
}

struct Case {
  const char* family;
  LoraVariant method;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.family << "_" << method_name(c.method);
}

class KvCacheAdapters : public ::testing::TestWithParam<Case> {};

TEST_P(KvCacheAdapters, PrefillThenDecodeStepsMatchFullForward) {
  test::TinyModelSpec s;
  s.family = GetParam().family;
  if (s.family == "qwen3") s.head_dim = 32;
  s.seed = 21;
  const std::string dir = test::write_tiny_model(test::make_temp_dir("kv-adapters"), s);
  auto w = ModelWeights::load(dir, LoadOptions(WeightStorage::F32));
  AdapterSet set = trained_adapter(*w, GetParam().method, 5);
  AdapterRuntime rt(set);
  AdapterMode inference;
  inference.training = false;
  rt.set_mode(inference);
  const auto ids = test::random_ids(13, w->config().vocab_size, 31);

  const std::vector<float> plain = test::full_logits(*w, nullptr, ids);
  const std::vector<float> adapted = test::full_logits(*w, &rt, ids);
  double diff = 0, scale = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::abs(plain[i] - adapted[i])));
    scale = std::max(scale, static_cast<double>(std::abs(plain[i])));
  }
  ASSERT_GT(diff, 1e-2 * scale) << "the adapter barely changes the logits: the test would not see it";

  const std::string name = std::string(s.family) + " " + method_name(GetParam().method);
  test::expect_cached_logits_match(*w, &rt, ids, 5, 1e-5, name);
  test::expect_cached_logits_match(*w, &rt, ids, 3, 1e-5, name + " chunked", {6, 1, 2});
  // The generation adapters (DoRA's norms computed once) against the training runtime.
  InferenceAdapters ia(set);
  test::expect_cached_logits_match(*w, &rt, ids, 5, 1e-5, name + " inference adapters", {}, 0, &ia);
}

// InferenceAdapters against AdapterRuntime in inference mode on the same linears: equal bit for
// bit, for one row and several, and again after the DoRA norms were cached.
TEST(InferenceAdapters, EqualAdapterRuntimeBitForBit) {
  test::TinyModelSpec s;
  s.family = "qwen2";
  const std::string dir = test::write_tiny_model(test::make_temp_dir("inference-adapters"), s);
  auto w = ModelWeights::load(dir, LoadOptions(WeightStorage::BF16));
  for (LoraVariant method : {LoraVariant::LoRA, LoraVariant::DoRA}) {
    AdapterSet set = trained_adapter(*w, method, 9);
    AdapterRuntime rt(set);
    AdapterMode inference;
    inference.training = false;
    rt.set_mode(inference);
    InferenceAdapters ia(set);
    EXPECT_TRUE(ia.adapted(1, LinearKind::Down));
    std::mt19937 gen(4);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (int pass = 0; pass < 2; ++pass)
      for (int64_t n : {1, 5})
        for (LinearKind k : {LinearKind::Q, LinearKind::Down}) {
          const FrozenMatrix& W = w->layers()[1].W(k);
          std::vector<float> x(static_cast<size_t>(n * W.cols()));
          for (float& v : x) v = u(gen);
          std::vector<float> base(static_cast<size_t>(n * W.rows()));
          WeightTile tile;
          linear_forward(x.data(), n, W, nullptr, base.data(), tile);
          std::vector<float> a = base, b = base;
          rt.forward(1, k, W, x.data(), n, a.data());
          ia.forward(1, k, W, x.data(), n, b.data());
          EXPECT_EQ(a, b) << method_name(method) << " " << linear_name(k) << " n=" << n << " pass " << pass;
          EXPECT_NE(a, base);
        }
    const FrozenMatrix& W = w->layers()[0].W(LinearKind::Q);
    std::vector<float> x(W.cols()), dy(W.rows()), dx(W.cols());
    EXPECT_THROW(ia.backward(0, LinearKind::Q, W, x.data(), dy.data(), 1, dx.data()), Error);
  }
}

INSTANTIATE_TEST_SUITE_P(Families, KvCacheAdapters,
                         ::testing::Values(Case{"llama", LoraVariant::LoRA}, Case{"llama", LoraVariant::DoRA},
                                           Case{"qwen2", LoraVariant::LoRA}, Case{"qwen2", LoraVariant::DoRA},
                                           Case{"qwen3", LoraVariant::LoRA},
                                           Case{"qwen3", LoraVariant::DoRA}),
                         [](const auto& info) {
                           return std::string(info.param.family) + "_" + method_name(info.param.method);
                         });

}  // namespace
}  // namespace bidora
