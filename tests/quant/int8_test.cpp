// int8 frozen weights (LLM.int8 row-wise and blockwise) against the reference, and the float16
// rounding that the row-wise path goes through.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <random>

#include "core/error.h"
#include "core/half.h"
#include "core/hardware.h"
#include "quant/float16_round.h"
#include "quant/int8.h"
#include "quant_ref.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace bidora::quant {
namespace {

TEST(Float16Round, EveryHalfRoundTripsAndMidpointsGoToEven) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(std::bit_cast<uint32_t>(round_to_f16(f)), std::bit_cast<uint32_t>(f)) << h;
    const uint32_t e = h & 0x7c00u;
    if ((h & 0x7fffu) >= 0x7bffu) continue;  // largest finite / inf: no next half
    const float next = f16_to_f32(static_cast<uint16_t>(h + 1));
    const float mid = static_cast<float>((static_cast<double>(f) + next) / 2);  // exact in float32
    const float even = (h & 1u) ? next : f;
    ASSERT_EQ(round_to_f16(mid), even) << h << " exp " << e;
    ASSERT_EQ(round_to_f16(std::nextafter(mid, f)), f) << h;
    ASSERT_EQ(round_to_f16(std::nextafter(mid, next)), next) << h;
  }
}

TEST(Float16Round, RangeLimits) {
  EXPECT_EQ(round_to_f16(65504.0f), 65504.0f);
  EXPECT_EQ(round_to_f16(65519.99f), 65504.0f);
  EXPECT_TRUE(std::isinf(round_to_f16(65520.0f)));  // the tie above the largest half goes to inf
  EXPECT_TRUE(std::isinf(round_to_f16(-1e10f)));
  EXPECT_EQ(round_to_f16(std::ldexp(1.0f, -25)), 0.0f);  // tie -> even (0)
  EXPECT_EQ(round_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), std::ldexp(1.0f, -24));
  EXPECT_EQ(std::bit_cast<uint32_t>(round_to_f16(-1e-30f)), 0x80000000u);  // -0
}

#if defined(__x86_64__)
__attribute__((target("f16c"))) float hw_round_f16(float x) {
  return _cvtsh_ss(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
TEST(Float16Round, MatchesF16cOnRandomBits) {
  // detect_hardware rather than __builtin_cpu_supports("f16c"), which clang 14 rejects at compile
  // time (the TSan build uses clang); it also checks that the OS enables the AVX state F16C needs.
  if (!detect_hardware({.run_nvidia_smi = false}).isa.f16c) GTEST_SKIP() << "no F16C";
  std::mt19937 rng(1);
  for (int i = 0; i < 2000000; ++i) {
    const float x = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    if (std::isnan(x)) continue;
    ASSERT_EQ(std::bit_cast<uint32_t>(round_to_f16(x)), std::bit_cast<uint32_t>(hw_round_f16(x)))
        << std::hexfloat << x;
  }
}
#endif

TEST(Int8Reference, RowWiseBitwise) {
  const auto& ref = test::quant_ref("int8.safetensors");
  int checked = 0;
  for (const std::string& c : ref.cases()) {
    if (!ref.has(c + ".cb")) continue;
    SCOPED_TRACE(c);
    const auto& wt = ref.get(c + ".w");
    const auto w = wt.f32();
    const int64_t rows = wt.shape.at(0), cols = wt.shape.at(1);
    const Int8Matrix m = Int8Matrix::quantize(w.data(), rows, cols);  // RowWise is the default
    EXPECT_EQ(m.layout(), Int8Layout::RowWise);
    EXPECT_TRUE(test::bytes_equal<int8_t>(m.data(), ref.get(c + ".cb").i8()));
    EXPECT_TRUE(test::bits_equal(m.scales(), ref.get(c + ".scb").f32()));
    for (Kernel k : {Kernel::Scalar, Kernel::Auto}) {
      std::vector<float> deq(w.size());
      m.dequantize_rows(0, rows, deq.data(), k);
      EXPECT_TRUE(test::bits_equal(deq, ref.get(c + ".deq_rowwise").f32())) << kernel_name(k);
    }
    // a checkpoint's P.weight / P.SCB give the same matrix
    const Int8Matrix back = Int8Matrix::from_rowwise(m.data(), m.scales(), rows, cols, "x");
    std::vector<float> deq(w.size());
    back.dequantize_rows(0, rows, deq.data());
    EXPECT_TRUE(test::bits_equal(deq, ref.get(c + ".deq_rowwise").f32()));
    ++checked;
  }
  EXPECT_GE(checked, 5);
}

TEST(Int8Reference, RoundHalfToEven) {
  const auto& ref = test::quant_ref("int8.safetensors");
  const auto cb = ref.get("halves_3x8.cb").i8();
  // 0.5, 1.5, 2.5, -0.5, -1.5, 127, 3.5, -2.5 with a scale of exactly 1
  const int8_t want[8] = {0, 2, 2, 0, -2, 127, 4, -2};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(cb[i], want[i]) << i;
}

TEST(Int8Reference, BlockwiseBitwise) {
  const auto& ref = test::quant_ref("int8.safetensors");
  for (const std::string& c : ref.cases()) {
    const auto& wt = ref.get(c + ".w");
    const auto w = wt.f32();
    const int64_t rows = wt.shape.at(0), cols = wt.shape.at(1);
    for (int64_t bs : {64, 256}) {
      SCOPED_TRACE(c + " bs" + std::to_string(bs));
      const Int8Matrix m = Int8Matrix::quantize(w.data(), rows, cols, {Int8Layout::Blockwise, bs});
      EXPECT_EQ(m.blocksize(), bs);
      const std::string sfx = "_bs" + std::to_string(bs);
      EXPECT_TRUE(test::bytes_equal<int8_t>(m.data(), ref.get(c + ".q" + sfx).i8()));
      EXPECT_TRUE(test::bits_equal(m.scales(), ref.get(c + ".absmax" + sfx).f32()));
      for (Kernel k : {Kernel::Scalar, Kernel::Auto}) {
        std::vector<float> deq(w.size());
        m.dequantize_rows(0, rows, deq.data(), k);
        EXPECT_TRUE(test::bits_equal(deq, ref.get(c + ".deq" + sfx).f32())) << kernel_name(k);
      }
    }
  }
}

TEST(Int8, ZeroRowsAndErrors) {
  std::vector<float> w(3 * 5, 0.25f);
  for (int j = 0; j < 5; ++j) w[5 + j] = 0.0f;
  const Int8Matrix m = Int8Matrix::quantize(w.data(), 3, 5);
  EXPECT_EQ(m.scales()[1], 0.0f);
  for (int j = 0; j < 5; ++j) EXPECT_EQ(m.data()[5 + j], 0);
  std::vector<float> out(15, 1.0f);
  m.dequantize_rows(0, 3, out.data());
  EXPECT_EQ(out[0], 0.25f);
  EXPECT_EQ(out[5], 0.0f);

  w[7] = 70000.0f;  // beyond float16: fine blockwise, an error row-wise (bitsandbytes casts to fp16)
  EXPECT_THROW(Int8Matrix::quantize(w.data(), 3, 5, {}, "w"), Error);
  EXPECT_NO_THROW(Int8Matrix::quantize(w.data(), 3, 5, {Int8Layout::Blockwise, 64}));
  w[7] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(Int8Matrix::quantize(w.data(), 3, 5, {Int8Layout::Blockwise, 64}), Error);
  EXPECT_THROW(Int8Matrix::quantize(w.data(), 3, 5, {Int8Layout::Blockwise, 100}), Error);
  EXPECT_THROW(Int8Matrix::from_rowwise(std::vector<int8_t>(15), std::vector<float>(2), 3, 5, "x"), Error);
  EXPECT_THROW(Int8Matrix::from_rowwise(std::vector<int8_t>(14), std::vector<float>(3), 3, 5, "x"), Error);
  EXPECT_THROW(
      Int8Matrix::from_rowwise(std::vector<int8_t>(15), std::vector<float>{1.0f, -1.0f, 1.0f}, 3, 5, "x"),
      Error);
  EXPECT_THROW(m.dequantize_rows(2, 2, out.data()), Error);
}

}  // namespace
}  // namespace bidora::quant
