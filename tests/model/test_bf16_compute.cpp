// bf16 compute (model.compute_dtype bf16): the backend's bf16 GEMM, the frozen linear and the
// lm_head loss against double references whose operands are rounded to bf16 first (so only the
// summation order differs), and a whole decoder pass against its f32 self.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/backend.h"
#include "core/half.h"
#include "model/decoder.h"
#include "model/frozen_matrix.h"
#include "model/linear.h"
#include "model/lm_loss.h"
#include "test_kernels_support.h"
#include "test_support.h"
#include "tiny_model.h"

namespace bidora {
namespace {

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = f32_to_bf16(v[i]);
  return b;
}

std::vector<double> rounded(const std::vector<float>& v) {
  std::vector<double> d(v.size());
  for (size_t i = 0; i < v.size(); ++i) d[i] = round_to_bf16(v[i]);
  return d;
}

// Bound for a sum of k products of bf16 values summed in f32: a few f32 ulps of Σ|a·b|.
double sum_tolerance(const std::vector<double>& a, const std::vector<double>& b, int64_t k) {
  double m = 0;
  for (double x : a) m = std::max(m, std::abs(x));
  double n = 0;
  for (double x : b) n = std::max(n, std::abs(x));
  return 4e-7 * static_cast<double>(k) * m * n + 1e-30;
}

struct GemmCase {
  bool trans_b;
  int64_t M, N, K, pad;  // pad: extra row stride on every operand
  float beta;
};

class Bf16Gemm : public ::testing::TestWithParam<GemmCase> {};

TEST_P(Bf16Gemm, MatchesDoubleOnTheRoundedOperands) {
  const auto [trans_b, M, N, K, pad, beta] = GetParam();
  const int64_t lda = K + pad, b_rows = trans_b ? N : K, b_cols = trans_b ? K : N, ldb = b_cols + pad,
                ldc = N + pad;
  const auto a = kt::random_floats(M * lda, 11, -2.0f, 2.0f);
  const auto b = kt::random_floats(b_rows * ldb, 12, -1.5f, 1.5f);
  std::vector<float> c = kt::random_floats(M * ldc, 13);
  const std::vector<float> c0 = c;
  const auto ab = to_bf16(a), bb = to_bf16(b);
  const auto ad = rounded(a), bd = rounded(b);
  gemm_bf16(trans_b, M, N, K, ab.data(), lda, bb.data(), ldb, beta, c.data(), ldc);
  const double tol = sum_tolerance(ad, bd, K) + 1e-6;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      if (j >= N) {  // padding is never written
        ASSERT_EQ(c[i * ldc + j], c0[i * ldc + j]) << i << "," << j;
        continue;
      }
      double s = beta == 0.0f ? 0.0 : static_cast<double>(beta) * c0[i * ldc + j];
      for (int64_t k = 0; k < K; ++k) s += ad[i * lda + k] * (trans_b ? bd[j * ldb + k] : bd[k * ldb + j]);
      ASSERT_NEAR(c[i * ldc + j], s, tol + 1e-6 * std::abs(s)) << i << "," << j;
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, Bf16Gemm,
                         ::testing::Values(GemmCase{true, 7, 5, 3, 0, 0.0f},
                                           GemmCase{true, 33, 65, 129, 3, 0.0f},
                                           GemmCase{false, 33, 65, 129, 0, 1.0f},
                                           GemmCase{false, 1, 300, 64, 5, 0.5f},  // one row (generation)
                                           GemmCase{true, 64, 1, 257, 0, 1.0f},
                                           GemmCase{true, 4, 6, 0, 1, 0.0f},
                                           GemmCase{false, 4, 6, 0, 0, 2.0f}));  // K = 0: C = beta·C

// The frozen linear in bf16 mode, every storage, with tiles small enough for several per matrix.
TEST(Bf16Linear, ForwardAndInputGradientMatchDoubleOnRoundedOperands) {
  const int64_t n = 9, out = 37, in = 29;
  const auto x = kt::random_floats(n * in, 1, -2.0f, 2.0f);
  const auto w = kt::random_floats(out * in, 2, -0.5f, 0.5f);
  const auto bias = kt::random_floats(out, 3);
  const auto dy = kt::random_floats(n * out, 4);
  const auto dx0 = kt::random_floats(n * in, 5);
  for (WeightStorage st :
       {WeightStorage::F32, WeightStorage::BF16, WeightStorage::NF4, WeightStorage::INT8}) {
    for (size_t tile_floats : {size_t{1} << 20, static_cast<size_t>(5 * in)}) {
      SCOPED_TRACE(std::string(storage_name(st)) + (tile_floats < 1000 ? " small tiles" : " one tile"));
      const FrozenMatrix W = FrozenMatrix::from_f32(w, out, in, st);
      std::vector<float> held(out * in);  // what the matrix holds (dequantised for NF4/int8)
      W.rows_f32(0, out, held.data());
      const auto wd = rounded(held), xd = rounded(x), dyd = rounded(dy);
      WeightTile tile(tile_floats);
      tile.set_bf16_compute(true);

      std::vector<float> y(n * out);
      linear_forward(x.data(), n, W, bias.data(), y.data(), tile);
      std::vector<double> want(n * out);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t o = 0; o < out; ++o) {
          double s = bias[o];
          for (int64_t i = 0; i < in; ++i) s += xd[t * in + i] * wd[o * in + i];
          want[t * out + o] = s;
        }
      kt::expect_close(y, want, sum_tolerance(xd, wd, in), 1e-6, "y");

      for (float beta : {0.0f, 1.0f}) {
        std::vector<float> dx = dx0;
        linear_backward_input(dy.data(), n, W, dx.data(), beta, tile);
        std::vector<double> want_dx(n * in);
        for (int64_t t = 0; t < n; ++t)
          for (int64_t i = 0; i < in; ++i) {
            double s = beta * dx0[t * in + i];
            for (int64_t o = 0; o < out; ++o) s += dyd[t * out + o] * wd[o * in + i];
            want_dx[t * in + i] = s;
          }
        kt::expect_close(dx, want_dx, sum_tolerance(dyd, wd, out), 1e-6, "dx");
      }
    }
  }
}

TEST(Bf16Linear, DiffersFromF32OnlyByRounding) {
  // Guards against the flag being ignored: values with bits below bf16's 8-bit mantissa must
  // give a different (but close) result in bf16 mode.
  const int64_t n = 4, out = 8, in = 16;
  const auto x = kt::random_floats(n * in, 7);
  const auto w = kt::random_floats(out * in, 8);
  const FrozenMatrix W = FrozenMatrix::from_f32(w, out, in, WeightStorage::F32);
  WeightTile f32_tile, bf16_tile;
  bf16_tile.set_bf16_compute(true);
  std::vector<float> a(n * out), b(n * out);
  linear_forward(x.data(), n, W, nullptr, a.data(), f32_tile);
  linear_forward(x.data(), n, W, nullptr, b.data(), bf16_tile);
  double max_diff = 0;
  for (size_t i = 0; i < a.size(); ++i) max_diff = std::max(max_diff, std::abs(double{a[i]} - b[i]));
  EXPECT_GT(max_diff, 1e-5);
  EXPECT_LT(max_diff, 0.05);
}

// lm_head + cross-entropy in bf16: loss from the rounded hidden states and weights; dhidden from
// the rounded dlogits (the backward GEMM's input) too.
TEST(Bf16LmLoss, LossAndGradientMatchDoubleOnRoundedOperands) {
  const int64_t n = 11, V = 41, H = 23;
  const auto hidden = kt::random_floats(n * H, 21, -1.0f, 1.0f);
  const auto w = kt::random_floats(V * H, 22);
  std::vector<int32_t> targets(n);
  for (int64_t i = 0; i < n; ++i) targets[i] = i % 4 == 3 ? kIgnoreIndex : static_cast<int32_t>((i * 7) % V);
  const float grad_scale = 0.3f;
  for (WeightStorage st : {WeightStorage::BF16, WeightStorage::F32, WeightStorage::NF4}) {
    SCOPED_TRACE(storage_name(st));
    const FrozenMatrix W = FrozenMatrix::from_f32(w, V, H, st);
    std::vector<float> held(V * H);
    W.rows_f32(0, V, held.data());
    const auto wd = rounded(held), hd = rounded(hidden);
    double want_sum = 0;
    int64_t want_count = 0;
    std::vector<double> want_dh(n * H, 0.0);
    for (int64_t i = 0; i < n; ++i) {
      if (targets[i] == kIgnoreIndex) continue;
      std::vector<double> logits(V);
      double mx = -1e300;
      for (int64_t v = 0; v < V; ++v) {
        double s = 0;
        for (int64_t h = 0; h < H; ++h) s += hd[i * H + h] * wd[v * H + h];
        logits[v] = s;
        mx = std::max(mx, s);
      }
      double z = 0;
      for (double l : logits) z += std::exp(l - mx);
      const double lse = mx + std::log(z);
      want_sum += lse - logits[targets[i]];
      ++want_count;
      for (int64_t v = 0; v < V; ++v) {
        const double d = grad_scale * (std::exp(logits[v] - lse) - (v == targets[i] ? 1.0 : 0.0));
        const double d16 = round_to_bf16(static_cast<float>(d));
        for (int64_t h = 0; h < H; ++h) want_dh[i * H + h] += d16 * wd[v * H + h];
      }
    }
    // Small vocabulary chunks (7 rows) and token chunks (4), so every loop runs several times.
    LmLossWorkspace ws(4);
    ws.tile = WeightTile(static_cast<size_t>(7 * H));
    ws.tile.set_bf16_compute(true);
    std::vector<float> dh(n * H, std::nanf(""));
    const LossSums got =
        lm_head_cross_entropy(hidden.data(), n, W, targets.data(), dh.data(), grad_scale, ws);
    EXPECT_EQ(got.count, want_count);
    EXPECT_NEAR(got.sum, want_sum, 1e-5 * want_sum);
    // A bf16 rounding of a dlogit computed in f32 may land one bf16 ulp (2^-8) from the double
    // one's: the tolerance allows that on a few terms, far below what a wrong operand would give.
    kt::expect_close_scaled(dh, want_dh, 2e-3, "dhidden");
  }
}

// A whole training pass in bf16 compute is the f32 pass up to bf16 rounding, for each family.
TEST(Bf16Decoder, LossAndEmbeddingGradientCloseToF32) {
  for (const char* family : {"llama", "qwen2", "qwen3"}) {
    SCOPED_TRACE(family);
    test::TinyModelSpec spec;
    spec.family = family;
    spec.tied = std::string(family) == "qwen2";
    const std::string dir = test::write_tiny_model(test::make_temp_dir(std::string("bf16c-") + family), spec);
    const auto weights = ModelWeights::load(dir, LoadOptions(WeightStorage::BF16));
    TokenBatch b;
    b.rows = 2;
    b.seq_len = 24;
    std::mt19937 rng(5);
    for (int64_t i = 0; i < b.tokens(); ++i) b.input_ids.push_back(static_cast<int32_t>(rng() % spec.vocab));
    b.labels = b.input_ids;

    Decoder f32(*weights), bf16(*weights);
    bf16.set_bf16_compute(true);
    ASSERT_TRUE(bf16.bf16_compute());
    std::vector<float> g32, g16;
    const LossSums l32 = f32.forward_backward(b, 1.0f / 46, &g32);
    const LossSums l16 = bf16.forward_backward(b, 1.0f / 46, &g16);
    ASSERT_EQ(l32.count, l16.count);
    const double rel = std::abs(l16.mean() - l32.mean()) / l32.mean();
    EXPECT_GT(rel, 1e-7) << "bf16 compute gave exactly the f32 loss: the flag is not reaching the GEMMs";
    EXPECT_LT(rel, 1e-2);
    ASSERT_EQ(g32.size(), g16.size());
    double dot = 0, n32 = 0, n16 = 0;
    for (size_t i = 0; i < g32.size(); ++i) {
      dot += double{g32[i]} * g16[i];
      n32 += double{g32[i]} * g32[i];
      n16 += double{g16[i]} * g16[i];
    }
    EXPECT_GT(dot / std::sqrt(n32 * n16), 0.995);
  }
}

}  // namespace
}  // namespace bidora
