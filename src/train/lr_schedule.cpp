#include "train/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace bidora::train {

std::optional<ScheduleKind> schedule_kind_from_string(std::string_view s) {
  if (s == "linear") return ScheduleKind::Linear;
  if (s == "cosine") return ScheduleKind::Cosine;
  if (s == "constant_with_warmup") return ScheduleKind::ConstantWithWarmup;
  return std::nullopt;
}

const char* schedule_kind_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::Linear:
      return "linear";
    case ScheduleKind::Cosine:
      return "cosine";
    case ScheduleKind::ConstantWithWarmup:
      return "constant_with_warmup";
  }
  return "?";
}

double LrSchedule::factor(int64_t step) const {
  const auto k = static_cast<double>(step);
  const auto w = static_cast<double>(warmup_steps);
  const auto t = static_cast<double>(total_steps);
  if (step < warmup_steps) return k / std::max(1.0, w);
  switch (kind) {
    case ScheduleKind::Linear:
      return std::max(0.0, (t - k) / std::max(1.0, t - w));
    case ScheduleKind::Cosine: {
      const double progress = (k - w) / std::max(1.0, t - w);
      return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * num_cycles * 2.0 * progress)));
    }
    case ScheduleKind::ConstantWithWarmup:
      return 1.0;
  }
  return 1.0;
}

std::map<std::string, std::string> LrSchedule::to_metadata() const {
  return {{"bidora.scheduler.type", schedule_kind_name(kind)},
          {"bidora.scheduler.warmup_steps", std::to_string(warmup_steps)},
          {"bidora.scheduler.num_training_steps", std::to_string(total_steps)}};
}

void LrSchedule::check_metadata(const std::map<std::string, std::string>& md,
                                const std::string& source) const {
  for (const auto& [key, want] : to_metadata()) {
    auto it = md.find(key);
    BIDORA_CHECK(it != md.end(), "{}: missing metadata '{}' (expected '{}')", source, key, want);
    BIDORA_CHECK(it->second == want,
                 "{}: metadata '{}' is '{}' but this run uses '{}'; resume needs the same schedule", source,
                 key, it->second, want);
  }
}

int64_t warmup_steps_for(int64_t total_steps, int64_t warmup_steps, double warmup_ratio) {
  if (warmup_steps > 0) return warmup_steps;
  return static_cast<int64_t>(std::ceil(static_cast<double>(total_steps) * warmup_ratio));
}

}  // namespace bidora::train
