// BiDoRA's direction orthogonality regulariser: the value against a naive double statement of
// ‖diag(1/n)(W + sBA) · (…)ᵀ − I‖_F, the A/B gradients against central finite differences of it
// (through the non-detached row norm), over both Gram orientations, rsLoRA, bf16 and NF4 weights;
// closed-form cases; and the set version's γ/K averaging.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <tuple>

#include "adapter_test_util.h"
#include "adapters/adapter_set.h"
#include "adapters/direction_regulariser.h"
#include "adapters/lora_layer.h"
#include "core/error.h"
#include "model/linear.h"

namespace bidora {
namespace {

using test::rel_error;
using test::to_f64;

struct Naive {
  std::vector<double> W, A, B;  // [out, in], [r, in], [out, r]
  int64_t out, in, r;
  double s;
};

Naive naive_of(const LoraLayer& l, const FrozenMatrix& W) {
  return {
      test::dense_weight(W),           to_f64(l.A), to_f64(l.B), l.out_features(), l.in_features(), l.rank(),
      static_cast<double>(l.scaling())};
}

// ‖D Dᵀ − I‖_F with V = W + sBA materialised, D = V with unit rows (a zero row stays zero), and
// the out × out Gram formed entry by entry.
double naive_penalty(const Naive& p) {
  std::vector<double> D(p.out * p.in);
  for (int64_t i = 0; i < p.out; ++i) {
    double n2 = 0;
    for (int64_t j = 0; j < p.in; ++j) {
      double v = p.W[i * p.in + j];
      for (int64_t k = 0; k < p.r; ++k) v += p.s * p.B[i * p.r + k] * p.A[k * p.in + j];
      D[i * p.in + j] = v;
      n2 += v * v;
    }
    const double inv = n2 > 0 ? 1.0 / std::sqrt(n2) : 0.0;
    for (int64_t j = 0; j < p.in; ++j) D[i * p.in + j] *= inv;
  }
  double f = 0;
  for (int64_t i = 0; i < p.out; ++i)
    for (int64_t k = 0; k < p.out; ++k) {
      double dot = 0;
      for (int64_t j = 0; j < p.in; ++j) dot += D[i * p.in + j] * D[k * p.in + j];
      const double e = dot - (i == k ? 1.0 : 0.0);
      f += e * e;
    }
  return std::sqrt(f);
}

std::vector<double> finite_difference(const Naive& base, std::vector<double> Naive::*field) {
  std::vector<double> g((base.*field).size());
  const double eps = 1e-6;
  for (size_t i = 0; i < g.size(); ++i) {
    Naive q = base;
    (q.*field)[i] += eps;
    const double fp = naive_penalty(q);
    (q.*field)[i] -= 2 * eps;
    g[i] = (fp - naive_penalty(q)) / (2 * eps);
  }
  return g;
}

enum class Variant { LoRA, RsLoRA, DoRA };

struct Setup {
  AdapterConfig cfg;
  FrozenMatrix W;
  std::unique_ptr<LoraLayer> layer;
  WeightTile tile;
  RegulariserScratch scratch{64};  // 3 to 5 rows per gradient tile: exercises the tiled path
};

// A layer away from PEFT's init (random B), so the s·BA term is as large as W's.
std::unique_ptr<Setup> make_setup(Variant v, int64_t out, int64_t in, WeightStorage storage) {
  auto s = std::make_unique<Setup>();
  s->cfg.method = v == Variant::DoRA ? LoraVariant::DoRA : LoraVariant::LoRA;
  s->cfg.use_rslora = v == Variant::RsLoRA;
  s->cfg.r = 4;
  s->cfg.alpha = 8;
  s->W = FrozenMatrix::from_f32(test::random_vec(out * in, 21, 0.3f), out, in, storage);
  s->layer = std::make_unique<LoraLayer>(s->cfg, s->W, 1, LinearKind::Up, 5678, s->tile);
  s->layer->B = test::random_vec(out * 4, 22, 0.2f);
  return s;
}

using Param = std::tuple<Variant, std::pair<int64_t, int64_t>, WeightStorage>;

class PenaltyMaths : public ::testing::TestWithParam<Param> {};

TEST_P(PenaltyMaths, ValueMatchesNaiveDouble) {
  const auto [variant, shape, storage] = GetParam();
  auto s = make_setup(variant, shape.first, shape.second, storage);
  const std::vector<float> dA0 = test::random_vec(s->layer->A.size(), 31),
                           dB0 = test::random_vec(s->layer->B.size(), 32);
  s->layer->dA = dA0;
  s->layer->dB = dB0;
  const double R = orthogonality_penalty(*s->layer, s->W, 1.0, false, s->scratch);
  const double want = naive_penalty(naive_of(*s->layer, s->W));
  RecordProperty("R_rel_err", fmt::format("{:.3g}", std::abs(R - want) / want));
  EXPECT_GT(want, 0.5);  // far from orthonormal: a real value to compare
  EXPECT_NEAR(R, want, 1e-6 * want);
  // Value only: gradients untouched.
  EXPECT_EQ(s->layer->dA, dA0);
  EXPECT_EQ(s->layer->dB, dB0);
}

TEST_P(PenaltyMaths, GradientsMatchFiniteDifferencesAndAccumulate) {
  const auto [variant, shape, storage] = GetParam();
  auto s = make_setup(variant, shape.first, shape.second, storage);
  LoraLayer& l = *s->layer;
  // Pre-filled gradients (what the loss's backward left there) must keep their contribution.
  const std::vector<float> dA0 = test::random_vec(l.A.size(), 41), dB0 = test::random_vec(l.B.size(), 42);
  l.dA = dA0;
  l.dB = dB0;
  const double w = 0.375;  // the γ/K the set version passes
  const double R = orthogonality_penalty(l, s->W, w, true, s->scratch);
  EXPECT_NEAR(R, naive_penalty(naive_of(l, s->W)), 1e-6 * R);  // same value with gradients on

  const Naive base = naive_of(l, s->W);
  auto added = [&](const std::vector<float>& now, const std::vector<float>& before) {
    std::vector<double> d(now.size());
    for (size_t i = 0; i < d.size(); ++i) d[i] = (static_cast<double>(now[i]) - before[i]) / w;
    return d;
  };
  const double errA = rel_error(added(l.dA, dA0), finite_difference(base, &Naive::A));
  const double errB = rel_error(added(l.dB, dB0), finite_difference(base, &Naive::B));
  RecordProperty("dA_rel_err", fmt::format("{:.3g}", errA));
  RecordProperty("dB_rel_err", fmt::format("{:.3g}", errB));
  EXPECT_LT(errA, 1e-5);
  EXPECT_LT(errB, 1e-5);
  for (float g : l.dm) ASSERT_EQ(g, 0.0f);  // DoRA's magnitude is not part of the direction
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  const auto [v, shape, st] = info.param;
  const char* vn = v == Variant::LoRA ? "lora" : v == Variant::RsLoRA ? "rslora" : "dora";
  return fmt::format("{}_{}x{}_{}", vn, shape.first, shape.second, storage_name(st));
}

// [out, in]: in < out (Dᵀ D Gram, tiled dR/dD), in > out and square (D Dᵀ Gram, low-rank gradient).
INSTANTIATE_TEST_SUITE_P(All, PenaltyMaths,
                         ::testing::Combine(::testing::Values(Variant::LoRA, Variant::RsLoRA, Variant::DoRA),
                                            ::testing::Values(std::pair<int64_t, int64_t>{20, 12},
                                                              std::pair<int64_t, int64_t>{24, 7},
                                                              std::pair<int64_t, int64_t>{9, 20},
                                                              std::pair<int64_t, int64_t>{16, 16}),
                                            ::testing::Values(WeightStorage::F32, WeightStorage::BF16,
                                                              WeightStorage::NF4)),
                         param_name);

// A LoRA layer at PEFT's init (B = 0), so V = W exactly.
struct InitLayer {
  FrozenMatrix W;
  std::unique_ptr<LoraLayer> layer;
  RegulariserScratch scratch;
  InitLayer(std::vector<float> w, int64_t out, int64_t in) {
    AdapterConfig c;
    c.r = 2;
    c.alpha = 4;
    W = FrozenMatrix::from_f32(std::move(w), out, in, WeightStorage::F32);
    WeightTile tile;
    layer = std::make_unique<LoraLayer>(c, W, 0, LinearKind::Q, 1, tile);
  }
};

TEST(DirectionRegulariser, ClosedFormValues) {
  // Identical rows: D Dᵀ is all ones, ‖D Dᵀ − I‖ = √(out·(out − 1)), in both Gram orientations.
  for (auto [out, in] : {std::pair<int64_t, int64_t>{5, 3}, std::pair<int64_t, int64_t>{3, 7}}) {
    std::vector<float> w(out * in);
    for (int64_t i = 0; i < out; ++i)
      for (int64_t j = 0; j < in; ++j)
        w[i * in + j] = (1.0f + j) * (i + 1.0f);  // same direction, other norms
    InitLayer t(w, out, in);
    EXPECT_NEAR(orthogonality_penalty(*t.layer, t.W, 1.0, false, t.scratch),
                std::sqrt(double(out * (out - 1))), 1e-6)
        << out << "x" << in;
  }
  // Rows (1, 0) and (1, 1)/√2 · 3: off-diagonal cos 45° twice, R = √(2 · ½) = 1.
  InitLayer t({1.0f, 0.0f, 3.0f, 3.0f}, 2, 2);
  EXPECT_NEAR(orthogonality_penalty(*t.layer, t.W, 1.0, false, t.scratch), 1.0, 1e-7);
}

TEST(DirectionRegulariser, OrthogonalRowsGiveZeroAndNoGradient) {
  // Rows along distinct axes with different norms: D = I exactly, R = 0, and the 1/R of the
  // gradient must not turn into NaN.
  const int64_t n = 6;
  std::vector<float> w(n * n, 0.0f);
  for (int64_t i = 0; i < n; ++i) w[i * n + (i + 2) % n] = 0.5f + static_cast<float>(i);
  InitLayer t(w, n, n);
  t.layer->dA.assign(t.layer->dA.size(), 0.25f);
  const double R = orthogonality_penalty(*t.layer, t.W, 1.0, true, t.scratch);
  EXPECT_EQ(R, 0.0);
  for (float g : t.layer->dA) ASSERT_EQ(g, 0.25f);
  for (float g : t.layer->dB) ASSERT_EQ(g, 0.0f);
}

TEST(DirectionRegulariser, ZeroRowHasNoDirectionAndStaysFinite) {
  const int64_t out = 4, in = 6;
  std::vector<float> w = test::random_vec(out * in, 51);
  std::fill(w.begin() + 2 * in, w.begin() + 3 * in, 0.0f);
  InitLayer t(w, out, in);
  const double R = orthogonality_penalty(*t.layer, t.W, 1.0, true, t.scratch);
  EXPECT_NEAR(R, naive_penalty(naive_of(*t.layer, t.W)), 1e-6 * R);  // the zero row counts its −1
  for (float g : t.layer->dA) ASSERT_TRUE(std::isfinite(g));
  for (int64_t k = 0; k < t.layer->rank(); ++k) EXPECT_EQ(t.layer->dB[2 * t.layer->rank() + k], 0.0f);
}

TEST(DirectionRegulariser, WrongWeightShapeNamesTheLayer) {
  InitLayer t(test::random_vec(4 * 6, 1), 4, 6);
  const FrozenMatrix other = FrozenMatrix::from_f32(test::random_vec(6 * 4, 2), 6, 4, WeightStorage::F32);
  try {
    orthogonality_penalty(*t.layer, other, 1.0, false, t.scratch);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 0 q_proj"), std::string::npos) << e.what();
  }
}

// Two decoder layers, all seven linears adapted (Qwen-like shapes, shrunk).
std::vector<LayerWeights> small_model() {
  const int64_t out[] = {16, 8, 8, 16, 24, 24, 16}, in[] = {16, 16, 16, 16, 16, 16, 24};
  std::vector<LayerWeights> layers(2);
  for (int l = 0; l < 2; ++l)
    for (int k = 0; k < kNumLinearKinds; ++k)
      layers[l].linear[k] = FrozenMatrix::from_f32(test::random_vec(out[k] * in[k], 300 + 10 * l + k, 0.2f),
                                                   out[k], in[k], WeightStorage::BF16);
  return layers;
}

AdapterSet make_set(const std::vector<LayerWeights>& layers) {
  AdapterConfig c;
  c.method = LoraVariant::DoRA;
  c.r = 4;
  c.alpha = 8;
  c.targets = {LinearKind::Q,    LinearKind::K,  LinearKind::V,   LinearKind::O,
               LinearKind::Gate, LinearKind::Up, LinearKind::Down};
  AdapterSet set(c, layers, 9);
  uint32_t seed = 400;
  for (LoraLayer* l : set.all()) l->B = test::random_vec(l->B.size(), seed++, 0.2f);
  return set;
}

TEST(DirectionRegulariser, SetIsGammaOverKTimesTheSumOfLayers) {
  const auto layers = small_model();
  AdapterSet set = make_set(layers);
  ASSERT_EQ(set.all().size(), 14u);
  const double gamma = 0.3, per = gamma / 14.0;
  RegulariserScratch scratch;
  const double R = direction_regulariser(set, layers, gamma, true, scratch);

  double naive = 0, layered = 0;
  AdapterSet again = make_set(layers);  // same values, fresh gradients
  for (LoraLayer* l : again.all()) {
    const FrozenMatrix& W = layers[l->layer()].W(l->kind());
    naive += naive_penalty(naive_of(*l, W));
    layered += orthogonality_penalty(*l, W, per, true, scratch);
  }
  EXPECT_GT(R, 0.0);
  EXPECT_NEAR(R, per * naive, 1e-6 * R);
  EXPECT_DOUBLE_EQ(R, per * layered);
  for (LoraLayer* l : set.all()) {
    const LoraLayer* m = again.find(l->layer(), l->kind());
    ASSERT_EQ(l->dA, m->dA) << l->layer() << " " << linear_name(l->kind());
    ASSERT_EQ(l->dB, m->dB) << l->layer() << " " << linear_name(l->kind());
  }
  // And tied to the maths: γ/K times the finite-difference gradient, on a wide and a tall module.
  for (auto [li, kind] : {std::pair{1, LinearKind::Down}, std::pair{0, LinearKind::Gate}}) {
    const LoraLayer* l = set.find(li, kind);
    const Naive base = naive_of(*l, layers[li].W(kind));
    std::vector<double> fdA = finite_difference(base, &Naive::A), fdB = finite_difference(base, &Naive::B);
    for (double& g : fdA) g *= per;
    for (double& g : fdB) g *= per;
    EXPECT_LT(rel_error(l->dA, fdA), 1e-5) << linear_name(kind);
    EXPECT_LT(rel_error(l->dB, fdB), 1e-5) << linear_name(kind);
  }
}

TEST(DirectionRegulariser, ZeroWeightTouchesNothing) {
  const auto layers = small_model();
  AdapterSet set = make_set(layers);
  for (LoraLayer* l : set.all()) l->dA.assign(l->dA.size(), 1.5f);
  RegulariserScratch scratch;
  EXPECT_EQ(direction_regulariser(set, layers, 0.0, true, scratch), 0.0);
  for (LoraLayer* l : set.all()) {
    for (float g : l->dA) ASSERT_EQ(g, 1.5f);
    for (float g : l->dB) ASSERT_EQ(g, 0.0f);
  }
  // Value only (as for logging) leaves them alone too.
  EXPECT_GT(direction_regulariser(set, layers, 1e-5, false, scratch), 0.0);
  for (LoraLayer* l : set.all())
    for (float g : l->dB) ASSERT_EQ(g, 0.0f);
}

TEST(DirectionRegulariser, RejectsBadWeightAndMismatchedLayers) {
  auto layers = small_model();
  AdapterSet set = make_set(layers);
  RegulariserScratch scratch;
  try {
    direction_regulariser(set, layers, -1e-5, true, scratch);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("training.bidora.orth_reg"), std::string::npos) << e.what();
  }
  EXPECT_THROW(direction_regulariser(set, layers, std::nan(""), true, scratch), Error);
  std::vector<LayerWeights> one;
  one.push_back(std::move(layers[0]));
  EXPECT_THROW(direction_regulariser(set, one, 1e-5, true, scratch), Error);
}

}  // namespace
}  // namespace bidora
