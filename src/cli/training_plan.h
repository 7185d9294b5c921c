#pragma once
// The auto-hardware plan: turns the configuration's hardware-dependent choices into concrete ones
// for a given model and machine, each with a one-line reason. `bidora config`, `bidora estimate`
// and `bidora train` make and print the same plan.
//
// With hardware.auto_hardware on (the default), for the memory available on the training device
// (host RAM today; see DeviceMemory):
//   1. storage: quantization auto, or bf16 left at its default, takes the first of bf16, int8,
//      nf4 whose estimate fits the configured run; an explicit quantization is kept;
//   2. if nothing fits even in the storage chosen last, training.batch_size is halved while
//      training.gradient_accumulation_steps grows so that batch x accumulation stays the same;
//   3. only if batch 1 does not fit either, training.max_seq_len is halved (not below
//      kMinPlannedSeqLen), which truncates longer examples;
//   4. threads: hardware.threads when set, else the physical cores this process may use.
// A value the user set (its origin is not "default") is never changed: when the run does not fit
// without changing it, the plan fails naming the field, the memory needed and the memory there is.
// With auto_hardware off the configuration is used as given (quantization auto = bf16, threads 0
// = every usable CPU) and only the estimate is reported.
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/train_config.h"
#include "core/hardware.h"
#include "model/memory_model.h"

namespace bidora::cli {

// The run the memory model should estimate for this configuration.
TrainingShape training_shape(const TrainConfig& cfg);

// max_seq_len is never planned below this many tokens.
inline constexpr int64_t kMinPlannedSeqLen = 256;

// Memory of the device training runs on. Only the CPU backend exists, so this is the host's
// available RAM; a GPU backend would pass its free VRAM here (and the host RAM for what stays
// on the host) without changing the planning rules.
struct DeviceMemory {
  std::string name = "RAM";
  int64_t available_bytes = 0;
};
DeviceMemory host_memory(const HardwareInfo& hw);

// One decided value and why, e.g. {"training.batch_size", "2", true, "batch 4 needs 9.1 GiB ..."}.
struct PlanChoice {
  std::string field;
  std::string value;
  bool changed = false;  // differs from the configured value
  std::string reason;
};

struct TrainingPlan {
  WeightStorage storage = WeightStorage::BF16;
  int64_t batch_size = 0;
  int64_t grad_accum = 0;
  int64_t max_seq_len = 0;
  int threads = 0;
  DeviceMemory device;
  MemoryEstimate estimate;  // of the planned run
  bool fits = false;        // estimate within kFitMargin of the device memory
  std::vector<PlanChoice> choices;
  // Non-empty when auto_hardware is on and the run cannot be made to fit: names the field(s) in
  // the way, the memory needed and the memory available. `train` fails with it.
  std::string error;

  int64_t usable_bytes() const;                       // kFitMargin of device.available_bytes
  TrainingShape shape(const TrainConfig& cfg) const;  // the planned run's shape
  // The configuration with the planned batch, accumulation, sequence length and threads.
  TrainConfig apply(TrainConfig cfg) const;
};

// `origins` tells which values the user set (see ConfigOrigins); a missing entry means default.
TrainingPlan plan_training(const TrainConfig& cfg, const ConfigOrigins& origins, const ModelConfig& model,
                           const DeviceMemory& device, const HardwareInfo& hw);

// hardware.threads when > 0; else, with auto_hardware, the usable physical cores, without it the
// usable logical CPUs.
int plan_threads(const TrainConfig& cfg, const HardwareInfo& hw);

// "Plan: <field> = <value> (<reason>)" lines for tables.
std::vector<std::string> plan_lines(const TrainingPlan& plan);
// {"storage", "batch_size", ..., "fits", "error", "choices": [...], "estimate": {...}}.
nlohmann::json plan_json(const TrainingPlan& plan);
// {"<part>_bytes": ..., "total_bytes": ...} for every part of the estimate.
nlohmann::json estimate_json(const MemoryEstimate& e);

}  // namespace bidora::cli
