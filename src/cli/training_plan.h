#pragma once
// Turns the configuration's hardware-dependent choices into concrete ones for a given model and
// machine: the frozen weight storage (quantization: auto / none) and the thread count (threads: 0).
// `bidora config` shows the result; `bidora train` will use the same functions.
#include <optional>
#include <string>

#include "config/train_config.h"
#include "core/hardware.h"
#include "model/memory_model.h"

namespace bidora::cli {

// The run the memory model should estimate for this configuration.
TrainingShape training_shape(const TrainConfig& cfg);

struct StoragePlan {
  WeightStorage storage = WeightStorage::BF16;
  MemoryEstimate estimate;
  std::string reason;  // why this storage, for display
};

// quantization: f32/bf16/nf4/int8 as given; none = the checkpoint's dtype (bf16 stays bf16,
// anything else f32 so f16 values stay exact); auto = the best storage whose estimate fits
// `available_bytes` (bf16, then int8, then nf4), or bf16 when hardware.auto_hardware is off.
// Throws Error when auto finds nothing that fits, naming the smallest need and the RAM.
StoragePlan plan_storage(const TrainConfig& cfg, const ModelConfig& model, int64_t available_bytes);

// hardware.threads, or the CPUs usable by this process when it is 0.
int plan_threads(const TrainConfig& cfg, const HardwareInfo& hw);

}  // namespace bidora::cli
