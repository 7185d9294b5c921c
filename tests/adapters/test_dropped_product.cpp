// The products on dropout's dropped inputs (DoRA with dropout): the dropped set is exactly the
// complement of dropout_keep, and both kernels equal a naive double product over several weight
// tiles, transposed chunks and column blocks (out > 128 and not a multiple of the block), on f32
// operands or, with bf16 compute, on bf16-rounded ones (AVX512_BF16 dot products where built).
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>
#include <utility>
#include <vector>

#include "adapter_test_util.h"
#include "adapters/dropout.h"
#include "adapters/dropped_product.h"
#include "core/half.h"
#include "model/linear.h"

namespace bidora {
namespace {

struct Case {
  WeightStorage storage;
  int64_t tile_rows;          // rows per weight tile (f32 storage chunks the whole matrix by it instead)
  bool bf16_compute = false;  // inputs and weights rounded to bf16 (AVX512_BF16 dot products)
};

class DroppedProduct : public ::testing::TestWithParam<Case> {};

TEST_P(DroppedProduct, MatchesNaiveDouble) {
  const int64_t n = 7, in = 45, out = 301;
  const float p = 0.2f;
  const uint64_t stream = dropout_stream({.seed = 3, .step = 9, .row0 = 0}, 1, LinearKind::Gate);
  const int64_t row0 = 11;
  const FrozenMatrix W =
      FrozenMatrix::from_f32(test::random_vec(out * in, 21, 0.4f), out, in, GetParam().storage);
  const std::vector<double> w = test::dense_weight(W);
  WeightTile tile(static_cast<size_t>(GetParam().tile_rows * in));
  const bool bf16 = GetParam().bf16_compute;
  tile.set_bf16_compute(bf16);
  const std::vector<float> x = test::random_vec(n * in, 22), dy = test::random_vec(n * out, 23),
                           scale = test::random_vec(out, 24);
  // What the products multiply: with bf16 compute, x, W and dy·scale (formed in f32) rounded to
  // bf16, as the frozen GEMMs round theirs.
  auto r = [&](double v) { return bf16 ? static_cast<double>(round_to_bf16(static_cast<float>(v))) : v; };
  std::vector<double> wr(w.size());
  for (size_t i = 0; i < w.size(); ++i) wr[i] = r(w[i]);

  DroppedSet set;
  find_dropped(n, in, p, stream, row0, set);
  ASSERT_EQ(set.offsets.size(), static_cast<size_t>(n + 1));
  int64_t expected_nnz = 0;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < in; ++j) {
      if (dropout_keep(stream, row0, t, j, in, p)) continue;
      ASSERT_LT(expected_nnz, set.nnz());
      EXPECT_EQ(set.cols[expected_nnz], j) << "row " << t;
      ++expected_nnz;
    }
  ASSERT_EQ(set.nnz(), expected_nnz);
  EXPECT_GT(set.nnz(), n * in / 10);  // p = 0.2: about 63 of 315 positions

  PanelScratch transposed;
  const int64_t ldc = out + 3;  // a row stride wider than out
  std::vector<float> c(static_cast<size_t>(n * ldc), -7.0f);
  dropped_times_wt(x.data(), set, W, tile, transposed, c.data(), ldc);
  std::vector<float> sampled;
  sampled_dy_times_w(dy.data(), scale.data(), set, W, tile, transposed, sampled);
  ASSERT_EQ(sampled.size(), static_cast<size_t>(set.nnz()));

  // worst_*: against the operands the mode multiplies; unrounded_*: against exact f32 operands.
  double worst_c = 0, worst_s = 0, unrounded_c = 0, unrounded_s = 0;
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t o = 0; o < out; ++o) {
      double ref = 0, mag = 0, exact = 0;
      for (int64_t k = set.offsets[t]; k < set.offsets[t + 1]; ++k) {
        const int64_t j = set.cols[k];
        ref += r(x[t * in + j]) * wr[o * in + j];
        mag += std::abs(r(x[t * in + j]) * wr[o * in + j]);
        exact += x[t * in + j] * w[o * in + j];
      }
      worst_c = std::max(worst_c, std::abs(c[t * ldc + o] - ref) / (mag + 1e-30));
      unrounded_c = std::max(unrounded_c, std::abs(c[t * ldc + o] - exact) / (mag + 1e-30));
    }
    for (int64_t o = out; o < ldc; ++o) EXPECT_EQ(c[t * ldc + o], -7.0f) << "wrote past the output columns";
    for (int64_t k = set.offsets[t]; k < set.offsets[t + 1]; ++k) {
      double ref = 0, mag = 0, exact = 0;
      for (int64_t o = 0; o < out; ++o) {
        const double d = r(dy[t * out + o] * scale[o]);  // the product formed in f32, as the kernels do
        ref += d * wr[o * in + set.cols[k]];
        mag += std::abs(d * wr[o * in + set.cols[k]]);
        exact += static_cast<double>(dy[t * out + o]) * scale[o] * w[o * in + set.cols[k]];
      }
      worst_s = std::max(worst_s, std::abs(sampled[k] - ref) / (mag + 1e-30));
      unrounded_s = std::max(unrounded_s, std::abs(sampled[k] - exact) / (mag + 1e-30));
    }
  }
  EXPECT_LT(worst_c, 1e-6);
  EXPECT_LT(worst_s, 1e-6);
  if (bf16) {  // the rounding really happened: bf16 operands are ~2⁻⁹ off
    EXPECT_GT(unrounded_c, 1e-4);
    EXPECT_GT(unrounded_s, 1e-4);
  }
}

INSTANTIATE_TEST_SUITE_P(Storages, DroppedProduct,
                         ::testing::Values(Case{WeightStorage::F32, 64}, Case{WeightStorage::F32, 1000},
                                           Case{WeightStorage::BF16, 97}, Case{WeightStorage::BF16, 1000},
                                           Case{WeightStorage::NF4, 300}, Case{WeightStorage::F32, 64, true},
                                           Case{WeightStorage::BF16, 97, true},
                                           Case{WeightStorage::BF16, 1000, true},
                                           Case{WeightStorage::NF4, 300, true}),
                         [](const auto& info) {
                           return std::string(storage_name(info.param.storage)) + "_tile" +
                                  std::to_string(info.param.tile_rows) +
                                  (info.param.bf16_compute ? "_bf16compute" : "");
                         });

TEST(DroppedProduct, EmptyRowsAndNoDrops) {
  // p tiny: no position is dropped, the products are all zero and nothing is sampled.
  const FrozenMatrix W = FrozenMatrix::from_f32(test::random_vec(5 * 8, 1), 5, 8, WeightStorage::F32);
  WeightTile tile;
  DroppedSet set;
  find_dropped(3, 8, 1e-30f, 42, 0, set);
  EXPECT_EQ(set.nnz(), 0);
  std::vector<float> x = test::random_vec(3 * 8, 2), c(3 * 5, 1.0f), sampled;
  PanelScratch transposed;
  dropped_times_wt(x.data(), set, W, tile, transposed, c.data(), 5);
  for (float v : c) EXPECT_EQ(v, 0.0f);
  std::vector<float> dy = test::random_vec(3 * 5, 3);
  sampled_dy_times_w(dy.data(), nullptr, set, W, tile, transposed, sampled);
  EXPECT_TRUE(sampled.empty());
}

TEST(DroppedProduct, DropoutFromTheSetEqualsTheGeneratorBitForBit) {
  // DoRA derives the dropped input and dropout's backward from the set instead of drawing the mask
  // again: the results must be the very same floats as dropout_apply / dropout_backward_add.
  const int64_t n = 9, w = 67, row0 = 5;
  const float p = 0.3f;
  const uint64_t stream = dropout_stream({.seed = 7, .step = 2, .row0 = row0}, 3, LinearKind::Down);
  DroppedSet set;
  find_dropped(n, w, p, stream, row0, set);
  ASSERT_GT(set.nnz(), n * w / 5);
  const std::vector<float> x = test::random_vec(n * w, 31), g = test::random_vec(n * w, 32),
                           sampled = test::random_vec(set.nnz(), 33), start = test::random_vec(n * w, 34);

  std::vector<float> expected(n * w), got(n * w, 9.0f);
  dropout_apply(x.data(), n, w, p, stream, row0, expected.data());
  dropout_apply_dropped(x.data(), set, p, got.data());
  EXPECT_EQ(got, expected);

  // The dropped positions first take −sampled/(1 − p), then the kept ones g/(1 − p).
  std::vector<float> acc_expected = start, acc_got = start;
  const float keep_scale = 1.0f / (1.0f - p);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t k = set.offsets[t]; k < set.offsets[t + 1]; ++k)
      acc_expected[t * w + set.cols[k]] -= sampled[k] * keep_scale;
  dropout_backward_add(g.data(), n, w, p, stream, row0, acc_expected.data());
  dropout_backward_add_dropped(g.data(), sampled.data(), set, p, acc_got.data());
  EXPECT_EQ(acc_got, acc_expected);
}

// A set is a pure function of find_dropped's key, so a call with the key it already holds keeps
// it (no second pass of the generator: DoRA's backward after the checkpoint replay), and any other
// key recomputes it.
TEST(DroppedProduct, FindDroppedKeepsASetOfTheSameKeyAndRecomputesOtherKeys) {
  const int64_t n = 12, w = 40;
  const float p = 0.2f;
  const uint64_t stream = dropout_stream({.seed = 3, .step = 1, .row0 = 0}, 2, LinearKind::Up);
  auto fresh = [&](int64_t rows, int64_t width, float prob, uint64_t s, int64_t row0) {
    DroppedSet d;
    find_dropped(rows, width, prob, s, row0, d);
    return std::make_pair(d.offsets, d.cols);
  };
  DroppedSet set;
  find_dropped(n, w, p, stream, 0, set);
  ASSERT_GT(set.nnz(), 0);
  set.cols[0] = -7;  // a marker: the same key must not evaluate the generator again
  find_dropped(n, w, p, stream, 0, set);
  EXPECT_EQ(set.cols[0], -7);
  // Each field of the key on its own makes a new set, equal to one computed from scratch.
  const std::vector<std::tuple<int64_t, int64_t, float, uint64_t, int64_t>> keys = {
      {n, w, p, stream, 3},
      {n - 1, w, p, stream, 3},
      {n - 1, w + 1, p, stream, 3},
      {n - 1, w + 1, 0.5f, stream, 3},
      {n - 1, w + 1, 0.5f, stream + 1, 3}};
  for (const auto& [rows, width, prob, s, row0] : keys) {
    find_dropped(rows, width, prob, s, row0, set);
    EXPECT_EQ(std::make_pair(set.offsets, set.cols), fresh(rows, width, prob, s, row0))
        << rows << " " << width << " " << prob << " " << row0;
  }
}

}  // namespace
}  // namespace bidora
