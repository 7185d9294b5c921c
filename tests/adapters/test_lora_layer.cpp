// LoRA / rsLoRA / DoRA layer: forward against a naive double implementation, backward against
// central finite differences of that implementation (norm detached, as PEFT), over f32, bf16
// and NF4 frozen weights, with and without dropout.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "adapter_test_util.h"
#include "adapters/dropout.h"
#include "adapters/lora_layer.h"
#include "core/error.h"
#include "model/linear.h"

namespace bidora {
namespace {

using test::rel_error;
using test::to_f64;

enum class Variant { LoRA, RsLoRA, DoRA };

struct Setup {
  AdapterConfig cfg;
  FrozenMatrix W;
  std::unique_ptr<LoraLayer> layer;
  std::vector<float> x, dy;
  int64_t n = 6, in = 70, out = 9;
  AdapterMode mode;
  WeightTile tile{3 * 70};  // three rows per tile: exercises the tiled paths
  AdapterScratch scratch;
};

std::unique_ptr<Setup> make_setup(Variant v, double dropout, WeightStorage storage, int64_t layer_index = 2) {
  auto s = std::make_unique<Setup>();
  s->cfg.method = v == Variant::DoRA ? LoraVariant::DoRA : LoraVariant::LoRA;
  s->cfg.use_rslora = v == Variant::RsLoRA;
  s->cfg.r = 4;
  s->cfg.alpha = 8;
  s->cfg.dropout = dropout;
  s->W = FrozenMatrix::from_f32(test::random_vec(s->out * s->in, 11, 0.3f), s->out, s->in, storage);
  s->layer = std::make_unique<LoraLayer>(s->cfg, s->W, layer_index, LinearKind::V, 1234, s->tile);
  // Move away from the init point so every term of the formulas is exercised.
  s->layer->B = test::random_vec(s->out * 4, 12, 0.2f);
  for (size_t i = 0; i < s->layer->m.size(); ++i) s->layer->m[i] *= 0.7f + 0.05f * static_cast<float>(i);
  s->x = test::random_vec(s->n * s->in, 13);
  s->dy = test::random_vec(s->n * s->out, 14);
  s->mode.training = true;
  s->mode.dropout = DropoutKey{.seed = 77, .step = 5, .row0 = 0};
  return s;
}

test::NaiveParams naive_of(const Setup& s) {
  const LoraLayer& l = *s.layer;
  test::NaiveParams p{.W = test::dense_weight(s.W),
                      .A = to_f64(l.A),
                      .B = to_f64(l.B),
                      .m = to_f64(l.m),
                      .x = to_f64(s.x),
                      .n = s.n,
                      .in = s.in,
                      .out = s.out,
                      .r = l.rank(),
                      .s = static_cast<double>(l.scaling()),
                      .dora = l.dora(),
                      .mask = {},
                      .norm = {}};
  if (s.mode.training && s.cfg.dropout > 0) {
    const uint64_t stream = dropout_stream(s.mode.dropout, l.layer(), l.kind());
    const float p_drop = static_cast<float>(s.cfg.dropout);
    p.mask.resize(s.n * s.in);
    for (int64_t t = 0; t < s.n; ++t)
      for (int64_t j = 0; j < s.in; ++j)
        p.mask[t * s.in + j] = dropout_keep(stream, 0, t, j, s.in, p_drop) ? 1.0 / (1.0f - p_drop) : 0.0;
  }
  return p;
}

std::vector<float> run_forward(Setup& s, LoraSaved& saved) {
  std::vector<float> y(s.n * s.out);
  linear_forward(s.x.data(), s.n, s.W, nullptr, y.data(), s.tile);
  s.layer->forward(s.x.data(), s.n, s.W, y.data(), s.mode, saved, s.scratch, s.tile);
  return y;
}

using Param = std::tuple<Variant, double, WeightStorage>;

class LayerMaths : public ::testing::TestWithParam<Param> {};

TEST_P(LayerMaths, ForwardMatchesNaiveDouble) {
  auto [variant, p, storage] = GetParam();
  auto s = make_setup(variant, p, storage);
  LoraSaved saved;
  const auto y = run_forward(*s, saved);
  const double err = rel_error(y, test::naive_forward(naive_of(*s)));
  RecordProperty("y", fmt::format("{:.3g}", err));
  EXPECT_LT(err, 2e-6);
  if (p > 0) {  // dropout must really change the output
    auto q = naive_of(*s);
    q.mask.clear();
    EXPECT_GT(rel_error(y, test::naive_forward(q)), 1e-3);
  }
}

TEST_P(LayerMaths, BackwardMatchesFiniteDifferences) {
  auto [variant, p, storage] = GetParam();
  auto s = make_setup(variant, p, storage);
  LoraSaved saved;
  run_forward(*s, saved);
  std::vector<float> dx(s->n * s->in, 123.0f);  // overwritten, not accumulated
  s->layer->backward(s->x.data(), s->dy.data(), s->n, s->W, saved, dx.data(), {}, s->scratch, s->tile);

  // L = Σ dy ⊙ y on the naive forward with the norm held at its current value (detached).
  test::NaiveParams base = naive_of(*s);
  if (base.dora) base.norm = test::naive_norm(base);
  const auto dy = to_f64(s->dy);
  auto loss = [&](const test::NaiveParams& q) {
    const auto y = test::naive_forward(q);
    double l = 0;
    for (size_t e = 0; e < y.size(); ++e) l += dy[e] * y[e];
    return l;
  };
  auto fd = [&](std::vector<double> test::NaiveParams::*field) {
    std::vector<double> g((base.*field).size());
    const double eps = 1e-6;
    for (size_t i = 0; i < g.size(); ++i) {
      test::NaiveParams q = base;
      (q.*field)[i] += eps;
      const double lp = loss(q);
      (q.*field)[i] -= 2 * eps;
      g[i] = (lp - loss(q)) / (2 * eps);
    }
    return g;
  };
  auto check = [&](const char* what, double err) {
    RecordProperty(what, fmt::format("{:.3g}", err));  // reported with --gtest_output=json
    EXPECT_LT(err, 2e-6) << what;
  };
  check("dA", rel_error(s->layer->dA, fd(&test::NaiveParams::A)));
  check("dB", rel_error(s->layer->dB, fd(&test::NaiveParams::B)));
  check("dx", rel_error(dx, fd(&test::NaiveParams::x)));
  if (base.dora) check("dm", rel_error(s->layer->dm, fd(&test::NaiveParams::m)));
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  const auto [v, p, st] = info.param;
  const char* vn = v == Variant::LoRA ? "lora" : v == Variant::RsLoRA ? "rslora" : "dora";
  return std::string(vn) + (p > 0 ? "_dropout_" : "_nodrop_") + storage_name(st);
}

INSTANTIATE_TEST_SUITE_P(All, LayerMaths,
                         ::testing::Combine(::testing::Values(Variant::LoRA, Variant::RsLoRA, Variant::DoRA),
                                            ::testing::Values(0.0, 0.3),
                                            ::testing::Values(WeightStorage::F32, WeightStorage::BF16,
                                                              WeightStorage::NF4)),
                         param_name);

TEST(LoraLayer, ScalingFollowsPeft) {
  AdapterConfig c;
  c.r = 16;
  c.alpha = 32;
  EXPECT_DOUBLE_EQ(c.scaling(), 2.0);
  c.use_rslora = true;
  EXPECT_DOUBLE_EQ(c.scaling(), 8.0);
}

TEST(LoraLayer, KaimingInitIsPeftDistributionAndStartsAsIdentity) {
  AdapterConfig c;
  c.r = 8;
  c.method = LoraVariant::DoRA;
  const int64_t in = 256, out = 40;
  const auto w = test::random_vec(out * in, 3);
  FrozenMatrix W = FrozenMatrix::from_f32(w, out, in, WeightStorage::F32);
  WeightTile tile;
  LoraLayer l(c, W, 0, LinearKind::Q, 99, tile);
  const double bound = 1.0 / 16.0;
  double sum = 0, sq = 0, mx = 0;
  for (float a : l.A) {
    sum += a;
    sq += double(a) * a;
    mx = std::max(mx, std::abs(double(a)));
  }
  const double nA = double(l.A.size());
  EXPECT_LE(mx, bound);
  EXPECT_GT(mx, 0.99 * bound);
  EXPECT_NEAR(sum / nA, 0.0, 0.05 * bound);
  EXPECT_NEAR(sq / nA, bound * bound / 3.0, 0.05 * bound * bound / 3.0);  // U(−b, b) variance
  for (float b : l.B) ASSERT_EQ(b, 0.0f);
  for (int64_t i = 0; i < out; ++i) {
    double n2 = 0;
    for (int64_t j = 0; j < in; ++j) n2 += double(w[i * in + j]) * w[i * in + j];
    EXPECT_NEAR(l.m[i], std::sqrt(n2), 1e-6 * std::sqrt(n2));
  }
  // Same seed, same values; another module, other values.
  LoraLayer again(c, W, 0, LinearKind::Q, 99, tile), other(c, W, 0, LinearKind::K, 99, tile);
  EXPECT_EQ(again.A, l.A);
  EXPECT_NE(other.A, l.A);
  // B = 0 and m = ‖W‖: the adapted output equals the frozen output.
  const int64_t n = 3;
  const auto x = test::random_vec(n * in, 4);
  std::vector<float> y(n * out), base(n * out);
  linear_forward(x.data(), n, W, nullptr, base.data(), tile);
  y = base;
  LoraSaved saved;
  AdapterScratch scratch;
  l.forward(x.data(), n, W, y.data(), AdapterMode{}, saved, scratch, tile);
  EXPECT_LT(rel_error(y, base), 1e-6);
}

TEST(LoraLayer, GaussianInitHasStdOneOverR) {
  AdapterConfig c;
  c.r = 4;
  c.init = AdapterInit::Gaussian;
  FrozenMatrix W = FrozenMatrix::from_f32(test::random_vec(8 * 4096, 3), 8, 4096, WeightStorage::F32);
  WeightTile tile;
  LoraLayer l(c, W, 1, LinearKind::Up, 5, tile);
  double sum = 0, sq = 0;
  for (float a : l.A) {
    sum += a;
    sq += double(a) * a;
  }
  const double nA = double(l.A.size()), mean = sum / nA;
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(std::sqrt(sq / nA - mean * mean), 0.25, 0.25 * 0.02);
}

TEST(LoraLayer, DoraNormWithoutMaterialisingMatchesExplicitRows) {
  for (WeightStorage st : {WeightStorage::F32, WeightStorage::NF4}) {
    auto s = make_setup(Variant::DoRA, 0.0, st);
    s->layer->B = test::random_vec(s->out * 4, 21, 2.0f);  // a large update: the cross terms matter
    std::vector<float> nrm(s->out);
    s->layer->weight_norm(s->W, nrm.data(), s->scratch, s->tile);
    EXPECT_LT(rel_error(nrm, test::naive_norm(naive_of(*s))), 1e-6) << storage_name(st);
  }
}

TEST(LoraLayer, MergedWeightReproducesForward) {
  for (Variant v : {Variant::LoRA, Variant::DoRA}) {
    auto s = make_setup(v, 0.0, WeightStorage::BF16);
    s->mode.training = false;
    LoraSaved saved;
    const auto y = run_forward(*s, saved);
    const auto merged = s->layer->merged_weight(s->W, s->tile);
    std::vector<double> want(s->n * s->out, 0.0);
    for (int64_t t = 0; t < s->n; ++t)
      for (int64_t i = 0; i < s->out; ++i)
        for (int64_t j = 0; j < s->in; ++j)
          want[t * s->out + i] += double(s->x[t * s->in + j]) * merged[i * s->in + j];
    EXPECT_LT(rel_error(y, want), 1e-5);
  }
}

TEST(Dropout, MaskIsReproducibleAndKeyed) {
  const DropoutKey k{.seed = 1, .step = 2, .row0 = 0};
  const uint64_t a = dropout_stream(k, 3, LinearKind::Q);
  EXPECT_EQ(a, dropout_stream(k, 3, LinearKind::Q));
  EXPECT_NE(a, dropout_stream(k, 3, LinearKind::K));
  EXPECT_NE(a, dropout_stream(k, 4, LinearKind::Q));
  EXPECT_NE(a, dropout_stream({.seed = 1, .step = 3, .row0 = 0}, 3, LinearKind::Q));
  EXPECT_NE(a, dropout_stream({.seed = 2, .step = 2, .row0 = 0}, 3, LinearKind::Q));
  const int64_t n = 200, cols = 500;
  std::vector<float> x(n * cols, 1.0f), y1(n * cols), y2(n * cols);
  dropout_apply(x.data(), n, cols, 0.25f, a, 0, y1.data());
  dropout_apply(x.data(), n, cols, 0.25f, a, 0, y2.data());
  EXPECT_EQ(y1, y2);
  int64_t kept = 0;
  for (float v : y1) {
    ASSERT_TRUE(v == 0.0f || v == 1.0f / 0.75f);
    kept += v != 0.0f;
  }
  EXPECT_NEAR(double(kept) / double(n * cols), 0.75, 0.005);
  // Independent elements: neighbours in a row, in a column, and the same element under another
  // layer's or kind's stream (masks of the SplitMix64 sequence at other offsets) agree as often
  // as independent draws do, p² + (1 − p)² = 0.625, and every row keeps about 1 − p.
  std::vector<float> other(n * cols);
  dropout_apply(x.data(), n, cols, 0.25f, dropout_stream(k, 3, LinearKind::K), 0, other.data());
  std::vector<float> next_layer(n * cols);
  dropout_apply(x.data(), n, cols, 0.25f, dropout_stream(k, 4, LinearKind::Q), 0, next_layer.data());
  int64_t same_right = 0, same_below = 0, same_kind = 0, same_layer = 0;
  for (int64_t t = 0; t < n; ++t) {
    int64_t row_kept = 0;
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t i = t * cols + j;
      row_kept += y1[i] != 0.0f;
      if (j + 1 < cols) same_right += (y1[i] != 0.0f) == (y1[i + 1] != 0.0f);
      if (t + 1 < n) same_below += (y1[i] != 0.0f) == (y1[i + cols] != 0.0f);
      same_kind += (y1[i] != 0.0f) == (other[i] != 0.0f);
      same_layer += (y1[i] != 0.0f) == (next_layer[i] != 0.0f);
    }
    EXPECT_NEAR(double(row_kept) / double(cols), 0.75, 0.1) << "row " << t;
  }
  EXPECT_NEAR(double(same_right) / double(n * (cols - 1)), 0.625, 0.01);
  EXPECT_NEAR(double(same_below) / double((n - 1) * cols), 0.625, 0.01);
  EXPECT_NEAR(double(same_kind) / double(n * cols), 0.625, 0.01);
  EXPECT_NEAR(double(same_layer) / double(n * cols), 0.625, 0.01);
  // Rows processed in two chunks (row0 offsets) give the mask of the whole batch.
  std::vector<float> chunked(n * cols);
  dropout_apply(x.data(), 50, cols, 0.25f, a, 0, chunked.data());
  dropout_apply(x.data() + 50 * cols, n - 50, cols, 0.25f, a, 50, chunked.data() + 50 * cols);
  EXPECT_EQ(chunked, y1);
}

// A replayed forward (gradient checkpointing) with the same key reproduces the output exactly.
TEST(Dropout, ReplayedForwardIsBitIdentical) {
  auto s = make_setup(Variant::DoRA, 0.3, WeightStorage::F32);
  LoraSaved a, b;
  const auto y1 = run_forward(*s, a);
  const auto y2 = run_forward(*s, b);
  EXPECT_EQ(y1, y2);
  s->mode.dropout.step += 1;
  const auto y3 = run_forward(*s, b);
  EXPECT_NE(y1, y3);
}

// With p so small that every element is kept and 1/(1 − p) rounds to 1, the dropout path
// (extra frozen GEMM on xd) must agree with the p == 0 path (reusing the base output).
TEST(Dropout, AllKeepMaskEqualsNoDropoutPath) {
  for (Variant v : {Variant::LoRA, Variant::DoRA}) {
    auto drop = make_setup(v, 1e-12, WeightStorage::NF4);
    auto plain = make_setup(v, 0.0, WeightStorage::NF4);
    LoraSaved sd, sp;
    const auto yd = run_forward(*drop, sd);
    const auto yp = run_forward(*plain, sp);
    ASSERT_TRUE(sd.dropped);
    ASSERT_FALSE(sp.dropped);
    EXPECT_LT(rel_error(yd, yp), 1e-6);
    std::vector<float> dxd(drop->n * drop->in), dxp(plain->n * plain->in);
    drop->layer->backward(drop->x.data(), drop->dy.data(), drop->n, drop->W, sd, dxd.data(), {},
                          drop->scratch, drop->tile);
    plain->layer->backward(plain->x.data(), plain->dy.data(), plain->n, plain->W, sp, dxp.data(), {},
                           plain->scratch, plain->tile);
    EXPECT_LT(rel_error(dxd, dxp), 1e-6);
    EXPECT_LT(rel_error(drop->layer->dA, plain->layer->dA), 1e-6);
    EXPECT_LT(rel_error(drop->layer->dB, plain->layer->dB), 1e-6);
    EXPECT_LT(rel_error(drop->layer->dm, plain->layer->dm), 1e-6);
  }
}

TEST(LoraLayer, BackwardWantsMagnitudeOnlyLeavesDirectionsAlone) {
  auto s = make_setup(Variant::DoRA, 0.0, WeightStorage::F32);
  LoraSaved saved;
  run_forward(*s, saved);
  s->layer->backward(s->x.data(), s->dy.data(), s->n, s->W, saved, nullptr,
                     {.directions = false, .magnitude = true}, s->scratch, s->tile);
  for (float g : s->layer->dA) ASSERT_EQ(g, 0.0f);
  for (float g : s->layer->dB) ASSERT_EQ(g, 0.0f);
  double norm = 0;
  for (float g : s->layer->dm) norm += std::abs(g);
  EXPECT_GT(norm, 0.0);
  // Gradients accumulate over calls (micro-batches).
  const auto once = s->layer->dm;
  s->layer->backward(s->x.data(), s->dy.data(), s->n, s->W, saved, nullptr,
                     {.directions = false, .magnitude = true}, s->scratch, s->tile);
  for (size_t i = 0; i < once.size(); ++i) EXPECT_FLOAT_EQ(s->layer->dm[i], 2 * once[i]);
}

TEST(LoraLayer, WrongWeightShapeIsAnError) {
  auto s = make_setup(Variant::LoRA, 0.0, WeightStorage::F32);
  FrozenMatrix other = FrozenMatrix::from_f32(std::vector<float>(4 * 70), 4, 70, WeightStorage::F32);
  LoraSaved saved;
  std::vector<float> y(s->n * 4);
  EXPECT_THROW(s->layer->forward(s->x.data(), s->n, other, y.data(), s->mode, saved, s->scratch, s->tile),
               Error);
}

}  // namespace
}  // namespace bidora
