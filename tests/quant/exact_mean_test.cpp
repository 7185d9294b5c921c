// The exactly rounded float32 mean used as the double-quantisation offset.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/error.h"
#include "quant/exact_mean.h"

namespace bidora::quant {
namespace {

float mean(std::vector<float> v) {
  return exact_mean_f32(v.data(), v.size());
}

TEST(ExactMean, SimpleAndExactCases) {
  EXPECT_EQ(mean({0.3f}), 0.3f);
  EXPECT_EQ(mean({1.0f, 2.0f, 3.0f, 4.0f}), 2.5f);
  EXPECT_EQ(mean({-0.25f, -0.25f}), -0.25f);
  EXPECT_EQ(mean({0.0f, 0.0f}), 0.0f);
  EXPECT_EQ(mean({1e38f, 3e38f}), 2e38f);  // the float32 sum would overflow
  EXPECT_EQ(mean({1.0f, -1.0f, 5.0f}), 5.0f / 3.0f);
}

TEST(ExactMean, TiesRoundToEven) {
  const float one = 1.0f, ulp = std::ldexp(1.0f, -23);
  EXPECT_EQ(mean({one, one + ulp}), one);                      // 1 + ulp/2: tie -> even (1.0)
  EXPECT_EQ(mean({one + ulp, one + 2 * ulp}), one + 2 * ulp);  // 1 + 1.5 ulp: tie -> even (1 + 2ulp)
  EXPECT_EQ(mean({one, one + 2 * ulp}), one + ulp);            // exact
  // (2 + ulp + tiny) / 4 = 0.5 + (half an ulp of 0.5) + tiny: just above the tie -> rounds up
  EXPECT_EQ(mean({one, one + ulp, std::numeric_limits<float>::denorm_min(), 0.0f}), 0.5f + ulp / 2);
  EXPECT_EQ(mean({one, one + ulp, 0.0f, 0.0f}), 0.5f);  // the exact tie -> even
}

TEST(ExactMean, Subnormals) {
  const float d = std::numeric_limits<float>::denorm_min();
  EXPECT_EQ(mean({d, d}), d);
  EXPECT_EQ(mean({d, 0.0f}), 0.0f);       // d/2: tie -> even (0)
  EXPECT_EQ(mean({3 * d, 0.0f}), 2 * d);  // 1.5 d: tie -> even (2d)
  EXPECT_EQ(mean({d, 0.0f, 0.0f}), 0.0f);
  EXPECT_EQ(mean({d, d, 0.0f}), d);  // 2/3 d -> d
}

TEST(ExactMean, AgreesWithLongDoubleOnWellConditionedData) {
  // Positive values within a few binades: the long double sum (64-bit mantissa) of < 2^20 floats
  // is exact, so the mean is correctly rounded up to a double-rounding tie (vanishingly unlikely).
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(0.01f, 0.3f);
  for (int n : {1, 2, 3, 7, 64, 1000, 68096}) {
    std::vector<float> v(static_cast<size_t>(n));
    long double s = 0;
    for (float& x : v) {
      x = u(rng);
      s += x;
    }
    const long double m = s / n;
    EXPECT_EQ(exact_mean_f32(v.data(), v.size()), static_cast<float>(m)) << n;
  }
}

TEST(ExactMean, RejectsEmptyAndNonFinite) {
  EXPECT_THROW(mean({}), Error);
  EXPECT_THROW(mean({1.0f, std::numeric_limits<float>::infinity()}), Error);
  EXPECT_THROW(mean({std::numeric_limits<float>::quiet_NaN()}), Error);
}

}  // namespace
}  // namespace bidora::quant
