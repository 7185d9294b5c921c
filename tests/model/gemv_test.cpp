// The decode-step GEMV (model/gemv.h) against a naive double-precision product over the values
// the frozen matrix really holds (rows_f32: bf16 rounding, NF4 / int8 dequantisation), for every
// storage, 1..kGemvMaxRows input rows, both kernel sets, with and without a bias; sizes leave
// tails in both the 32-column main loop and the 16-row tasks.
#include <gtest/gtest.h>

#include "core/error.h"
#include "model/frozen_matrix.h"
#include "model/gemv.h"
#include "model/test_kernels_support.h"

namespace bidora {
namespace {

std::vector<double> naive(const FrozenMatrix& W, const std::vector<float>& x, int64_t n, const float* bias) {
  const int64_t out = W.rows(), in = W.cols();
  std::vector<float> w(static_cast<size_t>(out * in));
  W.rows_f32(0, out, w.data());
  std::vector<double> y(static_cast<size_t>(n * out));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t o = 0; o < out; ++o) {
      double acc = bias ? bias[o] : 0.0;
      for (int64_t j = 0; j < in; ++j) acc += static_cast<double>(w[o * in + j]) * x[t * in + j];
      y[t * out + o] = acc;
    }
  return y;
}

TEST(Gemv, MatchesNaiveDoubleForEveryStorageAndKernel) {
  std::vector<GemvKernel> kernels = {GemvKernel::Scalar};
  if (gemv_avx512_available()) kernels.push_back(GemvKernel::Avx512);
  // in = 128 + 75: NF4 / int8 blocks of 64 span rows; 203 leaves a 32- and a 16-column tail.
  const int64_t out = 37, in = 203;
  const auto values = kt::random_floats(out * in, 7);
  const auto bias = kt::random_floats(out, 8);
  for (WeightStorage st :
       {WeightStorage::F32, WeightStorage::BF16, WeightStorage::NF4, WeightStorage::INT8}) {
    const FrozenMatrix W = FrozenMatrix::from_f32(values, out, in, st);
    for (GemvKernel k : kernels) {
      set_gemv_kernel(k);
      for (int64_t n = 1; n <= kGemvMaxRows; ++n) {
        const auto x = kt::random_floats(n * in, 9 + static_cast<uint32_t>(n));
        for (const float* b : {static_cast<const float*>(nullptr), bias.data()}) {
          std::vector<float> y(n * out, -1.0f);
          gemv_forward(x.data(), n, W, b, y.data());
          kt::expect_close(y, naive(W, x, n, b), 1e-5, 1e-5,
                           fmt::format("{} {} n={} bias={}", storage_name(st),
                                       k == GemvKernel::Scalar ? "scalar" : "avx512", n, b != nullptr));
        }
      }
    }
  }
  set_gemv_kernel(GemvKernel::Auto);
}

TEST(Gemv, RejectsRowCountsOutsideItsRange) {
  const FrozenMatrix W = FrozenMatrix::from_f32(std::vector<float>(6, 1.0f), 2, 3, WeightStorage::F32);
  std::vector<float> x(3 * (kGemvMaxRows + 1), 1.0f), y(2 * (kGemvMaxRows + 1));
  EXPECT_THROW(gemv_forward(x.data(), 0, W, nullptr, y.data()), Error);
  EXPECT_THROW(gemv_forward(x.data(), kGemvMaxRows + 1, W, nullptr, y.data()), Error);
  gemv_forward(x.data(), 1, W, nullptr, y.data());
  EXPECT_FLOAT_EQ(y[0], 3.0f);
  EXPECT_FLOAT_EQ(y[1], 3.0f);
}

}  // namespace
}  // namespace bidora
