// The decoder's backward pass, with and without gradient checkpointing, checked end to end: a
// test adapter adds a dense trainable delta P to chosen linears (y += x Pᵀ); its analytic
// gradient, which flows back through every layer above it (attention, RoPE, norms, MLP, chunked
// loss), must equal central finite differences of the summed loss; and both modes must give the
// same loss and gradients bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <tuple>

#include <nlohmann/json.hpp>

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
  // Stateless (backward gets x from the decoder): nothing to keep. Recorded so the tests can
  // check what the decoder announces and which forwards it runs.
  void set_pass(Pass p) override { pass = p; }
  Pass pass = Pass::kForward;
  std::map<std::pair<int64_t, int>, int> forwards;
  void forward(int64_t layer, LinearKind k, const FrozenMatrix&, const float* x, int64_t n,
               float* y) override {
    ++forwards[{layer, static_cast<int>(k)}];
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

// (reference model, gradient checkpointing)
class DecoderBackward : public ::testing::TestWithParam<std::tuple<const char*, bool>> {};

TEST_P(DecoderBackward, AdapterGradientsMatchFiniteDifferences) {
  const auto [name, checkpointing] = GetParam();
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
  dec.set_gradient_checkpointing(checkpointing);

  const LossSums trained = dec.forward_backward(b, 1.0f);
  using Pass = LinearAdapters::Pass;
  EXPECT_EQ(delta.pass, checkpointing ? Pass::kCheckpointedTraining : Pass::kStoredTraining);
  // A checkpoint replay runs every adapted linear of its layer again but for down_proj, whose
  // state the first forward kept; the gradients below still match finite differences.
  for (const auto& [key, count] : delta.forwards)
    EXPECT_EQ(count, checkpointing && LinearKind(key.second) != LinearKind::Down ? 2 : 1)
        << "layer " << key.first << " " << linear_name(LinearKind(key.second));
  EXPECT_EQ(delta.forwards.size(), delta.params.size());
  const LossSums plain = dec.loss(b);
  EXPECT_EQ(delta.pass, Pass::kForward);  // a plain forward keeps nothing for a backward
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
  const auto [name, checkpointing] = GetParam();
  auto w = ModelWeights::load(test::reference_model_dir(name), LoadOptions(WeightStorage::F32));
  const TokenBatch b = test::reference_batch(name);
  DenseDelta delta;
  delta.add(*w, 0, LinearKind::Up, 9);
  Decoder dec(*w);
  dec.set_adapters(&delta);
  dec.set_gradient_checkpointing(checkpointing);
  dec.forward_backward(b, 1.0f);
  const std::vector<float> once = delta.params.begin()->second.grad;
  dec.forward_backward(b, 0.5f);  // accumulates on top: 1.5× in total
  const std::vector<float>& twice = delta.params.begin()->second.grad;
  for (size_t i = 0; i < once.size(); ++i)
    ASSERT_NEAR(twice[i], 1.5f * once[i], 1e-5f * (1 + std::abs(once[i])));
}

// Without checkpointing the backward reads every layer's stored activations instead of a
// replay; both must agree exactly (same kernels on the same inputs), for the loss, every adapter
// gradient and the gradient reaching the embeddings. Also across batches of different sizes on
// one decoder (the store is laid out for the largest batch seen) and after switching modes.
void expect_checkpointing_on_off_agree(const ModelWeights& w, const TokenBatch& full,
                                       const std::string& name) {
  TokenBatch first_row = full;  // a smaller batch: the reference batch's first row
  first_row.rows = 1;
  for (auto* v : {&first_row.input_ids, &first_row.position_ids, &first_row.labels}) v->resize(full.seq_len);
  const int64_t last = w.config().num_layers - 1;
  DenseDelta delta;
  delta.add(w, 0, LinearKind::K, 21);
  delta.add(w, 0, LinearKind::Gate, 22);
  delta.add(w, last, LinearKind::Q, 23);
  delta.add(w, last, LinearKind::Down, 24);

  struct Result {
    double loss;
    std::vector<std::vector<float>> grads;
    std::vector<float> d_embeddings;
  };
  auto run = [&](Decoder& dec, const TokenBatch& b) {
    for (auto& [key, P] : delta.params) std::fill(P.grad.begin(), P.grad.end(), 0.0f);
    Result r;
    r.loss = dec.forward_backward(b, 0.25f, &r.d_embeddings).sum;
    for (auto& [key, P] : delta.params) r.grads.push_back(P.grad);
    return r;
  };
  auto expect_same = [&](const Result& a, const Result& c, const char* what) {
    EXPECT_EQ(a.loss, c.loss) << name << " " << what;
    ASSERT_EQ(a.grads.size(), c.grads.size());
    for (size_t i = 0; i < a.grads.size(); ++i)
      EXPECT_EQ(a.grads[i], c.grads[i]) << name << " " << what << " adapter " << i;
    EXPECT_EQ(a.d_embeddings, c.d_embeddings) << name << " " << what;
    float gmax = 0;
    for (const auto& g : a.grads)
      for (float v : g) gmax = std::max(gmax, std::abs(v));
    EXPECT_GT(gmax, 0.0f) << what;  // a comparison of zeros would prove nothing
  };

  Decoder on(w), off(w);
  on.set_adapters(&delta);
  off.set_adapters(&delta);
  off.set_gradient_checkpointing(false);
  EXPECT_TRUE(on.gradient_checkpointing());
  EXPECT_FALSE(off.gradient_checkpointing());
  const Result on_full = run(on, full), on_row = run(on, first_row);
  expect_same(on_full, run(off, full), "full batch");
  expect_same(on_row, run(off, first_row), "smaller batch after a larger one");
  off.loss(full);  // a plain forward in between must not disturb the next training pass
  expect_same(on_full, run(off, full), "after a plain forward");
  off.set_gradient_checkpointing(true);
  expect_same(on_full, run(off, full), "switched back on");

  // The store costs what layer_floats_per_token says, for every layer; checkpointing keeps none.
  const int64_t n = full.tokens(), L = w.config().num_layers;
  const int64_t store = L * n * off.layer_floats_per_token() * static_cast<int64_t>(sizeof(float));
  EXPECT_GE(off.buffer_bytes() - on.buffer_bytes(), store);
  EXPECT_LT(off.buffer_bytes() - on.buffer_bytes(), store + store / 10);
}

class DecoderCheckpointing : public ::testing::TestWithParam<const char*> {};

TEST_P(DecoderCheckpointing, OnAndOffAgreeBitwise) {
  const std::string name = GetParam();
  auto w = ModelWeights::load(test::reference_model_dir(name), LoadOptions(WeightStorage::F32));
  expect_checkpointing_on_off_agree(*w, test::reference_batch(name), name);
}

// Qwen2 with use_sliding_window from layer 1 on: layer 0 attends to whole documents and layer 1
// to a window of 4, so each layer's backward needs its own key_start (without checkpointing no
// replay refills it). The reference batch's rows are longer than the window.
TEST(DecoderCheckpointingMixedWindows, OnAndOffAgreeBitwise) {
  namespace fs = std::filesystem;
  const std::string base = "qwen2_tied_sharded_f32";
  const fs::path src = test::reference_model_dir(base), dir = test::make_temp_dir("mixed-windows");
  for (const auto& e : fs::directory_iterator(src))
    if (e.path().filename() != "config.json")  // absolute: the reference dir may be given relative
      fs::create_symlink(fs::absolute(e.path()), dir / e.path().filename());
  std::ifstream in(src / "config.json");
  nlohmann::json cfg = nlohmann::json::parse(in);
  cfg["use_sliding_window"] = true;
  cfg["max_window_layers"] = 1;
  std::ofstream(dir / "config.json") << cfg.dump();
  auto w = ModelWeights::load(dir.string(), LoadOptions(WeightStorage::F32));
  ASSERT_FALSE(w->config().window_for_layer(0).has_value());
  ASSERT_EQ(w->config().window_for_layer(1), 4);
  const TokenBatch b = test::reference_batch(base);
  ASSERT_GT(b.seq_len, 4);
  expect_checkpointing_on_off_agree(*w, b, "qwen2 windows from layer 1");
}

constexpr const char* kFamilies[] = {"llama_bias_linear_rope_f32", "qwen3_headdim_f32", "mistral_window_f16",
                                     "qwen2_tied_sharded_f32"};

INSTANTIATE_TEST_SUITE_P(Families, DecoderBackward,
                         ::testing::Combine(::testing::ValuesIn(kFamilies), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) ? "_checkpointed" : "_stored");
                         });

INSTANTIATE_TEST_SUITE_P(Families, DecoderCheckpointing, ::testing::ValuesIn(kFamilies),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace bidora
