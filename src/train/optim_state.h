#pragma once
// Optimiser + scheduler state for checkpoint-<step>/ (the trainer picks the file name, e.g.
// "optimizer.safetensors"). One safetensors file, written atomically:
//   tensors  "<param>.<field>" from Optimizer::save_state (fp32 m/v, or bnb's 8-bit codes+absmaxes)
//   metadata "bidora.optimizer" (kind), "bidora.optimizer.step" (optimiser step count),
//            "bidora.optimizer.beta1/beta2/eps" (%.17g), "bidora.scheduler.*" (LrSchedule)
// Reading validates the kind, hyper-parameters, schedule, and every tensor's name, dtype and
// shape, and rejects tensors of parameters this run does not train; errors name the file.
#include <string>

#include "train/lr_schedule.h"
#include "train/optim_optimizer.h"

namespace bidora::train {

void save_optimizer_state(const std::string& path, const Optimizer& opt, const LrSchedule& schedule);

// Restores opt's states and step count; returns the scheduler position (= the step count).
int64_t load_optimizer_state(const std::string& path, Optimizer& opt, const LrSchedule& schedule);

}  // namespace bidora::train
