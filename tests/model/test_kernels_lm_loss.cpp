// Fused chunked lm_head + cross-entropy against a naive double implementation that builds the
// full logits and log-softmax: the loss sum/count and dhidden, for chunk sizes that do not
// divide the token count or the vocabulary, F32 and BF16 heads, ignored targets, large logits
// and invalid targets.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "model/lm_loss.h"
#include "test_kernels_support.h"

namespace bidora {
namespace {

struct RefLoss {
  double sum = 0;
  int64_t count = 0;
  std::vector<double> dhidden;
};

// Full logits [n, V] in double, log-softmax, −log p(target); dhidden = grad_scale · Σ_v
// (softmax_v − [v = target]) W_v for counted rows.
RefLoss ref_loss(const std::vector<double>& hidden, int64_t n, const std::vector<double>& w, int64_t V,
                 int64_t H, const std::vector<int32_t>& targets, double grad_scale) {
  RefLoss r;
  r.dhidden.assign(n * H, 0.0);
  std::vector<double> logits(V);
  for (int64_t i = 0; i < n; ++i) {
    if (targets[i] == kIgnoreIndex) continue;
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t v = 0; v < V; ++v) {
      double s = 0;
      for (int64_t h = 0; h < H; ++h) s += hidden[i * H + h] * w[v * H + h];
      logits[v] = s;
      mx = std::max(mx, s);
    }
    double sum = 0;
    for (int64_t v = 0; v < V; ++v) sum += std::exp(logits[v] - mx);
    const double lse = mx + std::log(sum);
    r.sum += lse - logits[targets[i]];
    ++r.count;
    for (int64_t v = 0; v < V; ++v) {
      const double d = grad_scale * (std::exp(logits[v] - lse) - (v == targets[i] ? 1.0 : 0.0));
      for (int64_t h = 0; h < H; ++h) r.dhidden[i * H + h] += d * w[v * H + h];
    }
  }
  return r;
}

struct Problem {
  int64_t n, V, H;
  std::vector<float> hidden, w;
  std::vector<int32_t> targets;
};

// Every third target ignored; the first counted targets are 0 and V − 1 (the chunk edges).
Problem make_problem(int64_t n, int64_t V, int64_t H, float hidden_scale, uint32_t seed) {
  Problem p{n,
            V,
            H,
            kt::random_floats(n * H, seed, -hidden_scale, hidden_scale),
            kt::random_floats(V * H, seed + 1),
            std::vector<int32_t>(n)};
  std::mt19937 rng(seed + 2);
  for (int64_t i = 0; i < n; ++i) p.targets[i] = i % 3 == 2 ? kIgnoreIndex : static_cast<int32_t>(rng() % V);
  p.targets[0] = 0;
  if (n > 1) p.targets[1] = static_cast<int32_t>(V - 1);
  return p;
}

std::vector<double> stored(const std::vector<float>& w, WeightStorage st) {
  std::vector<double> d(w.size());
  for (size_t i = 0; i < w.size(); ++i) d[i] = st == WeightStorage::BF16 ? round_to_bf16(w[i]) : w[i];
  return d;
}

// A workspace whose chunks are `token_chunk` rows and `vocab_rows` vocabulary rows.
LmLossWorkspace workspace(int64_t token_chunk, int64_t vocab_rows, int64_t H) {
  LmLossWorkspace ws(token_chunk);
  ws.tile = WeightTile(static_cast<size_t>(vocab_rows * H + H - 1));  // rounding down to vocab_rows
  EXPECT_EQ(ws.tile.rows_per_tile(H), vocab_rows);
  return ws;
}

struct LossCase {
  int64_t token_chunk, vocab_rows;
  WeightStorage storage;
  float hidden_scale;
  int64_t n = 13, V = 23, H = 19;
};

class LmLossTest : public ::testing::TestWithParam<LossCase> {};

TEST_P(LmLossTest, SumCountAndGradientMatchNaiveLogSoftmax) {
  const auto [token_chunk, vocab_rows, storage, hidden_scale, n, V, H] = GetParam();
  const Problem p = make_problem(n, V, H, hidden_scale, 1);
  const FrozenMatrix W = FrozenMatrix::from_f32(p.w, p.V, p.H, storage);
  const float grad_scale = 0.37f;
  const RefLoss want =
      ref_loss(kt::to_double(p.hidden), p.n, stored(p.w, storage), p.V, p.H, p.targets, grad_scale);
  ASSERT_EQ(want.count, n - n / 3);  // every third token is ignored

  LmLossWorkspace ws = workspace(token_chunk, vocab_rows, p.H);
  std::vector<float> dhidden(p.n * p.H, std::nanf(""));
  const LossSums got =
      lm_head_cross_entropy(p.hidden.data(), p.n, W, p.targets.data(), dhidden.data(), grad_scale, ws);
  EXPECT_EQ(got.count, want.count);
  EXPECT_NEAR(got.sum, want.sum, 2e-6 * want.sum + 1e-5 * hidden_scale);
  EXPECT_NEAR(got.mean(), want.sum / want.count, 2e-6 * want.sum + 1e-5 * hidden_scale);
  RecordProperty("loss_rel_err", fmt::format("{:.3g}", std::abs(got.sum - want.sum) / want.sum));
  kt::expect_close_scaled(dhidden, want.dhidden, hidden_scale > 1 ? 1e-4 : 2e-5, "dhidden");
  for (int64_t i = 0; i < p.n; ++i) {
    if (p.targets[i] != kIgnoreIndex) continue;
    for (int64_t h = 0; h < p.H; ++h) ASSERT_EQ(dhidden[i * p.H + h], 0.0f) << "ignored token " << i;
  }

  // The loss alone (no gradient) is the same.
  const LossSums only = lm_head_cross_entropy(p.hidden.data(), p.n, W, p.targets.data(), nullptr, 0.0f, ws);
  EXPECT_EQ(only.count, got.count);
  EXPECT_NEAR(only.sum, got.sum, 1e-9 * std::abs(got.sum) + 1e-9);
}

// Default problem: 13 tokens (9 counted), V = 23, H = 19.
INSTANTIATE_TEST_SUITE_P(Chunks, LmLossTest,
                         ::testing::Values(LossCase{5, 4, WeightStorage::F32, 1.0f},   // 9 = 5+4, 23 = 5·4+3
                                           LossCase{5, 4, WeightStorage::BF16, 1.0f},  //
                                           LossCase{1, 1, WeightStorage::BF16, 1.0f, 5, 7, 5},  // one by one
                                           LossCase{7, 23, WeightStorage::F32, 1.0f},     // whole vocabulary
                                           LossCase{256, 22, WeightStorage::BF16, 1.0f},  // 23 = 22 + 1
                                           LossCase{3, 10, WeightStorage::F32, 30.0f}));  // logits ~ ±100

TEST(LmLoss, GradientMatchesFiniteDifferencesOfTheLoss) {
  const Problem p = make_problem(11, 29, 13, 1.0f, 7);
  const FrozenMatrix W = FrozenMatrix::from_f32(p.w, p.V, p.H, WeightStorage::F32);
  const float grad_scale = 1.0f / 7;
  LmLossWorkspace ws = workspace(4, 6, p.H);
  std::vector<float> dhidden(p.n * p.H);
  lm_head_cross_entropy(p.hidden.data(), p.n, W, p.targets.data(), dhidden.data(), grad_scale, ws);
  std::vector<double> h = kt::to_double(p.hidden);
  const std::vector<double> w = kt::to_double(p.w);
  const auto numeric =
      kt::numeric_grad(h, [&] { return grad_scale * ref_loss(h, p.n, w, p.V, p.H, p.targets, 0.0).sum; });
  kt::expect_close_scaled(dhidden, numeric, 2e-5, "dhidden_vs_finite_diff");
}

TEST(LmLoss, WorkspaceIsReusableAcrossBatchSizes) {
  const FrozenMatrix W = FrozenMatrix::from_f32(kt::random_floats(11 * 8, 3), 11, 8, WeightStorage::BF16);
  LmLossWorkspace shared = workspace(6, 5, 8);
  for (int64_t n : {14, 3, 10}) {
    const Problem p = make_problem(n, 11, 8, 1.0f, static_cast<uint32_t>(n));
    LmLossWorkspace fresh = workspace(6, 5, 8);
    std::vector<float> d1(n * 8), d2(n * 8);
    const LossSums a =
        lm_head_cross_entropy(p.hidden.data(), n, W, p.targets.data(), d1.data(), 1.0f, shared);
    const LossSums b = lm_head_cross_entropy(p.hidden.data(), n, W, p.targets.data(), d2.data(), 1.0f, fresh);
    EXPECT_EQ(a.sum, b.sum) << n;
    EXPECT_EQ(a.count, b.count) << n;
    EXPECT_EQ(d1, d2) << n;
  }
}

TEST(LmLoss, AllTargetsIgnoredGivesZero) {
  const Problem p = make_problem(4, 9, 5, 1.0f, 9);
  const FrozenMatrix W = FrozenMatrix::from_f32(p.w, p.V, p.H, WeightStorage::F32);
  const std::vector<int32_t> targets(p.n, kIgnoreIndex);
  LmLossWorkspace ws;
  std::vector<float> dhidden(p.n * p.H, std::nanf(""));
  const LossSums got =
      lm_head_cross_entropy(p.hidden.data(), p.n, W, targets.data(), dhidden.data(), 1.0f, ws);
  EXPECT_EQ(got.count, 0);
  EXPECT_EQ(got.sum, 0.0);
  EXPECT_EQ(got.mean(), 0.0);
  for (float d : dhidden) EXPECT_EQ(d, 0.0f);
}

TEST(LmLoss, TargetOutsideTheVocabularyThrows) {
  const Problem p = make_problem(6, 9, 5, 1.0f, 11);
  const FrozenMatrix W = FrozenMatrix::from_f32(p.w, p.V, p.H, WeightStorage::BF16);
  for (int32_t bad : {9, 10, -1, -99, -101, std::numeric_limits<int32_t>::max()}) {
    std::vector<int32_t> targets = p.targets;
    targets[4] = bad;
    LmLossWorkspace ws;
    std::vector<float> dhidden(p.n * p.H);
    try {
      lm_head_cross_entropy(p.hidden.data(), p.n, W, targets.data(), dhidden.data(), 1.0f, ws);
      ADD_FAILURE() << "target " << bad << " was accepted";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(std::to_string(bad)), std::string::npos) << msg;
      EXPECT_NE(msg.find("token 4"), std::string::npos) << msg;
    }
  }
}

}  // namespace
}  // namespace bidora
