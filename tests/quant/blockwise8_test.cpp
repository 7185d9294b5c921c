// 8-bit blockwise quantisation (quantize_blockwise / dequantize_blockwise) against the reference,
// and the dQuantize search against brute force.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <stdexcept>

#include "core/error.h"
#include "quant/blockwise8.h"
#include "quant_ref.h"

namespace bidora::quant {
namespace {

Code256 code_of(const test::RefTensor& t) {
  const auto v = t.f32();
  if (v.size() != 256) throw std::runtime_error("reference code is not 256 values");
  Code256 c;
  std::copy(v.begin(), v.end(), c.begin());
  return c;
}

TEST(Blockwise8, MatchesReferenceBitwise) {
  const auto& ref = test::quant_ref("blockwise8.safetensors");
  const auto cases = ref.cases();
  ASSERT_GE(cases.size(), 8u);
  for (const std::string& c : cases) {
    SCOPED_TRACE(c);
    const auto x = ref.get(c + ".x").f32();
    const Code256 code = code_of(ref.get(c + ".code"));
    const int64_t bs = std::stoll(ref.meta(c));
    std::vector<uint8_t> q(x.size());
    std::vector<float> absmax(static_cast<size_t>(num_blocks(static_cast<int64_t>(x.size()), bs)));
    quantize_blockwise(x, code, bs, q, absmax);
    EXPECT_TRUE(test::bytes_equal<uint8_t>(q, ref.get(c + ".q").u8()));
    EXPECT_TRUE(test::bits_equal(absmax, ref.get(c + ".absmax").f32()));
    std::vector<float> deq(x.size());
    dequantize_blockwise(q, absmax, code, bs, deq);
    EXPECT_TRUE(test::bits_equal(deq, ref.get(c + ".deq").f32()));
  }
}

// The kernel's answer, derived differently: P = 2 * #(odd-index codes < y), then the nearer of
// P and its neighbour on y's side, with an exact float32 midpoint going to P.
int formula(float y, const Code256& c) {
  int k = 0;
  for (int i = 1; i <= 253; i += 2) k += c[i] < y ? 1 : 0;
  const int P = 2 * k;
  if (y > c[P]) return y > (c[P + 1] + c[P]) * 0.5f ? P + 1 : P;
  const int lo = P > 0 ? P - 1 : 0;
  return y < (c[lo] + c[P]) * 0.5f ? lo : P;
}

TEST(Blockwise8, SearchIsNearestCodeWithEvenTies) {
  for (const Code256* code : {&dynamic_map_signed(), &dynamic_map_unsigned()}) {
    const Code256& c = *code;
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-1.05f, 1.05f);
    std::uniform_real_distribution<float> e(-7.0f, 0.0f);
    for (int i = 0; i < 100000; ++i) {
      const float y = (i & 1) ? u(rng) : std::copysign(std::pow(10.0f, e(rng)), u(rng));
      const int got = quantize_to_code(y, c);
      ASSERT_EQ(got, formula(y, c)) << std::hexfloat << y;
      // and it is a nearest code (distance computed exactly in double)
      double best = 1e300;
      for (float v : c) best = std::min(best, std::fabs(static_cast<double>(v) - y));
      // (the kernel's float32 midpoint may be off by rounding: allow a few ulp of y)
      const double tol = 4 * std::ldexp(1.0, std::ilogb(std::fabs(y) + 1e-38f) - 23);
      ASSERT_LE(std::fabs(static_cast<double>(c[got]) - y) - best, tol) << std::hexfloat << y;
    }
    // exact float32 midpoints resolve to the even index
    for (int i = 0; i + 1 < 256; ++i) {
      if (c[i] == c[i + 1]) continue;
      const float mid = (c[i] + c[i + 1]) * 0.5f;
      if (mid == c[i] || mid == c[i + 1]) continue;
      const int got = quantize_to_code(mid, c);
      EXPECT_EQ(got % 2, 0) << "midpoint between " << i << " and " << i + 1;
      EXPECT_TRUE(got == i || got == i + 1);
      EXPECT_EQ(got, formula(mid, c));
    }
  }
}

TEST(Blockwise8, ZeroBlockStoresZeroAndTheCodeOfZero) {
  std::vector<float> x(300, 0.0f);
  x[299] = 0.5f;  // second block non-zero
  std::vector<uint8_t> q(x.size());
  std::vector<float> absmax(2);
  quantize_blockwise(x, dynamic_map_signed(), 256, q, absmax);
  EXPECT_EQ(absmax[0], 0.0f);
  EXPECT_EQ(q[0], 127);  // signed map: code[127] == 0
  EXPECT_EQ(q[299], 255);
  std::vector<float> deq(x.size());
  dequantize_blockwise(q, absmax, dynamic_map_signed(), 256, deq);
  EXPECT_EQ(deq[0], 0.0f);
  EXPECT_EQ(deq[299], 0.5f);
}

TEST(Blockwise8, RejectsMismatchedSizes) {
  std::vector<float> x(10);
  std::vector<uint8_t> q(10);
  std::vector<float> absmax(2);
  EXPECT_THROW(quantize_blockwise(x, dynamic_map_signed(), 256, q, absmax), Error);
  std::vector<float> out(9);
  std::vector<float> one(1);
  EXPECT_THROW(dequantize_blockwise(q, one, dynamic_map_signed(), 256, out), Error);
  EXPECT_THROW(quantize_blockwise(x, dynamic_map_signed(), 0, q, one), Error);
}

}  // namespace
}  // namespace bidora::quant
