// NF4 quantisation, double quantisation and dequantisation, bit for bit against the PyTorch
// re-implementation of bitsandbytes (tests/reference/quant_reference.py).
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "quant/nf4.h"
#include "quant_ref.h"

namespace bidora::quant {
namespace {

struct Case {
  std::string name;
  std::vector<float> w;
  int64_t rows, cols, blocksize;
};

std::vector<Case> load_cases() {
  const auto& ref = test::quant_ref("nf4.safetensors");
  std::vector<Case> out;
  for (const std::string& c : ref.cases()) {
    const auto& w = ref.get(c + ".w");
    out.push_back({c, w.f32(), w.shape.at(0), w.shape.at(1), std::stoll(ref.meta(c))});
  }
  return out;
}

TEST(Nf4Reference, CoversTheIntendedCases) {
  const auto cases = load_cases();
  EXPECT_GE(cases.size(), 14u);
  bool odd = false, partial = false, many = false;
  for (const auto& c : cases) {
    odd |= (c.rows * c.cols) % 2 == 1;
    partial |= (c.rows * c.cols) % c.blocksize != 0;
    many |= (c.rows * c.cols) / c.blocksize > 256;
  }
  EXPECT_TRUE(odd && partial && many);
}

TEST(Nf4Reference, PlainQuantisationBitwise) {
  const auto& ref = test::quant_ref("nf4.safetensors");
  for (const auto& c : load_cases()) {
    SCOPED_TRACE(c.name);
    const Nf4Matrix m =
        Nf4Matrix::quantize(c.w.data(), c.rows, c.cols, {c.blocksize, /*double_quant=*/false});
    EXPECT_FALSE(m.double_quant());
    EXPECT_TRUE(test::bytes_equal<uint8_t>(m.parts().packed, ref.get(c.name + ".packed").u8()));
    EXPECT_TRUE(test::bits_equal(m.parts().absmax, ref.get(c.name + ".absmax").f32()));
    std::vector<float> deq(c.w.size());
    m.dequantize_rows(0, c.rows, deq.data(), Kernel::Scalar);
    EXPECT_TRUE(test::bits_equal(deq, ref.get(c.name + ".deq_plain").f32()));
  }
}

TEST(Nf4Reference, DoubleQuantisationBitwise) {
  const auto& ref = test::quant_ref("nf4.safetensors");
  for (const auto& c : load_cases()) {
    SCOPED_TRACE(c.name);
    const Nf4Matrix m = Nf4Matrix::quantize(c.w.data(), c.rows, c.cols, {c.blocksize, /*double_quant=*/true});
    ASSERT_TRUE(m.double_quant());
    const Nf4Parts& p = m.parts();
    EXPECT_TRUE(test::bytes_equal<uint8_t>(p.packed, ref.get(c.name + ".packed").u8()));
    EXPECT_TRUE(p.absmax.empty());
    EXPECT_TRUE(test::bytes_equal<uint8_t>(p.absmax_q, ref.get(c.name + ".absmax_q").u8()));
    EXPECT_TRUE(test::bits_equal(p.absmax2, ref.get(c.name + ".absmax2").f32()));
    EXPECT_TRUE(test::bits_equal(std::vector<float>{p.offset}, ref.get(c.name + ".offset").f32()));
    const auto want = ref.get(c.name + ".deq").f32();
    for (Kernel k : {Kernel::Scalar, Kernel::Auto}) {
      SCOPED_TRACE(kernel_name(k));
      std::vector<float> deq(c.w.size());
      m.dequantize_rows(0, c.rows, deq.data(), k);
      EXPECT_TRUE(test::bits_equal(deq, want));
    }
  }
}

TEST(Nf4Reference, RowRangesAreSlicesOfTheReference) {
  const auto& ref = test::quant_ref("nf4.safetensors");
  std::mt19937 rng(5);
  for (const auto& c : load_cases()) {
    SCOPED_TRACE(c.name);
    const Nf4Matrix m = Nf4Matrix::quantize(c.w.data(), c.rows, c.cols, {c.blocksize, true});
    const auto want = ref.get(c.name + ".deq").f32();
    for (int t = 0; t < 20; ++t) {
      const int64_t r0 = std::uniform_int_distribution<int64_t>(0, c.rows - 1)(rng);
      const int64_t n = std::uniform_int_distribution<int64_t>(0, c.rows - r0)(rng);
      for (Kernel k : {Kernel::Scalar, Kernel::Auto}) {
        std::vector<float> out(static_cast<size_t>(n * c.cols));
        m.dequantize_rows(r0, n, out.data(), k);
        const auto first = want.begin() + r0 * c.cols;
        ASSERT_TRUE(test::bits_equal(out, std::vector<float>(first, first + n * c.cols)))
            << "rows [" << r0 << ", " << r0 + n << ") " << kernel_name(k);
      }
    }
  }
}

TEST(Nf4Reference, ZeroBlockUsesCode7AndDequantisesToZero) {
  const auto& ref = test::quant_ref("nf4.safetensors");
  const auto packed = ref.get("zero_block_8x96.packed").u8();
  for (int byte = 64; byte < 96; ++byte) EXPECT_EQ(packed[byte], 0x77) << byte;  // elements 128..191
  std::vector<float> w(4 * 64, 0.0f);
  const Nf4Matrix m = Nf4Matrix::quantize(w.data(), 4, 64);
  std::vector<float> out(w.size(), 1.0f);
  m.dequantize_rows(0, 4, out.data());
  for (float v : out) EXPECT_EQ(std::bit_cast<uint32_t>(v), 0u);  // +0.0
  EXPECT_EQ(m.parts().offset, 0.0f);
}

TEST(Nf4Reference, OddElementCountPadsTheLowNibbleWithCode7) {
  const float w[3] = {-2.0f, 0.5f, 1.0f};
  const Nf4Matrix m = Nf4Matrix::quantize(w, 1, 3, {64, false});
  ASSERT_EQ(m.parts().packed.size(), 2u);
  // x = w / 2: -1 -> code 0; 0.25 lies between the midpoints 0.2035 and 0.2920 -> code 10;
  // 0.5 is below the midpoint 0.5017 -> code 12; the pad element -> code 7.
  EXPECT_EQ(m.parts().packed[0], 0x0A);
  EXPECT_EQ(m.parts().packed[1], 0xC7);
}

TEST(Nf4Reference, RejectsBadInput) {
  std::vector<float> w(64, 1.0f);
  EXPECT_THROW(Nf4Matrix::quantize(w.data(), 1, 64, {48, true}), Error);
  EXPECT_THROW(Nf4Matrix::quantize(w.data(), 1, 64, {8192, true}), Error);
  w[10] = std::numeric_limits<float>::infinity();
  try {
    Nf4Matrix::quantize(w.data(), 2, 32, {64, true}, "layers.0.mlp.up_proj.weight");
    FAIL() << "no error for a non-finite weight";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layers.0.mlp.up_proj.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("row 0, column 10"), std::string::npos) << e.what();
  }
  w[10] = 0.0f;
  const Nf4Matrix m = Nf4Matrix::quantize(w.data(), 2, 32);
  std::vector<float> out(64);
  EXPECT_THROW(m.dequantize_rows(1, 2, out.data()), Error);
  EXPECT_THROW(m.dequantize_rows(-1, 1, out.data()), Error);
  EXPECT_THROW(m.dequantize_elements(10, 65, out.data()), Error);
}

}  // namespace
}  // namespace bidora::quant
