// Replays the PyTorch references of tests/reference/optim_reference.py step by step.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "optim_test_util.h"
#include "quant/dynamic_map.h"
#include "train/lr_schedule.h"
#include "train/optim_adamw.h"
#include "train/optim_adamw8bit.h"
#include "train/optim_clip.h"

namespace bidora::train {
namespace {

using test_util::read_f32;
using test_util::read_f64;

const char* kAdamWNames[] = {"layers.0.q_proj.lora_A.weight", "layers.0.q_proj.lora_B.weight",
                             "layers.0.q_proj.lora_magnitude_vector", "layers.0.input_layernorm.weight"};

TEST(OptimReference, AdamWWithClippingAndLinearScheduleMatchesTorch) {
  const SafetensorsFile ref(test_util::optim_ref_dir() + "/adamw.safetensors");
  const int steps = std::stoi(ref.metadata().at("steps"));
  const double base_lr = std::stod(ref.metadata().at("base_lr"));
  const double max_norm = std::stod(ref.metadata().at("max_norm"));
  AdamWConfig cfg;
  cfg.weight_decay = std::stod(ref.metadata().at("weight_decay"));
  const LrSchedule sched{ScheduleKind::Linear, base_lr, std::stoll(ref.metadata().at("warmup")), steps};

  test_util::ParamSet ps;
  for (const char* n : kAdamWNames) ps.add(n, read_f32(ref, std::string("init.") + n), hf_trainer_decays(n));
  ASSERT_FALSE(ps.decay[3]);  // the layernorm weight is in the no-decay group
  AdamW opt(ps.refs(), cfg);
  const std::vector<double> norms = read_f64(ref, "grad_norm");
  const std::vector<double> lrs = read_f64(ref, "lr");
  int clipped = 0;
  double worst = 0;
  size_t identical = 0, total = 0;
  for (int k = 0; k < steps; ++k) {
    for (size_t i = 0; i < ps.names.size(); ++i)
      ps.set_grad(i, read_f32(ref, "grad." + std::to_string(k) + "." + ps.names[i]));
    const double norm = clip_grad_norm(opt.params(), max_norm);
    EXPECT_NEAR(norm, norms[k], 2e-6 * norms[k]) << "step " << k;
    clipped += norms[k] > max_norm;
    EXPECT_DOUBLE_EQ(sched.lr(k), lrs[k]) << "step " << k;
    opt.step(sched.lr(k));
    for (size_t i = 0; i < ps.names.size(); ++i) {
      const std::vector<float> want = read_f32(ref, "param." + std::to_string(k) + "." + ps.names[i]);
      // Relative to the tensor's scale: elements that pass near 0 have no meaningful per-element
      // relative error. Differences are ulp-level (torch's float32 norm reduction and its
      // vectorised FMA contractions are not reproducible exactly).
      double max_diff = 0, max_abs = 0;
      for (size_t j = 0; j < want.size(); ++j) {
        max_diff = std::max(max_diff, std::fabs(double(ps.values[i][j]) - want[j]));
        max_abs = std::max(max_abs, std::fabs(double(want[j])));
        identical += ps.values[i][j] == want[j];
        ++total;
      }
      worst = std::max(worst, max_diff / max_abs);
      ASSERT_LT(max_diff / max_abs, 1e-6) << ps.names[i] << " step " << k;
    }
  }
  EXPECT_GT(clipped, 3);  // the reference exercises both branches of clipping
  EXPECT_LT(clipped, steps - 3);
  std::printf("AdamW vs torch over %d steps: worst max|diff|/max|p| %.3g, %.2f%% of values bit-identical\n",
              steps, worst, 100.0 * double(identical) / double(total));
  EXPECT_GT(double(identical) / double(total), 0.95);
}

const char* k8bitNames[] = {"big.lora_A.weight", "exact.lora_B.weight", "small.lora_magnitude_vector"};

TEST(OptimReference, AdamW8bitMatchesBitsandbytesReimplementationBitForBit) {
  const SafetensorsFile ref(test_util::optim_ref_dir() + "/adamw8bit.safetensors");
  // The reference was computed with the same code tables.
  const std::vector<float> code1 = read_f32(ref, "code1"), code2 = read_f32(ref, "code2");
  for (size_t i = 0; i < 256; ++i) {
    ASSERT_EQ(code1[i], quant::dynamic_map_signed()[i]) << i;
    ASSERT_EQ(code2[i], quant::dynamic_map_unsigned()[i]) << i;
  }
  const int steps = std::stoi(ref.metadata().at("steps"));
  AdamWConfig cfg;
  cfg.weight_decay = std::stod(ref.metadata().at("weight_decay"));
  const LrSchedule sched{ScheduleKind::Cosine, std::stod(ref.metadata().at("base_lr")),
                         std::stoll(ref.metadata().at("warmup")), steps};
  test_util::ParamSet ps;
  const bool decays[] = {true, false, true};
  for (int i = 0; i < 3; ++i)
    ps.add(k8bitNames[i], read_f32(ref, std::string("init.") + k8bitNames[i]), decays[i]);
  AdamW8bit opt(ps.refs(), cfg);
  EXPECT_TRUE(opt.is_8bit(0));
  EXPECT_TRUE(opt.is_8bit(1));
  EXPECT_FALSE(opt.is_8bit(2));
  for (int k = 0; k < steps; ++k) {
    for (size_t i = 0; i < ps.names.size(); ++i)
      ps.set_grad(i, read_f32(ref, "grad." + std::to_string(k) + "." + ps.names[i]));
    opt.step(sched.lr(k));
    for (size_t i = 0; i < ps.names.size(); ++i) {
      const std::vector<float> want = read_f32(ref, "param." + std::to_string(k) + "." + ps.names[i]);
      size_t mismatches = 0;
      for (size_t j = 0; j < want.size(); ++j) mismatches += ps.values[i][j] != want[j];
      ASSERT_EQ(mismatches, 0u) << ps.names[i] << " step " << k;
    }
  }
  // Final states: codes and absmaxes identical.
  SafetensorsWriter w;
  opt.save_state(w);
  const std::string path = bidora::test::make_temp_dir("optim8") + "/state.safetensors";
  w.write(path);
  const SafetensorsFile mine(path);
  for (const char* n : k8bitNames) {
    for (const char* field : {"state1", "state2", "absmax1", "absmax2"}) {
      const std::string key = std::string(n) + "." + field;
      const TensorView* want = ref.find("final." + key);
      const TensorView* got = mine.find(key);
      ASSERT_EQ(want == nullptr, got == nullptr) << key;
      if (!want) continue;
      ASSERT_EQ(want->dtype, got->dtype) << key;
      ASSERT_EQ(want->nbytes, got->nbytes) << key;
      EXPECT_EQ(std::memcmp(want->data, got->data, want->nbytes), 0) << key;
    }
  }
}

TEST(OptimReference, SchedulesMatchLambdaLR) {
  const SafetensorsFile ref(test_util::optim_ref_dir() + "/schedules.safetensors");
  int cases = 0;
  for (const char* kind : {"linear", "cosine", "constant_with_warmup"}) {
    for (auto [w, t] : {std::pair<int64_t, int64_t>{0, 10}, {3, 20}, {5, 5}, {7, 100}}) {
      const std::string key = fmt::format("{}.w{}.t{}", kind, w, t);
      const std::vector<double> lrs = read_f64(ref, key);
      const LrSchedule s{*schedule_kind_from_string(kind), 3e-4, w, t};
      for (size_t k = 0; k < lrs.size(); ++k)
        EXPECT_DOUBLE_EQ(s.lr(static_cast<int64_t>(k)), lrs[k]) << key << " " << k;
      ++cases;
    }
  }
  EXPECT_EQ(cases, 12);
}

}  // namespace
}  // namespace bidora::train
