#include <fmt/format.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "optim_test_util.h"
#include "train/optim_clip.h"

namespace bidora::train {
namespace {

test_util::ParamSet random_grads(uint32_t seed, std::vector<size_t> sizes, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  test_util::ParamSet ps;
  for (size_t i = 0; i < sizes.size(); ++i) {
    ps.add(fmt::format("p{}", i), std::vector<float>(sizes[i], 0.0f));
    for (float& g : ps.grads.back()) g = nd(rng);
  }
  return ps;
}

double naive_norm(const test_util::ParamSet& ps) {
  double s = 0;
  for (const auto& g : ps.grads)
    for (float x : g) s += double(x) * double(x);
  return std::sqrt(s);
}

TEST(ClipGradNorm, ClipsToMaxNormAndReturnsPreClipNorm) {
  auto ps = random_grads(1, {100, 3000, 7}, 1.0f);
  const auto before = ps.grads;
  const double want = naive_norm(ps);
  const double got = clip_grad_norm(ps.refs(), 1.0);
  EXPECT_NEAR(got, want, 1e-6 * want);
  EXPECT_NEAR(naive_norm(ps), 1.0, 1e-5);  // max_norm / (norm + 1e-6) * norm
  const float coef = 1.0f / (static_cast<float>(got) + 1e-6f);
  for (size_t i = 0; i < ps.grads.size(); ++i)
    for (size_t j = 0; j < ps.grads[i].size(); ++j) ASSERT_EQ(ps.grads[i][j], before[i][j] * coef);
}

TEST(ClipGradNorm, LeavesSmallGradientsUntouched) {
  auto ps = random_grads(2, {500, 20}, 0.01f);
  const auto before = ps.grads;
  const double norm = clip_grad_norm(ps.refs(), 5.0);
  EXPECT_LT(norm, 5.0);
  EXPECT_EQ(ps.grads, before);
  EXPECT_EQ(clip_grad_norm(ps.refs(), 0.0), norm);  // max_norm 0: norm only
  EXPECT_EQ(ps.grads, before);
}

TEST(ClipGradNorm, NormIsIndependentOfThreadCount) {
  auto ps = random_grads(3, {300000, 70001}, 0.5f);  // several 64Ki chunks
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one = grad_norm(ps.refs());
  omp_set_num_threads(2);
  const double two = grad_norm(ps.refs());
  omp_set_num_threads(saved);
  EXPECT_EQ(one, two);
  EXPECT_NEAR(one, naive_norm(ps), 1e-6 * one);
}

TEST(ClipGradNorm, ScaleGradsForTokenNormalisation) {
  auto ps = random_grads(4, {10}, 1.0f);
  const auto before = ps.grads;
  scale_grads(ps.refs(), 0.25f);
  for (size_t j = 0; j < 10; ++j) EXPECT_EQ(ps.grads[0][j], before[0][j] * 0.25f);
}

TEST(ParamRegistry, HfTrainerDecayRule) {
  // LoRA factors and DoRA magnitudes are decayed (not bias, not a norm); norms and biases are not.
  EXPECT_TRUE(hf_trainer_decays("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
  EXPECT_TRUE(hf_trainer_decays("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"));
  EXPECT_TRUE(hf_trainer_decays("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"));
  EXPECT_TRUE(hf_trainer_decays("base_model.model.lm_head.weight"));
  EXPECT_FALSE(hf_trainer_decays("base_model.model.model.layers.0.self_attn.q_proj.bias"));
  EXPECT_FALSE(hf_trainer_decays("model.layers.0.input_layernorm.weight"));
  EXPECT_FALSE(hf_trainer_decays("model.norm.weight"));
  EXPECT_FALSE(hf_trainer_decays("model.layers.0.self_attn.q_norm.weight"));
  EXPECT_TRUE(
      hf_trainer_decays("model.layers.0.normalizer_free.weight"));  // "norm" only as a whole component
}

TEST(ParamRegistry, RejectsBadRegistrations) {
  float v[2], g[2];
  std::vector<ParamRef> dup{{"a", v, g, 2, true}, {"a", v, g, 2, true}};
  EXPECT_THROW(validate_params(dup), Error);
  std::vector<ParamRef> empty{{"a", v, g, 0, true}};
  EXPECT_THROW(validate_params(empty), Error);
  std::vector<ParamRef> null{{"a", v, nullptr, 2, true}};
  EXPECT_THROW(validate_params(null), Error);
}

}  // namespace
}  // namespace bidora::train
