#pragma once
// Learning-rate schedules as transformers' get_scheduler builds them (LambdaLR over optimiser
// steps). `step` is the 0-based optimiser step: the update number k (k = 0, 1, ...) uses
// lr = base_lr * factor(k), which is what LambdaLR holds after k calls of scheduler.step().
//   linear:               k < W: k / max(1, W);  else max(0, (T - k) / max(1, T - W))
//   cosine:               k < W: k / max(1, W);  else max(0, 0.5 * (1 + cos(pi * 2c * p))),
//                         p = (k - W) / max(1, T - W), c = num_cycles = 0.5
//   constant_with_warmup: k < W: k / max(1, W);  else 1
// with W = warmup steps and T = num_training_steps. All in double, as Python computes them.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace bidora::train {

enum class ScheduleKind { Linear, Cosine, ConstantWithWarmup };

std::optional<ScheduleKind> schedule_kind_from_string(std::string_view s);  // HF lr_scheduler_type names
const char* schedule_kind_name(ScheduleKind k);

struct LrSchedule {
  ScheduleKind kind = ScheduleKind::Linear;
  double base_lr = 0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;  // num_training_steps
  double num_cycles = 0.5;  // cosine only

  double factor(int64_t step) const;
  double lr(int64_t step) const { return base_lr * factor(step); }

  // Checkpoint metadata ("bidora.scheduler.*") and its validated inverse: a resumed run must use
  // the same schedule, otherwise it would not continue the interrupted one.
  std::map<std::string, std::string> to_metadata() const;
  void check_metadata(const std::map<std::string, std::string>& md, const std::string& source) const;
};

// TrainingArguments.get_warmup_steps: warmup_steps if > 0, else ceil(total * warmup_ratio).
int64_t warmup_steps_for(int64_t total_steps, int64_t warmup_steps, double warmup_ratio);

}  // namespace bidora::train
