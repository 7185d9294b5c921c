// The logits processors and the sampler against distributions computed by hand from the
// transformers definitions (generate/sampler.h): repetition penalty, temperature, top-k with ties,
// top-p's smallest-set rule, their order, greedy decoding, seeded draws and their frequencies.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include "core/error.h"
#include "generate/sampler.h"

namespace bidora {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> log_probs(const std::vector<double>& p) {
  std::vector<float> v;
  for (double x : p) v.push_back(static_cast<float>(std::log(x)));
  return v;
}

TEST(RepetitionPenalty, DividesPositiveAndMultipliesNegativeLogitsOfSeenTokensOnce) {
  std::vector<float> l = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 0.0f};
  const std::vector<int32_t> seen = {0, 1, 1, 4, 5, 1};  // 1 three times: penalised once
  apply_repetition_penalty(l, seen, 2.0);
  EXPECT_EQ(l, (std::vector<float>{1.0f, -2.0f, 0.5f, 3.0f, -4.0f, 0.0f}));
  std::vector<float> same = {2.0f, -1.0f};
  apply_repetition_penalty(same, seen, 1.0);
  EXPECT_EQ(same, (std::vector<float>{2.0f, -1.0f}));
}

TEST(Temperature, DividesEveryLogit) {
  std::vector<float> l = {1.0f, -2.0f, 3.0f, -kInf};
  apply_temperature(l, 0.5);
  EXPECT_EQ(l, (std::vector<float>{2.0f, -4.0f, 6.0f, -kInf}));
}

TEST(TopK, KeepsTheKLargestAndTheirTies) {
  std::vector<float> l = {1.0f, 3.0f, 2.0f, 3.0f, 0.0f};
  apply_top_k(l, 3);
  EXPECT_EQ(l, (std::vector<float>{-kInf, 3.0f, 2.0f, 3.0f, -kInf}));
  // k = 2 and a tie at the k-th value: transformers keeps every logit >= the k-th largest.
  std::vector<float> ties = {1.0f, 2.0f, 2.0f, 2.0f, 0.0f};
  apply_top_k(ties, 2);
  EXPECT_EQ(ties, (std::vector<float>{-kInf, 2.0f, 2.0f, 2.0f, -kInf}));
  std::vector<float> off = {1.0f, 2.0f};
  apply_top_k(off, 0);
  apply_top_k(off, 5);
  EXPECT_EQ(off, (std::vector<float>{1.0f, 2.0f}));
}

TEST(TopP, KeepsTheSmallestMostProbableSetReachingP) {
  // Probabilities 0.5, 0.25, 0.15, 0.1: {0.5} has 0.5 < 0.7, {0.5, 0.25} has 0.75 >= 0.7.
  std::vector<float> l = log_probs({0.25, 0.1, 0.5, 0.15});
  apply_top_p(l, 0.7);
  EXPECT_EQ(l[1], -kInf);
  EXPECT_EQ(l[3], -kInf);
  EXPECT_NE(l[0], -kInf);
  EXPECT_NE(l[2], -kInf);
  const auto p = softmax(l);
  EXPECT_NEAR(p[2], 0.5 / 0.75, 1e-6);
  EXPECT_NEAR(p[0], 0.25 / 0.75, 1e-6);
  // 0.4: the most probable token alone already reaches it.
  std::vector<float> one = log_probs({0.25, 0.1, 0.5, 0.15});
  apply_top_p(one, 0.4);
  EXPECT_EQ(softmax(one), (std::vector<double>{0.0, 0.0, 1.0, 0.0}));
  // 0.95: the three largest sum to 0.9 < 0.95, so every token stays.
  std::vector<float> all = log_probs({0.25, 0.1, 0.5, 0.15});
  apply_top_p(all, 0.95);
  for (float x : all) EXPECT_NE(x, -kInf);
  std::vector<float> most = log_probs({0.25, 0.1, 0.5, 0.15});
  apply_top_p(most, 0.85);  // 0.5 + 0.25 + 0.15 = 0.9 >= 0.85
  EXPECT_EQ(most[1], -kInf);
  EXPECT_NE(most[3], -kInf);
}

// All processors in transformers' order on one example, against the distribution derived by hand:
// penalty 1.5 on token 4 (4 → 8/3), temperature 2 → [0, 0.5, 1, 1.5, 4/3], top-k 3 keeps tokens 2,
// 3, 4; their softmax is e^1, e^1.5, e^(4/3) over the sum, the smallest of which (≈0.247) is
// <= 1 − 0.7, so top-p 0.7 removes token 2 and leaves tokens 3 and 4.
TEST(ProcessLogits, AppliesPenaltyTemperatureTopKTopPInThatOrder) {
  std::vector<float> l = {0.0f, 1.0f, 2.0f, 3.0f, 4.0f};
  const std::vector<int32_t> seen = {4};
  SamplingParams p{.temperature = 2.0, .top_k = 3, .top_p = 0.7, .repetition_penalty = 1.5};
  process_logits(l, seen, p);
  const auto got = softmax(l);
  const double e3 = std::exp(1.5), e4 = std::exp(4.0 / 3.0);
  const std::vector<double> want = {0.0, 0.0, 0.0, e3 / (e3 + e4), e4 / (e3 + e4)};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6) << i;

  // Without top-p the three top-k tokens stay, with their softmax.
  std::vector<float> l2 = {0.0f, 1.0f, 2.0f, 3.0f, 4.0f};
  p.top_p = 1.0;
  process_logits(l2, seen, p);
  const auto got2 = softmax(l2);
  const double e2 = std::exp(1.0), s = e2 + e3 + e4;
  EXPECT_NEAR(got2[2], e2 / s, 1e-6);
  EXPECT_NEAR(got2[3], e3 / s, 1e-6);
  EXPECT_NEAR(got2[4], e4 / s, 1e-6);
  EXPECT_EQ(got2[0], 0.0);
}

TEST(Sampler, GreedyTakesTheFirstMaximumAfterTheRepetitionPenaltyOnly) {
  SamplingParams p{.temperature = 0.0, .top_k = 1, .top_p = 0.1, .repetition_penalty = 2.0};
  Sampler s(p, 1);
  std::vector<float> l = {3.0f, 2.0f, 1.0f};
  const std::vector<int32_t> seen = {0};
  EXPECT_EQ(s.next(l, seen), 1);  // 3 / 2 = 1.5 < 2
  std::vector<float> ties = {1.0f, 5.0f, 5.0f};
  EXPECT_EQ(s.next(ties, {}), 1);
}

TEST(Sampler, DrawsFollowTheDistributionAndTheSeed) {
  SamplingParams p{.temperature = 1.0, .top_k = 0, .top_p = 1.0, .repetition_penalty = 1.0};
  const std::vector<double> probs = {0.5, 0.3, 0.2};
  Sampler a(p, 42), b(p, 42), c(p, 43);
  std::map<int32_t, int> counts;
  std::vector<int32_t> seq_a, seq_b, seq_c;
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) {
    std::vector<float> la = log_probs(probs), lb = la, lc = la;
    seq_a.push_back(a.next(la, {}));
    seq_b.push_back(b.next(lb, {}));
    seq_c.push_back(c.next(lc, {}));
    ++counts[seq_a.back()];
  }
  EXPECT_EQ(seq_a, seq_b);
  EXPECT_NE(seq_a, seq_c);
  // Binomial standard deviation sqrt(p(1-p)/n) <= 0.0036: 0.015 is over 4 sigma.
  for (int32_t t = 0; t < 3; ++t) EXPECT_NEAR(counts[t] / static_cast<double>(draws), probs[t], 0.015) << t;
}

TEST(Sampler, NeverDrawsARemovedToken) {
  SamplingParams p{.temperature = 1.0, .top_k = 2, .top_p = 1.0, .repetition_penalty = 1.0};
  Sampler s(p, 7);
  for (int i = 0; i < 2000; ++i) {
    std::vector<float> l = {1.0f, 0.9f, 0.8f, 0.7f};
    const int32_t t = s.next(l, {});
    EXPECT_TRUE(t == 0 || t == 1) << t;
  }
}

TEST(SamplingParams, RejectsValuesOutsideTheirRangeNamingTheOption) {
  auto msg = [](SamplingParams p) {
    try {
      p.validate();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(msg({.temperature = -0.5}).find("--temperature"), std::string::npos);
  EXPECT_NE(msg({.top_k = -1}).find("--top-k"), std::string::npos);
  EXPECT_NE(msg({.top_p = 0.0}).find("--top-p"), std::string::npos);
  EXPECT_NE(msg({.top_p = 1.5}).find("--top-p"), std::string::npos);
  EXPECT_NE(msg({.repetition_penalty = 0.0}).find("--repetition-penalty"), std::string::npos);
  EXPECT_EQ(msg({}), "");
  EXPECT_THROW(Sampler(SamplingParams{.temperature = -1.0}, 0), Error);
}

}  // namespace
}  // namespace bidora
