#pragma once
// `bidora config`: shows the resolved, validated training configuration and where each value
// came from, so a user can check a YAML file and flags before training.
#include <cstdio>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/training_plan.h"
#include "config/train_config.h"

namespace bidora::cli {

// What the configuration means on this machine: threads, and, when model.name_or_path points to
// a model whose config.json can be read, its size and the auto-hardware plan (training_plan.h).
struct ConfigPlan {
  int threads = 0;
  int64_t available_bytes = 0;
  std::string model_dir;             // resolved directory, empty when unknown
  std::optional<ModelConfig> model;  // its config.json
  std::optional<TrainingPlan> training;
  std::string note;  // why the model part is missing, if it is
};
// `origins` marks the values the user set, which the plan never changes.
ConfigPlan make_config_plan(const TrainConfig& cfg, const ConfigOrigins& origins, const HardwareInfo& hw);

void print_config_table(const TrainConfig& cfg, const ConfigOrigins& origins, const ConfigPlan& plan,
                        std::FILE* out);
// {"config": {...}, "sources": {path: origin}, "missing_for_training": [...], "derived": {...}}
nlohmann::json config_report_json(const TrainConfig& cfg, const ConfigOrigins& origins,
                                  const ConfigPlan& plan);

}  // namespace bidora::cli
