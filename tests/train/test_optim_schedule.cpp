#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "core/error.h"
#include "train/lr_schedule.h"

namespace bidora::train {
namespace {

TEST(LrSchedule, LinearWarmupThenDecayBoundaries) {
  const LrSchedule s{ScheduleKind::Linear, 2e-4, 10, 110};
  EXPECT_EQ(s.lr(0), 0.0);  // first update with warmup: lr 0
  EXPECT_DOUBLE_EQ(s.lr(1), 2e-4 * 0.1);
  EXPECT_DOUBLE_EQ(s.lr(9), 2e-4 * 0.9);
  EXPECT_DOUBLE_EQ(s.lr(10), 2e-4);  // warmup end: full lr
  EXPECT_DOUBLE_EQ(s.lr(60), 2e-4 * 0.5);
  EXPECT_DOUBLE_EQ(s.lr(109), 2e-4 * 0.01);  // last update (step T-1)
  EXPECT_EQ(s.lr(110), 0.0);
  EXPECT_EQ(s.lr(200), 0.0);  // clamped, never negative
}

TEST(LrSchedule, CosineBoundaries) {
  const LrSchedule s{ScheduleKind::Cosine, 1.0, 4, 14};
  EXPECT_EQ(s.lr(0), 0.0);
  EXPECT_DOUBLE_EQ(s.lr(2), 0.5);
  EXPECT_DOUBLE_EQ(s.lr(4), 1.0);
  EXPECT_NEAR(s.lr(9), 0.5, 1e-15);  // half way through the decay
  EXPECT_DOUBLE_EQ(s.lr(13), 0.5 * (1 + std::cos(std::numbers::pi * 0.9)));
  EXPECT_NEAR(s.lr(14), 0.0, 1e-16);
  EXPECT_GE(s.lr(20), 0.0);
}

TEST(LrSchedule, ConstantWithWarmupAndNoWarmup) {
  const LrSchedule c{ScheduleKind::ConstantWithWarmup, 3.0, 3, 10};
  EXPECT_EQ(c.lr(0), 0.0);
  EXPECT_DOUBLE_EQ(c.lr(1), 1.0);
  EXPECT_DOUBLE_EQ(c.lr(3), 3.0);
  EXPECT_DOUBLE_EQ(c.lr(50), 3.0);
  const LrSchedule l{ScheduleKind::Linear, 1.0, 0, 4};
  EXPECT_DOUBLE_EQ(l.lr(0), 1.0);  // no warmup: first step at the full rate
  EXPECT_DOUBLE_EQ(l.lr(3), 0.25);
}

TEST(LrSchedule, WarmupRatioRoundsUpAndNamesRoundTrip) {
  EXPECT_EQ(warmup_steps_for(1000, 0, 0.03), 30);
  EXPECT_EQ(warmup_steps_for(101, 0, 0.1), 11);  // ceil(10.1)
  EXPECT_EQ(warmup_steps_for(101, 5, 0.1), 5);   // explicit steps win
  for (const char* n : {"linear", "cosine", "constant_with_warmup"})
    EXPECT_STREQ(schedule_kind_name(*schedule_kind_from_string(n)), n);
  EXPECT_FALSE(schedule_kind_from_string("polynomial").has_value());
}

TEST(LrSchedule, MetadataMismatchIsAnError) {
  const LrSchedule s{ScheduleKind::Cosine, 1e-4, 5, 50};
  EXPECT_NO_THROW(s.check_metadata(s.to_metadata(), "f"));
  auto md = s.to_metadata();
  md["bidora.scheduler.num_training_steps"] = "60";
  try {
    s.check_metadata(md, "ckpt/optimizer.safetensors");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("num_training_steps"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("ckpt/optimizer.safetensors"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace bidora::train
