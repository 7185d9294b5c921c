// Weight-decomposition analysis (ΔM, ΔD per adapted linear; the least-squares slope): checked
// against a naive double-precision re-statement of the DoRA paper's definition on the bundled tiny
// model, on rows built by hand (zero rows, a flipped row, a 45° rotation, a tiny angle), and the
// line fit on points with a known answer.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "adapter_test_util.h"
#include "adapters/adapter_set.h"
#include "adapters/weight_decomposition.h"
#include "core/error.h"
#include "model/weights.h"
#include "test_support.h"

namespace bidora {
namespace {

const std::vector<LinearKind> kAllKinds = {LinearKind::Q,    LinearKind::K,  LinearKind::V,   LinearKind::O,
                                           LinearKind::Gate, LinearKind::Up, LinearKind::Down};

std::unique_ptr<ModelWeights> tiny_model(WeightStorage storage = WeightStorage::BF16) {
  return ModelWeights::load(test::source_path("examples/tiny-qwen2"), LoadOptions(storage));
}

AdapterConfig config(LoraVariant method, bool rslora = false) {
  AdapterConfig c;
  c.method = method;
  c.r = 4;
  c.alpha = 8;
  c.use_rslora = rslora;
  c.targets = kAllKinds;
  return c;
}

// Random A and B (B is zero after PEFT init) and, for DoRA, m = ‖W0‖_row scaled by up to ±20%.
void randomise(AdapterSet& set, uint32_t seed) {
  for (LoraLayer* l : set.all()) {
    l->A = test::random_vec(l->A.size(), seed++, 0.3f);
    l->B = test::random_vec(l->B.size(), seed++, 0.05f);
    if (l->dora()) {
      const auto f = test::random_vec(l->m.size(), seed++, 0.2f);
      for (size_t i = 0; i < l->m.size(); ++i) l->m[i] *= 1.0f + f[i];
    }
  }
}

// The definition, literally: V = W0 + s·B·A materialised in double, cos from dot products.
struct Naive {
  double delta_m, delta_d;
};
Naive naive(const LoraLayer& l, const FrozenMatrix& W) {
  const std::vector<double> w = test::dense_weight(W);
  const int64_t out = W.rows(), in = W.cols(), r = l.rank();
  const double s = l.scaling();
  double sum_m = 0, sum_d = 0;
  for (int64_t i = 0; i < out; ++i) {
    double vw = 0, vv = 0, ww = 0;
    for (int64_t j = 0; j < in; ++j) {
      double v = w[i * in + j];
      for (int64_t k = 0; k < r; ++k) v += s * static_cast<double>(l.B[i * r + k]) * l.A[k * in + j];
      vw += v * w[i * in + j];
      vv += v * v;
      ww += w[i * in + j] * w[i * in + j];
    }
    const double m = l.dora() ? l.m[i] : std::sqrt(vv);
    sum_m += std::abs(m - std::sqrt(ww));
    sum_d += 1.0 - vw / (std::sqrt(vv) * std::sqrt(ww));
  }
  return {sum_m / static_cast<double>(out), sum_d / static_cast<double>(out)};
}

void expect_matches_naive(const AdapterSet& set, const ModelWeights& model) {
  const auto points = decompose_adapter(set, model.layers());
  ASSERT_EQ(points.size(), set.all().size());
  size_t i = 0;
  for (const LoraLayer* l : set.all()) {
    const DecompositionPoint& p = points[i++];
    SCOPED_TRACE(testing::Message() << "layer " << l->layer() << " " << linear_name(l->kind()));
    EXPECT_EQ(p.layer, l->layer());
    EXPECT_EQ(p.kind, l->kind());
    EXPECT_EQ(p.rows, l->out_features());
    EXPECT_EQ(p.learned_magnitude, l->dora());
    EXPECT_EQ(p.zero_rows, 0);
    const Naive n = naive(*l, model.layers()[l->layer()].W(l->kind()));
    EXPECT_GT(n.delta_d, 1e-4);  // the adapter really turned the rows: not a trivial comparison
    EXPECT_GT(n.delta_m, 1e-4);
    EXPECT_NEAR(p.delta_m, n.delta_m, 1e-6 * n.delta_m);
    EXPECT_NEAR(p.delta_d, n.delta_d, 1e-6 * n.delta_d);
  }
}

TEST(WeightDecomposition, DoraMatchesTheDefinitionOnTheTinyModel) {
  const auto model = tiny_model();
  AdapterSet set(config(LoraVariant::DoRA), model->layers(), 1);
  randomise(set, 10);
  expect_matches_naive(set, *model);
}

TEST(WeightDecomposition, LoraAndRsLoraMatchTheDefinition) {
  const auto model = tiny_model();
  for (bool rslora : {false, true}) {
    SCOPED_TRACE(rslora ? "rsLoRA" : "LoRA");
    AdapterSet set(config(LoraVariant::LoRA, rslora), model->layers(), 2);
    randomise(set, 20);
    expect_matches_naive(set, *model);
  }
}

TEST(WeightDecomposition, QuantizedWeightsAreAnalysedAsDequantised) {
  // NF4 goes through the row-tile path (no f32 data to use in place).
  const auto model = tiny_model(WeightStorage::NF4);
  AdapterSet set(config(LoraVariant::DoRA), model->layers(), 3);
  randomise(set, 30);
  expect_matches_naive(set, *model);
}

TEST(WeightDecomposition, TileSizeDoesNotChangeTheResult) {
  const auto model = tiny_model();
  AdapterSet set(config(LoraVariant::DoRA), model->layers(), 4);
  randomise(set, 40);
  const LoraLayer& l = *set.find(1, LinearKind::Gate);  // [192, 64]
  const FrozenMatrix& W = model->layers()[1].W(LinearKind::Gate);
  WeightTile big, small(64 * 5);  // 5 rows per tile: 39 tiles, the last one partial
  const DecompositionPoint a = decompose_linear(l, W, big), b = decompose_linear(l, W, small);
  EXPECT_NEAR(a.delta_m, b.delta_m, 1e-12 * a.delta_m);
  EXPECT_NEAR(a.delta_d, b.delta_d, 1e-12 * a.delta_d);
}

TEST(WeightDecomposition, ZeroAdapterHasNoChange) {
  const auto model = tiny_model();
  // Fresh PEFT init: B = 0, so V = W0; DoRA's m = ‖W0‖_row (rounded to float).
  AdapterSet lora(config(LoraVariant::LoRA), model->layers(), 5);
  for (const DecompositionPoint& p : decompose_adapter(lora, model->layers())) {
    EXPECT_EQ(p.delta_m, 0.0);
    EXPECT_EQ(p.delta_d, 0.0);
  }
  AdapterSet dora(config(LoraVariant::DoRA), model->layers(), 5);
  for (const DecompositionPoint& p : decompose_adapter(dora, model->layers())) {
    EXPECT_LT(p.delta_m, 1e-6);  // |float(‖W0‖) − ‖W0‖|: half an ulp of norms below 10
    EXPECT_EQ(p.delta_d, 0.0);
  }
}

TEST(WeightDecomposition, ModuleFilterKeepsLayerKindOrder) {
  const auto model = tiny_model();
  AdapterSet set(config(LoraVariant::LoRA), model->layers(), 6);
  randomise(set, 60);
  const std::vector<LinearKind> kinds = {LinearKind::V, LinearKind::Q};
  const auto points = decompose_adapter(set, model->layers(), kinds);
  ASSERT_EQ(points.size(), 4u);
  const std::pair<int64_t, LinearKind> want[] = {
      {0, LinearKind::Q}, {0, LinearKind::V}, {1, LinearKind::Q}, {1, LinearKind::V}};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(points[i].layer, want[i].first);
    EXPECT_EQ(points[i].kind, want[i].second);
  }
  EXPECT_TRUE(decompose_adapter(set, model->layers(), std::vector<LinearKind>{}).size() == 14u);
}

// A LoRA layer on a hand-made 4 × 4 weight with s = alpha / r = 1.
LoraLayer hand_layer(const FrozenMatrix& W, std::vector<float> A, std::vector<float> B, int64_t r) {
  AdapterConfig c;
  c.r = r;
  c.alpha = static_cast<double>(r);
  c.targets = {LinearKind::Q};
  WeightTile tile;
  LoraLayer l(c, W, 0, LinearKind::Q, 0, tile);
  l.A = std::move(A);
  l.B = std::move(B);
  return l;
}

TEST(WeightDecomposition, HandBuiltRowsAndZeroRowConventions) {
  // Rows: W0_0 = 0 and V_0 = 0 (unchanged: 1 − cos = 0); W0_1 = e0, V_1 = 0 (the adapter cancels
  // it: cos taken as 0); W0_2 = e1, V_2 = −e1 (flipped: 1 − cos = 2, same norm); W0_3 = e2,
  // V_3 = e2 + e3 (45°: 1 − cos = 1 − 1/√2, norm √2).
  const FrozenMatrix W =
      FrozenMatrix::from_f32({0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0}, 4, 4, WeightStorage::F32);
  const LoraLayer l = hand_layer(W, {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1},  // A [3, 4]: e0, e1, e3
                                 {0, 0, 0, -1, 0, 0, 0, -2, 0, 0, 0, 1},   // B [4, 3]
                                 3);
  WeightTile tile;
  const DecompositionPoint p = decompose_linear(l, W, tile);
  EXPECT_EQ(p.zero_rows, 2);
  EXPECT_NEAR(p.delta_d, (0.0 + 1.0 + 2.0 + (1.0 - 1.0 / std::sqrt(2.0))) / 4.0, 1e-15);
  EXPECT_NEAR(p.delta_m, (0.0 + 1.0 + 0.0 + (std::sqrt(2.0) - 1.0)) / 4.0, 1e-15);
}

TEST(WeightDecomposition, TinyAnglesKeepFullPrecision) {
  // V = e0 + ε·e1: 1 − cos = 1 − 1/√(1 + ε²) ≈ ε²/2 = 5e-11. Computed as 1 − v·w/(‖v‖‖w‖) in
  // double this keeps only ~6 digits; the analysis must keep ~15.
  const FrozenMatrix W = FrozenMatrix::from_f32({1, 0, 0, 0}, 1, 4, WeightStorage::F32);
  const float eps = 1e-5f;
  const LoraLayer l = hand_layer(W, {0, 1, 0, 0}, {eps}, 1);
  WeightTile tile;
  const DecompositionPoint p = decompose_linear(l, W, tile);
  const double e = eps, root = std::sqrt(1.0 + e * e);
  EXPECT_NEAR(p.delta_d, e * e / ((1.0 + root) * root), 1e-13 * p.delta_d);
  EXPECT_NEAR(p.delta_m, e * e / (root + 1.0), 1e-13 * p.delta_m);
}

TEST(WeightDecomposition, NonFiniteAdapterValuesGiveNaNAndShapesAreChecked) {
  const FrozenMatrix W = FrozenMatrix::from_f32({1, 0, 0, 0, 0, 1, 0, 0}, 2, 4, WeightStorage::F32);
  const LoraLayer l = hand_layer(W, {0, 0, 1, 0}, {std::numeric_limits<float>::quiet_NaN(), 0}, 1);
  WeightTile tile;
  const DecompositionPoint p = decompose_linear(l, W, tile);
  EXPECT_TRUE(std::isnan(p.delta_d));
  EXPECT_TRUE(std::isnan(p.delta_m));
  const FrozenMatrix other = FrozenMatrix::from_f32(std::vector<float>(12, 1.0f), 3, 4, WeightStorage::F32);
  try {
    decompose_linear(l, other, tile);
    ADD_FAILURE() << "expected Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "layer 0 q_proj: frozen weight is [3, 4], adapter expects [2, 4]");
  }
}

TEST(LineFit, ExactLine) {
  const std::vector<double> x = {0, 0.5, 1, 2, 3.5}, y = {1, 0, -1, -3, -6};  // y = −2x + 1
  const LineFit f = fit_line(x, y);
  EXPECT_EQ(f.points, 5);
  EXPECT_EQ(f.skipped, 0);
  ASSERT_TRUE(f.slope && f.intercept && f.correlation);
  EXPECT_NEAR(*f.slope, -2.0, 1e-14);
  EXPECT_NEAR(*f.intercept, 1.0, 1e-14);
  EXPECT_DOUBLE_EQ(*f.correlation, -1.0);
}

TEST(LineFit, KnownScatter) {
  // Centred: dx = (−1.5, −0.5, 0.5, 1.5), dy = (−0.5, −1.5, 1.5, 0.5): Sxy = 3, Sxx = Syy = 5.
  const LineFit f = fit_line(std::vector<double>{1, 2, 3, 4}, std::vector<double>{2, 1, 4, 3});
  ASSERT_TRUE(f.slope && f.correlation);
  EXPECT_DOUBLE_EQ(*f.slope, 0.6);
  EXPECT_DOUBLE_EQ(*f.intercept, 1.0);
  EXPECT_DOUBLE_EQ(*f.correlation, 0.6);
}

TEST(LineFit, UndefinedRatherThanNaN) {
  // Constant x: no slope, not NaN or inf.
  const LineFit c = fit_line(std::vector<double>{0.25, 0.25, 0.25}, std::vector<double>{1, 2, 3});
  EXPECT_EQ(c.points, 3);
  EXPECT_FALSE(c.slope);
  EXPECT_FALSE(c.intercept);
  EXPECT_FALSE(c.correlation);
  // Equal up to rounding is constant too.
  const LineFit r = fit_line(std::vector<double>{0.1, 0.1 + 1e-17, 0.1}, std::vector<double>{1, 2, 3});
  EXPECT_FALSE(r.slope);
  // One point, or none.
  EXPECT_FALSE(fit_line(std::vector<double>{1}, std::vector<double>{2}).slope);
  EXPECT_EQ(fit_line(std::vector<double>{}, std::vector<double>{}).points, 0);
  // Constant y: slope 0, correlation undefined.
  const LineFit y = fit_line(std::vector<double>{1, 2, 3}, std::vector<double>{5, 5, 5});
  ASSERT_TRUE(y.slope);
  EXPECT_EQ(*y.slope, 0.0);
  EXPECT_FALSE(y.correlation);
}

TEST(LineFit, NonFinitePairsAreSkipped) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const LineFit f = fit_line(std::vector<double>{0, nan, 1, 2, 5}, std::vector<double>{1, 3, -1, -3, inf});
  EXPECT_EQ(f.points, 3);
  EXPECT_EQ(f.skipped, 2);
  ASSERT_TRUE(f.slope);
  EXPECT_NEAR(*f.slope, -2.0, 1e-14);
  EXPECT_THROW(fit_line(std::vector<double>{1, 2}, std::vector<double>{1}), Error);
}

}  // namespace
}  // namespace bidora
