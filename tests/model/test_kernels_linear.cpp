// Frozen linear layer: y = x Wᵀ + b and dx = beta·dx + dy W against double references, for F32
// storage (GEMM in place) and BF16 storage (expanded tile by tile), with tiles of every size.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "model/frozen_matrix.h"
#include "model/linear.h"
#include "test_kernels_support.h"

namespace bidora {
namespace {

// y[t, o] = Σ_i x[t, i] w[o, i] + b[o] in double.
std::vector<double> ref_linear(const std::vector<float>& x, int64_t n, const std::vector<double>& w,
                               int64_t out, int64_t in, const std::vector<float>* bias) {
  std::vector<double> y(n * out);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t o = 0; o < out; ++o) {
      double s = bias ? (*bias)[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) s += static_cast<double>(x[t * in + i]) * w[o * in + i];
      y[t * out + o] = s;
    }
  return y;
}

// dx[t, i] = beta·dx0[t, i] + Σ_o dy[t, o] w[o, i] in double: the gradient of Σ dy ⊙ (x Wᵀ).
std::vector<double> ref_linear_dx(const std::vector<float>& dy, int64_t n, const std::vector<double>& w,
                                  int64_t out, int64_t in, const std::vector<float>& dx0, float beta) {
  std::vector<double> dx(n * in);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < in; ++i) {
      double s = beta == 0.0f ? 0.0 : static_cast<double>(beta) * dx0[t * in + i];
      for (int64_t o = 0; o < out; ++o) s += static_cast<double>(dy[t * out + o]) * w[o * in + i];
      dx[t * in + i] = s;
    }
  return dx;
}

// The values the matrix really holds: bf16 storage rounds to nearest even (core/half.h, proven
// in test_core).
std::vector<double> stored_values(const std::vector<float>& w, WeightStorage st) {
  std::vector<double> d(w.size());
  for (size_t i = 0; i < w.size(); ++i) d[i] = st == WeightStorage::BF16 ? round_to_bf16(w[i]) : w[i];
  return d;
}

TEST(FrozenMatrix, Bf16RowsAreTheRoundedValues) {
  const int64_t rows = 13, cols = 9;
  auto w = kt::random_floats(rows * cols, 1, -3.0f, 3.0f);
  w[0] = 1.0f + 1.0f / 256;  // an exact tie: rounds down to even (1.0)
  w[1] = 1.0f + 3.0f / 256;  // tie the other way: rounds up to even
  const FrozenMatrix m = FrozenMatrix::from_f32(w, rows, cols, WeightStorage::BF16);
  EXPECT_EQ(m.rows(), rows);
  EXPECT_EQ(m.cols(), cols);
  EXPECT_EQ(m.f32_data(), nullptr);
  EXPECT_EQ(m.bytes(), static_cast<size_t>(rows * cols * 2));
  std::vector<float> all(rows * cols);
  m.rows_f32(0, rows, all.data());
  for (int64_t i = 0; i < rows * cols; ++i) ASSERT_EQ(all[i], round_to_bf16(w[i])) << i;
  EXPECT_EQ(all[0], 1.0f);
  EXPECT_EQ(all[1], 1.0f + 4.0f / 256);
  // A row range in the middle.
  std::vector<float> part(3 * cols);
  m.rows_f32(5, 3, part.data());
  for (int64_t i = 0; i < 3 * cols; ++i) ASSERT_EQ(part[i], all[5 * cols + i]) << i;

  const FrozenMatrix f = FrozenMatrix::from_f32(w, rows, cols, WeightStorage::F32);
  ASSERT_NE(f.f32_data(), nullptr);
  part.resize(4 * cols);
  f.rows_f32(2, 4, part.data());
  for (int64_t i = 0; i < 4 * cols; ++i) ASSERT_EQ(part[i], w[2 * cols + i]) << i;
}

TEST(FrozenMatrix, RejectsWrongValueCount) {
  EXPECT_THROW(FrozenMatrix::from_f32(std::vector<float>(5), 2, 3, WeightStorage::F32), Error);
}

struct LinearCase {
  int64_t n, out, in;
  WeightStorage storage;
  bool bias;
};

class LinearTest : public ::testing::TestWithParam<LinearCase> {};

TEST_P(LinearTest, ForwardMatchesDoubleReferenceForEveryTileSize) {
  const auto [n, out, in, storage, has_bias] = GetParam();
  const auto x = kt::random_floats(n * in, 1);
  const auto w = kt::random_floats(out * in, 2);
  const auto b = kt::random_floats(out, 3);
  const FrozenMatrix W = FrozenMatrix::from_f32(w, out, in, storage);
  const auto want = ref_linear(x, n, stored_values(w, storage), out, in, has_bias ? &b : nullptr);

  // Capacities: less than one row (one row per tile anyway), a few rows that do not divide
  // `out`, exactly `out` rows, and the default.
  for (size_t cap : {size_t{1}, static_cast<size_t>(3 * in + 1), static_cast<size_t>(7 * in),
                     static_cast<size_t>(out * in), size_t{1} << 21}) {
    WeightTile tile(cap);
    std::vector<float> y(n * out, std::nanf(""));
    linear_forward(x.data(), n, W, has_bias ? b.data() : nullptr, y.data(), tile);
    kt::expect_close(y, want, 2e-6 * std::sqrt(static_cast<double>(in)), 2e-6,
                     "y_tile" + std::to_string(tile.rows_per_tile(in)));
  }
}

TEST_P(LinearTest, BackwardInputMatchesDoubleReferenceForEveryTileSizeAndBeta) {
  const auto [n, out, in, storage, has_bias] = GetParam();
  (void)has_bias;
  const auto dy = kt::random_floats(n * out, 4);
  const auto w = kt::random_floats(out * in, 5);
  const auto dx0 = kt::random_floats(n * in, 6);
  const FrozenMatrix W = FrozenMatrix::from_f32(w, out, in, storage);
  const auto wd = stored_values(w, storage);
  for (float beta : {0.0f, 1.0f, 0.5f}) {
    const auto want = ref_linear_dx(dy, n, wd, out, in, dx0, beta);
    for (size_t cap : {size_t{1}, static_cast<size_t>(3 * in + 1), size_t{1} << 21}) {
      WeightTile tile(cap);
      // With beta = 0 the previous contents must be ignored, even NaN (fresh buffers).
      std::vector<float> dx = beta == 0.0f ? std::vector<float>(n * in, std::nanf("")) : dx0;
      linear_backward_input(dy.data(), n, W, dx.data(), beta, tile);
      kt::expect_close(dx, want, 2e-6 * std::sqrt(static_cast<double>(out)), 2e-6,
                       "dx_beta" + std::to_string(beta) + "_tile" + std::to_string(tile.rows_per_tile(in)));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, LinearTest,
                         ::testing::Values(LinearCase{1, 1, 1, WeightStorage::F32, true},
                                           LinearCase{1, 1, 1, WeightStorage::BF16, false},
                                           LinearCase{7, 13, 5, WeightStorage::F32, true},
                                           LinearCase{7, 13, 5, WeightStorage::BF16, true},
                                           LinearCase{33, 70, 45, WeightStorage::F32, false},
                                           LinearCase{33, 70, 45, WeightStorage::BF16, true},
                                           LinearCase{3, 257, 96, WeightStorage::BF16, false}));

TEST(Linear, TilesGiveTheSameResultAsOneTile) {
  // The tiled path must agree with the single-tile one to float rounding (the GEMM may
  // block differently, so not bit for bit).
  const int64_t n = 9, out = 101, in = 37;
  const auto x = kt::random_floats(n * in, 7), w = kt::random_floats(out * in, 8),
             dy = kt::random_floats(n * out, 9);
  const FrozenMatrix W = FrozenMatrix::from_f32(w, out, in, WeightStorage::BF16);
  WeightTile whole(out * in);
  std::vector<float> y_whole(n * out), dx_whole(n * in);
  linear_forward(x.data(), n, W, nullptr, y_whole.data(), whole);
  linear_backward_input(dy.data(), n, W, dx_whole.data(), 0.0f, whole);
  for (int64_t rows : {1, 2, 10, 100}) {
    WeightTile tile(rows * in);
    ASSERT_EQ(tile.rows_per_tile(in), rows);
    std::vector<float> y(n * out), dx(n * in);
    linear_forward(x.data(), n, W, nullptr, y.data(), tile);
    linear_backward_input(dy.data(), n, W, dx.data(), 0.0f, tile);
    kt::expect_close(y, kt::to_double(y_whole), 1e-5, 1e-6, "y_rows" + std::to_string(rows));
    kt::expect_close(dx, kt::to_double(dx_whole), 1e-5, 1e-6, "dx_rows" + std::to_string(rows));
  }
}

TEST(Linear, TileSmallerThanOneRowGrowsToOneRow) {
  // rows_f32 writes whole rows: a tile below one row must not be overrun (ASan checks this).
  const int64_t n = 3, out = 5, in = 37;
  const auto x = kt::random_floats(n * in, 10), w = kt::random_floats(out * in, 11);
  const FrozenMatrix W = FrozenMatrix::from_f32(w, out, in, WeightStorage::BF16);
  WeightTile tile(4);
  EXPECT_EQ(tile.rows_per_tile(in), 1);
  EXPECT_GE(tile.capacity(), static_cast<size_t>(in));
  std::vector<float> y(n * out);
  linear_forward(x.data(), n, W, nullptr, y.data(), tile);
  kt::expect_close(y, ref_linear(x, n, stored_values(w, WeightStorage::BF16), out, in, nullptr), 1e-5, 2e-6,
                   "y_small_tile");
}

TEST(Linear, EmptyBatchIsANoOp) {
  const FrozenMatrix W = FrozenMatrix::from_f32(kt::random_floats(12, 1), 3, 4, WeightStorage::BF16);
  WeightTile tile(8);
  const float bias[3] = {1, 2, 3};
  linear_forward(nullptr, 0, W, bias, nullptr, tile);
  linear_backward_input(nullptr, 0, W, nullptr, 0.0f, tile);
}

}  // namespace
}  // namespace bidora
