// The decoder's checkpointed backward pass, checked end to end: a test adapter adds a dense
// trainable delta P to chosen linears (y += x Pᵀ); its analytic gradient, which flows back
// through every layer above it (attention, RoPE, norms, MLP, chunked loss), must equal central
// finite differences of the summed loss.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "core/backend.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "model/reference_cases.h"
#include "test_support.h"

namespace bidora {
namespace {

class DenseDelta final : public LinearAdapters {
 public:
  struct Param {
    int64_t out = 0, in = 0;
    std::vector<float> p, grad;
  };
  std::map<std::pair<int64_t, int>, Param> params;

  void add(const ModelWeights& w, int64_t layer, LinearKind k, uint32_t seed) {
    const FrozenMatrix& W = w.layers()[layer].W(k);
    Param& P = params[{layer, static_cast<int>(k)}];
    P.out = W.rows();
    P.in = W.cols();
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 0.05f);
    P.p.resize(P.out * P.in);
    for (auto& v : P.p) v = nd(rng);
    P.grad.assign(P.p.size(), 0.0f);
  }
  bool adapted(int64_t layer, LinearKind k) const override {
    return params.count({layer, static_cast<int>(k)}) > 0;
  }
  void forward(int64_t layer, LinearKind k, const FrozenMatrix&, const float* x, int64_t n,
               float* y) override {
    const Param& P = params.at({layer, static_cast<int>(k)});
    sgemm(false, true, n, P.out, P.in, 1.0f, x, P.in, P.p.data(), P.in, 1.0f, y, P.out);
  }
  void backward(int64_t layer, LinearKind k, const FrozenMatrix& W, const float* x, const float* dy,
                int64_t n, float* dx) override {
    Param& P = params.at({layer, static_cast<int>(k)});
    WeightTile tile;
    linear_backward_input(dy, n, W, dx, 0.0f, tile);
    sgemm(false, false, n, P.in, P.out, 1.0f, dy, P.out, P.p.data(), P.in, 1.0f, dx, P.in);
    sgemm(true, false, P.out, P.in, n, 1.0f, dy, P.out, x, P.in, 1.0f, P.grad.data(), P.in);
  }
};

class DecoderBackward : public ::testing::TestWithParam<const char*> {};

TEST_P(DecoderBackward, AdapterGradientsMatchFiniteDifferences) {
  const std::string name = GetParam();
  auto w = ModelWeights::load(test::reference_model_dir(name), LoadOptions(WeightStorage::F32));
  const TokenBatch b = test::reference_batch(name);
  DenseDelta delta;
  // Deltas in the first layer (their gradient crosses every layer) and in the last one.
  const int64_t last = w->config().num_layers - 1;
  delta.add(*w, 0, LinearKind::Q, 1);
  delta.add(*w, 0, LinearKind::V, 2);
  delta.add(*w, 0, LinearKind::Down, 3);
  delta.add(*w, last, LinearKind::K, 4);
  delta.add(*w, last, LinearKind::O, 5);
  delta.add(*w, last, LinearKind::Gate, 6);
  delta.add(*w, last, LinearKind::Up, 7);
  Decoder dec(*w);
  dec.set_adapters(&delta);

  const LossSums trained = dec.forward_backward(b, 1.0f);
  const LossSums plain = dec.loss(b);
  EXPECT_NEAR(trained.sum, plain.sum, 1e-9 * std::abs(plain.sum));
  EXPECT_EQ(trained.count, plain.count);

  std::mt19937 rng(11);
  for (auto& [key, P] : delta.params) {
    float gmax = 0;
    for (float g : P.grad) gmax = std::max(gmax, std::abs(g));
    ASSERT_GT(gmax, 0.0f) << "no gradient reached layer " << key.first << " "
                          << linear_name(LinearKind(key.second));
    std::uniform_int_distribution<size_t> pick(0, P.p.size() - 1);
    for (int trial = 0; trial < 6; ++trial) {
      const size_t i = trial == 0
                           ? std::max_element(P.grad.begin(), P.grad.end(),
                                              [](float a, float c) { return std::abs(a) < std::abs(c); }) -
                                 P.grad.begin()
                           : pick(rng);
      const float saved = P.p[i], eps = 2e-3f;
      P.p[i] = saved + eps;
      const double up = dec.loss(b).sum;
      P.p[i] = saved - eps;
      const double down = dec.loss(b).sum;
      P.p[i] = saved;
      const double fd = (up - down) / (2.0 * eps);
      EXPECT_NEAR(P.grad[i], fd, 2e-3 * gmax + 1e-4)
          << name << " layer " << key.first << " " << linear_name(LinearKind(key.second)) << " element " << i;
    }
  }
}

TEST_P(DecoderBackward, GradScaleScalesGradientsAndAccumulates) {
  const std::string name = GetParam();
  auto w = ModelWeights::load(test::reference_model_dir(name), LoadOptions(WeightStorage::F32));
  const TokenBatch b = test::reference_batch(name);
  DenseDelta delta;
  delta.add(*w, 0, LinearKind::Up, 9);
  Decoder dec(*w);
  dec.set_adapters(&delta);
  dec.forward_backward(b, 1.0f);
  const std::vector<float> once = delta.params.begin()->second.grad;
  dec.forward_backward(b, 0.5f);  // accumulates on top: 1.5× in total
  const std::vector<float>& twice = delta.params.begin()->second.grad;
  for (size_t i = 0; i < once.size(); ++i)
    ASSERT_NEAR(twice[i], 1.5f * once[i], 1e-5f * (1 + std::abs(once[i])));
}

INSTANTIATE_TEST_SUITE_P(Families, DecoderBackward,
                         ::testing::Values("llama_bias_linear_rope_f32", "qwen3_headdim_f32",
                                           "mistral_window_f16", "qwen2_tied_sharded_f32"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace bidora
