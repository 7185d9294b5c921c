// Quantisation error and memory figures on realistic weights: NF4's relative RMS error on Gaussian
// weights is ~0.1 (QLoRA), int8 is about 15x smaller, and the storage matches the bit budgets.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "quant/int8.h"
#include "quant/nf4.h"

namespace bidora::quant {
namespace {

constexpr int64_t kRows = 512, kCols = 896;

std::vector<float> gaussian_bf16_like(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 0.02f);
  std::vector<float> v(static_cast<size_t>(kRows * kCols));
  for (float& x : v) x = d(rng);
  return v;
}

template <class M>
double relative_rms(const M& m, const std::vector<float>& w) {
  std::vector<float> out(w.size());
  m.dequantize_rows(0, m.rows(), out.data());
  double err = 0, ref = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    err += (static_cast<double>(out[i]) - w[i]) * (static_cast<double>(out[i]) - w[i]);
    ref += static_cast<double>(w[i]) * w[i];
  }
  return std::sqrt(err / ref);
}

TEST(QuantError, Nf4OnGaussianWeights) {
  const auto w = gaussian_bf16_like(1);
  const double plain = relative_rms(Nf4Matrix::quantize(w.data(), kRows, kCols, {64, false}), w);
  const double nested = relative_rms(Nf4Matrix::quantize(w.data(), kRows, kCols, {64, true}), w);
  EXPECT_GT(plain, 0.08);
  EXPECT_LT(plain, 0.11);
  EXPECT_LT(std::fabs(nested / plain - 1.0), 0.01);  // double quantisation costs almost nothing
  const double coarse = relative_rms(Nf4Matrix::quantize(w.data(), kRows, kCols, {4096, false}), w);
  EXPECT_GT(coarse, plain);  // bigger blocks, bigger error
  RecordProperty("nf4_rel_rms_plain", std::to_string(plain));
  RecordProperty("nf4_rel_rms_nested", std::to_string(nested));
}

TEST(QuantError, Int8OnGaussianWeights) {
  const auto w = gaussian_bf16_like(2);
  const double rowwise = relative_rms(Int8Matrix::quantize(w.data(), kRows, kCols), w);
  const double block =
      relative_rms(Int8Matrix::quantize(w.data(), kRows, kCols, {Int8Layout::Blockwise, 64}), w);
  EXPECT_LT(rowwise, 0.01);
  EXPECT_LT(block, 0.01);
  EXPECT_GT(rowwise, 0.002);
  RecordProperty("int8_rel_rms_rowwise", std::to_string(rowwise));
  RecordProperty("int8_rel_rms_block64", std::to_string(block));
}

TEST(QuantError, BlockwiseInt8ContainsOutliers) {
  auto w = gaussian_bf16_like(3);
  for (int64_t r = 0; r < kRows; r += 8)
    w[static_cast<size_t>(r * kCols + 17)] = 1.0f;  // one outlier per row
  const double rowwise = relative_rms(Int8Matrix::quantize(w.data(), kRows, kCols), w);
  const double block =
      relative_rms(Int8Matrix::quantize(w.data(), kRows, kCols, {Int8Layout::Blockwise, 64}), w);
  EXPECT_LT(block, rowwise);
}

TEST(QuantMemory, BytesMatchTheBitBudgets) {
  const auto w = gaussian_bf16_like(4);
  const double n = static_cast<double>(kRows * kCols);
  const double nested = Nf4Matrix::quantize(w.data(), kRows, kCols, {64, true}).bytes() * 8.0 / n;
  const double plain = Nf4Matrix::quantize(w.data(), kRows, kCols, {64, false}).bytes() * 8.0 / n;
  // 4 + 8/64 + 32/(64*256) = 4.127 bits, plus the two code tables (1088 bytes per matrix)
  EXPECT_NEAR(nested, 4.127 + (1088 + 4) * 8.0 / n, 1e-3);
  EXPECT_NEAR(plain, 4.5 + 64 * 8.0 / n, 1e-3);
  const double i8 = Int8Matrix::quantize(w.data(), kRows, kCols).bytes() * 8.0 / n;
  EXPECT_NEAR(i8, 8.0 + 32.0 / kCols, 1e-9);
}

}  // namespace
}  // namespace bidora::quant
