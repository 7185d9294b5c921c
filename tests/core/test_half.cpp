// bf16 and f16 conversions against references computed from the definitions in double:
// exhaustive over all 65536 half/bfloat16 encodings, and for f32 → bf16 over every upper half
// combined with the low halves that decide rounding (exact ties included).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/half.h"

namespace bidora {
namespace {

bool is_nan_bits(uint32_t u) {
  return (u & 0x7fffffffu) > 0x7f800000u;
}

// The value an f16 encoding denotes, from IEEE 754 binary16: subnormals are m·2^-24, normals
// (1024 + m)·2^(e−25), e = 31 is Inf (m = 0) or NaN.
double f16_value(uint16_t h) {
  const int sign = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  double v;
  if (e == 0) {
    v = std::ldexp(static_cast<double>(m), -24);
  } else if (e == 31) {
    v = m == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  } else {
    v = std::ldexp(static_cast<double>(1024 + m), e - 25);
  }
  return sign ? -v : v;
}

// bfloat16 is the upper half of a float32: its value, from the binary32 definition in double.
double bf16_value(uint16_t b) {
  const int sign = b >> 15, e = (b >> 7) & 0xff, m = b & 0x7f;
  double v;
  if (e == 0) {
    v = std::ldexp(static_cast<double>(m), -133);  // m·2^-7·2^-126
  } else if (e == 255) {
    v = m == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  } else {
    v = std::ldexp(static_cast<double>(128 + m), e - 134);
  }
  return sign ? -v : v;
}

TEST(Half, F16ToF32IsExactForEveryEncoding) {
  int subnormals = 0, nans = 0;
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float got = f16_to_f32(static_cast<uint16_t>(h));
    const double want = f16_value(static_cast<uint16_t>(h));
    const uint32_t bits = std::bit_cast<uint32_t>(got);
    if (std::isnan(want)) {
      ++nans;
      ASSERT_TRUE(std::isnan(got)) << std::hex << h;
      ASSERT_EQ(bits >> 31, h >> 15) << "NaN sign " << std::hex << h;
      ASSERT_EQ((bits >> 13) & 0x3ffu, h & 0x3ffu) << "NaN payload " << std::hex << h;
      continue;
    }
    if ((h & 0x7c00) == 0 && (h & 0x3ff) != 0) ++subnormals;
    ASSERT_EQ(static_cast<double>(got), want) << std::hex << h;
    ASSERT_EQ(std::signbit(got), (h >> 15) != 0) << std::hex << h;  // -0 stays -0
  }
  EXPECT_EQ(subnormals, 2 * 1023);
  EXPECT_EQ(nans, 2 * 1023);
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0xfc00), -std::numeric_limits<float>::infinity());
}

TEST(Half, Bf16ToF32IsExactForEveryEncoding) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float got = bf16_to_f32(static_cast<uint16_t>(b));
    const double want = bf16_value(static_cast<uint16_t>(b));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << std::hex << b;
      continue;
    }
    ASSERT_EQ(static_cast<double>(got), want) << std::hex << b;
    ASSERT_EQ(std::signbit(got), (b >> 15) != 0) << std::hex << b;
  }
}

// Round to nearest, ties to even, from the definition: of the two bf16 neighbours of x (the
// truncation and the next encoding away from zero), take the nearer; on a tie, the one with an
// even mantissa. Beyond the largest finite bf16 the "next" neighbour is Inf, which the IEEE rule
// picks when |x| ≥ max + ulp/2.
uint16_t reference_to_bf16(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint16_t down = static_cast<uint16_t>(u >> 16);
  if ((u & 0xffffu) == 0) return down;
  const uint16_t up = static_cast<uint16_t>(down + 1);  // one ulp further from zero (may become Inf)
  const double vx = std::abs(static_cast<double>(x)), vd = std::abs(bf16_value(down));
  const double vu = (up & 0x7fff) == 0x7f80 ? std::abs(bf16_value(down)) + std::ldexp(1.0, 127 - 7)
                                            : std::abs(bf16_value(up));  // Inf: the next step up
  const double dd = vx - vd, du = vu - vx;
  if (dd < du) return down;
  if (du < dd) return up;
  return (down & 1) ? up : down;
}

TEST(Half, F32ToBf16RoundsToNearestEven) {
  // Every sign/exponent/high-mantissa pattern, combined with the low halves that decide the
  // rounding: exact, just below/at/above the tie, and the extremes.
  const uint32_t lows[] = {0x0000, 0x0001, 0x3fff, 0x7fff, 0x8000, 0x8001, 0xc000, 0xffff};
  int ties = 0, overflows = 0, subnormals = 0;
  for (uint32_t hi = 0; hi < 0x10000; ++hi) {
    for (uint32_t lo : lows) {
      const uint32_t u = hi << 16 | lo;
      const float x = std::bit_cast<float>(u);
      const uint16_t got = f32_to_bf16(x);
      if (is_nan_bits(u)) {
        // Quiet NaN, sign kept (bit 6 is the quiet bit of bf16).
        ASSERT_TRUE(std::isnan(bf16_to_f32(got))) << std::hex << u;
        ASSERT_EQ(got & 0x40u, 0x40u) << std::hex << u;
        ASSERT_EQ(got >> 15, u >> 31) << std::hex << u;
        continue;
      }
      if ((u & 0x7f800000u) == 0x7f800000u) {  // ±Inf stays ±Inf
        ASSERT_EQ(got, static_cast<uint16_t>(hi)) << std::hex << u;
        continue;
      }
      const uint16_t want = reference_to_bf16(x);
      ASSERT_EQ(got, want) << std::hex << "x bits " << u << " got " << got << " want " << want;
      ties += lo == 0x8000;
      overflows += (want & 0x7fff) == 0x7f80;
      subnormals += (u & 0x7f800000u) == 0 && (u & 0x7fffffu) != 0;
    }
  }
  EXPECT_GT(ties, 60000);
  EXPECT_GT(overflows, 0);   // the largest floats round up to Inf
  EXPECT_GT(subnormals, 0);  // subnormals round like everything else
}

TEST(Half, F32ToBf16KnownValues) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // tie, even below
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f818000u)), 0x3f82);  // tie, even above
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f808001u)), 0x3f81);  // just above the tie
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // overflows to Inf
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x7f7f7fffu)), 0x7f7f);  // largest that stays finite
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x00008000u)), 0x0000);  // subnormal tie to even zero
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x80018000u)), 0x8002);  // negative subnormal tie up
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(round_to_bf16(3.14159265f), 3.140625f);
  // A NaN whose payload lives only in the low half must not become Inf.
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::bit_cast<float>(0x7f800001u)))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::bit_cast<float>(0xff800001u)))));
}

TEST(Half, BulkConversionsMatchScalarOnes) {
  std::vector<uint16_t> codes(0x10000);
  for (uint32_t i = 0; i < 0x10000; ++i) codes[i] = static_cast<uint16_t>(i);
  std::vector<float> f(codes.size());
  bf16_to_f32_n(codes.data(), f.data(), codes.size());
  for (uint32_t i = 0; i < 0x10000; ++i)
    ASSERT_EQ(std::bit_cast<uint32_t>(f[i]), std::bit_cast<uint32_t>(bf16_to_f32(codes[i]))) << i;
  f16_to_f32_n(codes.data(), f.data(), codes.size());
  for (uint32_t i = 0; i < 0x10000; ++i)
    ASSERT_EQ(std::bit_cast<uint32_t>(f[i]), std::bit_cast<uint32_t>(f16_to_f32(codes[i]))) << i;

  std::vector<float> x(4099);
  uint32_t state = 12345;
  for (float& v : x) {
    state = state * 1664525u + 1013904223u;
    v = std::bit_cast<float>(state);
  }
  std::vector<uint16_t> b(x.size());
  f32_to_bf16_n(x.data(), b.data(), x.size());
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(b[i], f32_to_bf16(x[i])) << i;
}

}  // namespace
}  // namespace bidora
