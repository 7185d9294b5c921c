// RoPE: the inverse frequencies of every scaling against transformers' formulas
// (shared/reference/formats.md §5.5–5.6) evaluated in double, the rotation against a double
// reference, the backward as the exact transpose (finite differences) and inverse, and the
// relative-position property that makes RoPE what it is.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <optional>
#include <random>
#include <vector>

#include "model/rope.h"
#include "test_kernels_support.h"

namespace bidora {
namespace {

ModelConfig rope_config(int64_t hd, double theta, int64_t max_pos = 2048) {
  ModelConfig c;
  c.head_dim = hd;
  c.rope_theta = theta;
  c.max_position_embeddings = max_pos;
  return c;
}

// 1 / θ^(2i/hd), i < hd/2.
std::vector<double> ref_default_inv_freq(double theta, int64_t hd) {
  std::vector<double> f(hd / 2);
  for (int64_t i = 0; i < hd / 2; ++i) f[i] = 1.0 / std::pow(theta, 2.0 * i / hd);
  return f;
}

// The float32 evaluation of HF (pow of a float32 exponent) differs from the exact value by a
// few ulps of the exponent times ln θ: ~1e-6 relative for θ = 1e6.
constexpr double kInvFreqRtol = 3e-6;

TEST(RopeInvFreq, DefaultMatchesFormula) {
  for (int64_t hd : {2, 24, 64, 128}) {
    for (double theta : {10000.0, 1e6}) {
      const RopeTable rope(rope_config(hd, theta), 4);
      EXPECT_EQ(rope.half(), hd / 2);
      EXPECT_EQ(rope.attention_scaling(), 1.0f);
      kt::expect_close(rope.inv_freq(), ref_default_inv_freq(theta, hd), 0, kInvFreqRtol,
                       "default_hd" + std::to_string(hd));
    }
  }
}

TEST(RopeInvFreq, LinearDividesByFactor) {
  ModelConfig c = rope_config(24, 10000.0);
  c.rope_scaling.type = "linear";
  c.rope_scaling.factor = 2.5;
  auto want = ref_default_inv_freq(10000.0, 24);
  for (double& f : want) f /= 2.5;
  kt::expect_close(RopeTable(c, 8).inv_freq(), want, 0, kInvFreqRtol, "linear");
}

TEST(RopeInvFreq, DynamicOnlyBeyondTrainedContext) {
  ModelConfig c = rope_config(24, 10000.0, /*max_pos=*/64);
  c.rope_scaling.type = "dynamic";
  c.rope_scaling.factor = 3.0;
  // Up to max_position_embeddings the frequencies are the default ones.
  kt::expect_close(RopeTable(c, 64).inv_freq(), ref_default_inv_freq(10000.0, 24), 0, kInvFreqRtol,
                   "dynamic_within");
  // Beyond: θ' = θ·(factor·seq/max_pos − (factor − 1))^(hd/(hd−2)).
  const double seq = 100, theta2 = 10000.0 * std::pow(3.0 * seq / 64 - 2.0, 24.0 / 22.0);
  const RopeTable rope(c, 100);
  kt::expect_close(rope.inv_freq(), ref_default_inv_freq(theta2, 24), 0, kInvFreqRtol, "dynamic_beyond");
  EXPECT_GT(rope.inv_freq()[1], 0.0f);
  EXPECT_LT(rope.inv_freq()[1], RopeTable(c, 64).inv_freq()[1]);  // a larger base: slower rotation
}

TEST(RopeInvFreq, Llama3MatchesFormula) {
  // Llama-3.1-8B's scaling.
  ModelConfig c = rope_config(128, 500000.0, 131072);
  RopeScaling& rs = c.rope_scaling;
  rs.type = "llama3";
  rs.factor = 8.0;
  rs.low_freq_factor = 1.0;
  rs.high_freq_factor = 4.0;
  rs.original_max_position_embeddings = 8192;
  const double L = 8192, low_wavelen = L / 1.0, high_wavelen = L / 4.0;
  auto want = ref_default_inv_freq(500000.0, 128);
  int regions[3] = {0, 0, 0};
  for (double& f : want) {
    const double wavelen = 2 * std::numbers::pi / f;
    if (wavelen > low_wavelen) {
      f /= 8.0;
      ++regions[0];
    } else if (wavelen < high_wavelen) {
      ++regions[1];
    } else {
      const double s = (L / wavelen - 1.0) / (4.0 - 1.0);
      f = (1 - s) * f / 8.0 + s * f;
      ++regions[2];
    }
  }
  // The case must exercise all three branches to prove anything.
  EXPECT_GT(regions[0], 0);
  EXPECT_GT(regions[1], 0);
  EXPECT_GT(regions[2], 0);
  const RopeTable rope(c, 4);
  kt::expect_close(rope.inv_freq(), want, 0, kInvFreqRtol, "llama3");
  EXPECT_EQ(rope.attention_scaling(), 1.0f);
}

struct YarnCase {
  int64_t hd;
  double theta, factor;
  int64_t original_max, max_pos;
  std::optional<double> attention_factor;
};

class RopeYarnTest : public ::testing::TestWithParam<YarnCase> {};

TEST_P(RopeYarnTest, MatchesFormula) {
  const YarnCase& yc = GetParam();
  ModelConfig c = rope_config(yc.hd, yc.theta, yc.max_pos);
  RopeScaling& rs = c.rope_scaling;
  rs.type = "yarn";
  rs.factor = yc.factor;
  rs.original_max_position_embeddings = yc.original_max;
  rs.attention_factor = yc.attention_factor;

  const double L = yc.original_max ? yc.original_max : yc.max_pos;
  const auto correction_dim = [&](double rotations) {
    return yc.hd * std::log(L / (rotations * 2 * std::numbers::pi)) / (2 * std::log(yc.theta));
  };
  const double low = std::max(std::floor(correction_dim(32.0)), 0.0);
  double high = std::min(std::ceil(correction_dim(1.0)), static_cast<double>(yc.hd - 1));
  if (low == high) high += 0.001;
  std::vector<double> want(yc.hd / 2);
  for (int64_t i = 0; i < yc.hd / 2; ++i) {
    const double pos_freq = std::pow(yc.theta, 2.0 * i / yc.hd);
    const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
    const double extrap_weight = 1 - ramp;
    want[i] = 1 / (yc.factor * pos_freq) * (1 - extrap_weight) + 1 / pos_freq * extrap_weight;
  }
  const RopeTable rope(c, 16);
  kt::expect_close(rope.inv_freq(), want, 0, kInvFreqRtol, "yarn");

  const double want_scaling =
      yc.attention_factor ? *yc.attention_factor : (yc.factor <= 1 ? 1.0 : 0.1 * std::log(yc.factor) + 1.0);
  EXPECT_NEAR(rope.attention_scaling(), want_scaling, 1e-7);
  // attention_scaling multiplies both cos and sin.
  for (int64_t p : {0, 1, 15}) {
    for (int64_t i = 0; i < rope.half(); ++i) {
      const double angle = static_cast<float>(p) * rope.inv_freq()[i];  // float32 product, as HF
      EXPECT_NEAR(rope.cos(p)[i], std::cos(angle) * want_scaling, 1e-6) << "p " << p << " i " << i;
      EXPECT_NEAR(rope.sin(p)[i], std::sin(angle) * want_scaling, 1e-6) << "p " << p << " i " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Scalings, RopeYarnTest,
    ::testing::Values(YarnCase{64, 1e6, 4.0, 32768, 131072, std::nullopt},  // Qwen2.5 long-context example
                      YarnCase{128, 10000.0, 2.0, 0, 4096,
                               std::nullopt},  // L falls back to max_position_embeddings
                      YarnCase{24, 10000.0, 8.0, 2048, 16384, 1.25},        // explicit attention_factor
                      YarnCase{24, 10000.0, 1.0, 2048, 2048, std::nullopt}  // factor 1: scaling 1
                      ));

// out[i] = x[i] cos − x[i+h] sin, out[i+h] = x[i+h] cos + x[i] sin with the table's cos/sin
// recomputed in double from the (separately checked) inverse frequencies.
std::vector<double> ref_rope(const std::vector<double>& x, const std::vector<int32_t>& pos, int64_t heads,
                             int64_t hd, const RopeTable& rope) {
  std::vector<double> y(x.size());
  const int64_t half = hd / 2;
  const double scaling = rope.attention_scaling();
  for (size_t t = 0; t < pos.size(); ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      const double* v = x.data() + (t * heads + h) * hd;
      double* o = y.data() + (t * heads + h) * hd;
      for (int64_t i = 0; i < half; ++i) {
        const double angle = static_cast<float>(pos[t]) * rope.inv_freq()[i];
        const double c = std::cos(angle) * scaling, s = std::sin(angle) * scaling;
        o[i] = v[i] * c - v[i + half] * s;
        o[i + half] = v[i + half] * c + v[i] * s;
      }
    }
  }
  return y;
}

std::vector<int32_t> random_positions(int64_t n, int32_t max_pos, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> p(n);
  for (auto& v : p) v = static_cast<int32_t>(rng() % max_pos);
  p.front() = 0;
  p.back() = max_pos - 1;
  return p;
}

ModelConfig scaled_config(const char* type) {
  ModelConfig c = rope_config(24, 10000.0, 64);
  c.rope_scaling.type = type;
  c.rope_scaling.factor = 4.0;
  c.rope_scaling.original_max_position_embeddings = 16;
  return c;
}

TEST(Rope, ForwardMatchesDoubleReferenceAndBackwardIsItsTranspose) {
  const int64_t n = 11, heads = 3, hd = 24;
  for (const char* type : {"default", "linear", "llama3", "yarn"}) {
    SCOPED_TRACE(type);
    const RopeTable rope(scaled_config(type), 97);
    const auto pos = random_positions(n, 97, 1);
    const auto x = kt::random_floats(n * heads * hd, 2, -2.0f, 2.0f);
    std::vector<float> y = x;
    rope_forward(y.data(), pos.data(), n, heads, hd, rope);
    std::vector<double> xd = kt::to_double(x);
    kt::expect_close(y, ref_rope(xd, pos, heads, hd, rope), 2e-6, 2e-6, std::string("forward_") + type);

    // L = Σ r ⊙ rope(x): the gradient is rope_backward(r). The map is linear, so central
    // differences of the double reference are exact up to rounding.
    const auto r = kt::random_floats(n * heads * hd, 3);
    const std::vector<double> rd = kt::to_double(r);
    std::vector<float> dx = r;
    rope_backward(dx.data(), pos.data(), n, heads, hd, rope);
    const auto numeric =
        kt::numeric_grad(xd, [&] { return kt::dot(rd, ref_rope(xd, pos, heads, hd, rope)); });
    kt::expect_close(dx, numeric, 1e-6, 1e-5, std::string("backward_vs_finite_diff_") + type);

    // The backward undoes the forward (up to attention_scaling², which multiplies cos and sin).
    std::vector<float> back = y;
    rope_backward(back.data(), pos.data(), n, heads, hd, rope);
    const double s2 = static_cast<double>(rope.attention_scaling()) * rope.attention_scaling();
    std::vector<double> want(x.size());
    for (size_t i = 0; i < x.size(); ++i) want[i] = s2 * x[i];
    kt::expect_close(back, want, 2e-6, 2e-6, std::string("inverse_") + type);
  }
}

TEST(Rope, PositionZeroIsIdentity) {
  const RopeTable rope(rope_config(24, 10000.0), 4);
  const auto x = kt::random_floats(2 * 24, 4);
  std::vector<float> y = x;
  const int32_t pos[2] = {0, 0};
  rope_forward(y.data(), pos, 2, 1, 24, rope);
  EXPECT_EQ(y, x);
}

// q and k rotated to every position in [0, max_pos), one call each: [max_pos, hd].
struct RotatedAtEveryPosition {
  std::vector<float> q, k;
  int64_t hd;
  RotatedAtEveryPosition(const std::vector<float>& q1, const std::vector<float>& k1, const RopeTable& rope)
      : hd(static_cast<int64_t>(q1.size())) {
    const int64_t n = rope.max_positions();
    std::vector<int32_t> pos(n);
    for (int64_t p = 0; p < n; ++p) {
      pos[p] = static_cast<int32_t>(p);
      q.insert(q.end(), q1.begin(), q1.end());
      k.insert(k.end(), k1.begin(), k1.end());
    }
    rope_forward(q.data(), pos.data(), n, 1, hd, rope);
    rope_forward(k.data(), pos.data(), n, 1, hd, rope);
  }
  double score(int32_t pq, int32_t pk) const {
    double s = 0;
    for (int64_t i = 0; i < hd; ++i) s += static_cast<double>(q[pq * hd + i]) * k[pk * hd + i];
    return s;
  }
};

TEST(Rope, ScoreDependsOnlyOnRelativePosition) {
  const int64_t hd = 24;
  const RopeTable rope(rope_config(hd, 10000.0), 128);
  const RotatedAtEveryPosition r(kt::random_floats(hd, 5), kt::random_floats(hd, 6), rope);
  for (int32_t delta : {0, 1, 5, 17}) {
    const double base = r.score(delta, 0);
    // The float32 angles p·inv_freq lose ~p·6e-8 rad, hence the tolerance.
    for (int32_t shift : {1, 9, 40, 100})
      EXPECT_NEAR(r.score(delta + shift, shift), base, 2e-4) << "delta " << delta << " shift " << shift;
    // Negative control: a different distance gives a clearly different score.
    EXPECT_GT(std::abs(r.score(delta + 1, 0) - base), 1e-2) << "delta " << delta;
  }
}

}  // namespace
}  // namespace bidora
