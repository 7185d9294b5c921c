// The NF4 code table and decision tree against formats.md §3.1-3.2 and the PyTorch reference.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>

#include "quant/nf4_code.h"
#include "quant_ref.h"

namespace bidora::quant {
namespace {

// Count of thresholds strictly below x: what torch.bucketize(x, thresholds, right=False) returns.
int bucketize(float x) {
  int c = 0;
  for (float t : kNf4Threshold) c += t < x ? 1 : 0;
  return c;
}

TEST(Nf4Code, TableMatchesSpec) {
  // formats.md §3.1, as printed there (double literals of the float32 values).
  const double spec[16] = {-1.0,
                           -0.6961928009986877,
                           -0.5250730514526367,
                           -0.39491748809814453,
                           -0.28444138169288635,
                           -0.18477343022823334,
                           -0.09105003625154495,
                           0.0,
                           0.07958029955625534,
                           0.16093020141124725,
                           0.24611230194568634,
                           0.33791524171829224,
                           0.44070982933044434,
                           0.5626170039176941,
                           0.7229568362236023,
                           1.0};
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(static_cast<double>(kNf4Code[i]), spec[i]) << "code " << i;  // the literal is exactly a float
    if (i > 0) {
      EXPECT_LT(kNf4Code[i - 1], kNf4Code[i]);
    }
  }
  const auto& ref = test::quant_ref("maps.safetensors");
  EXPECT_TRUE(test::bits_equal(kNf4Code, ref.get("nf4_code").f32()));
}

TEST(Nf4Code, ThresholdsAreDoubleMidpoints) {
  const double spec_rounded[15] = {-0.8480964004, -0.6106329262, -0.4599952698, -0.3396794349, -0.2346074060,
                                   -0.1379117332, -0.0455250181, 0.0397901498,  0.1202552505,  0.2035212517,
                                   0.2920137718,  0.3893125355,  0.5016634166,  0.6427869201,  0.8614784181};
  int double_rounded_differs = 0;
  for (int i = 0; i < 15; ++i) {
    const double mid = (static_cast<double>(kNf4Code[i]) + static_cast<double>(kNf4Code[i + 1])) / 2.0;
    EXPECT_NEAR(mid, spec_rounded[i], 1e-10) << i;
    // The kernel's literal is the shortest decimal of `mid` with an f suffix: one rounding of the
    // decimal text to float (strtof is correctly rounded), not (float)mid.
    const std::string text = fmt::format("{}", mid);
    EXPECT_EQ(std::bit_cast<uint32_t>(kNf4Threshold[i]),
              std::bit_cast<uint32_t>(std::strtof(text.c_str(), nullptr)))
        << i << " " << text;
    double_rounded_differs += kNf4Threshold[i] != static_cast<float>(mid) ? 1 : 0;
  }
  EXPECT_EQ(double_rounded_differs, 4);  // why the decimal route matters (midpoints 0, 8, 12, 14)
  EXPECT_TRUE(
      test::bits_equal(kNf4Threshold, test::quant_ref("maps.safetensors").get("nf4_thresholds").f32()));
}

TEST(Nf4Code, TiesGoToTheLowerCode) {
  for (int i = 0; i < 15; ++i) {
    const float t = kNf4Threshold[i];
    EXPECT_EQ(nf4_quantize_value(t), i) << "exactly on midpoint " << i;
    EXPECT_EQ(nf4_quantize_value(std::nextafter(t, 2.0f)), i + 1) << "just above midpoint " << i;
    EXPECT_EQ(nf4_quantize_value(std::nextafter(t, -2.0f)), i) << "just below midpoint " << i;
  }
  for (int i = 0; i < 16; ++i) EXPECT_EQ(nf4_quantize_value(kNf4Code[i]), i) << "code value " << i;
  EXPECT_EQ(nf4_quantize_value(0.0f), 7);
  EXPECT_EQ(nf4_quantize_value(-0.0f), 7);
  EXPECT_EQ(nf4_quantize_value(1.5f), 15);
  EXPECT_EQ(nf4_quantize_value(-1.5f), 0);
  EXPECT_EQ(nf4_quantize_value(std::numeric_limits<float>::quiet_NaN()), 0);  // falls through, as on CUDA
}

TEST(Nf4Code, TreeEqualsBucketize) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.2f, 1.2f);
  for (int i = 0; i < 200000; ++i) {
    const float x = u(rng);
    ASSERT_EQ(nf4_quantize_value(x), bucketize(x)) << std::hexfloat << x;
  }
  // every float in a window around each midpoint
  for (float t : kNf4Threshold) {
    float x = t;
    for (int k = 0; k < 64; ++k) x = std::nextafter(x, -2.0f);
    for (int k = 0; k < 128; ++k, x = std::nextafter(x, 2.0f)) ASSERT_EQ(nf4_quantize_value(x), bucketize(x));
  }
}

}  // namespace
}  // namespace bidora::quant
