// Value checks. Every message names the field, the value given and what is allowed, so a user
// can fix the config without reading the source.
#include <fmt/format.h>

#include <filesystem>

#include "config/config_fields.h"
#include "config/train_config.h"
#include "core/error.h"

namespace bidora {

std::vector<std::string> validation_errors(const TrainConfig& cfg) {
  using config::FieldType;
  std::vector<std::string> errors;
  for (const auto& f : config::config_fields()) {
    if (f.type != FieldType::Int && f.type != FieldType::Float) continue;
    const auto v = f.get(cfg);
    const double x =
        f.type == FieldType::Int ? static_cast<double>(std::get<int64_t>(v)) : std::get<double>(v);
    if (!f.range.contains(x)) {
      errors.push_back(fmt::format("{} = {} is out of range (allowed: {})", f.path, config::format_value(v),
                                   f.range.describe(f.key())));
    }
  }

  // Cases a single range cannot express.
  if (cfg.training.max_steps == 0) {
    errors.push_back(
        "training.max_steps = 0 is not allowed (allowed: -1 to run all epochs, or max_steps >= 1)");
  }
  if (cfg.adapter.targets.empty()) {
    errors.push_back(fmt::format("adapter.targets = [] is empty (allowed: one or more of {}, or all-linear)",
                                 fmt::join(kLinearModules, ", ")));
  }
  if (cfg.model.trust_remote_code) {
    errors.push_back(
        "model.trust_remote_code = true is not supported (allowed: false; bidora runs no model code, only "
        "the "
        "built-in llama, mistral, qwen2 and qwen3 architectures)");
  }
  if (cfg.adapter.method == AdapterMethod::BiDoRA && cfg.data.val_file.empty() &&
      cfg.data.val_split_ratio <= 0) {
    errors.push_back(
        fmt::format("data.val_split_ratio = {} with adapter.method = bidora and no data.val_file: BiDoRA "
                    "trains the magnitudes "
                    "on a validation split (allowed: 0 < val_split_ratio <= 0.5, or set data.val_file)",
                    cfg.data.val_split_ratio));
  }
  if (!cfg.data.train_file.empty() && !cfg.data.val_file.empty()) {
    std::error_code ec;
    const bool same = cfg.data.train_file == cfg.data.val_file ||
                      std::filesystem::equivalent(cfg.data.train_file, cfg.data.val_file, ec);
    if (same) {
      errors.push_back(
          fmt::format("data.val_file = {} is the training file (allowed: a different file, or empty to "
                      "split off data.val_split_ratio)",
                      cfg.data.val_file));
    }
  }
  return errors;
}

void validate(const TrainConfig& cfg) {
  const auto errors = validation_errors(cfg);
  if (errors.empty()) return;
  std::string msg = errors.size() == 1 ? "invalid configuration: " : "invalid configuration:\n  ";
  for (size_t i = 0; i < errors.size(); ++i) {
    if (i) msg += "\n  ";
    msg += errors[i];
  }
  throw Error(msg);
}

std::vector<std::string> missing_for_training(const TrainConfig& cfg) {
  std::vector<std::string> missing;
  if (cfg.model.name_or_path.empty()) missing.push_back("model.name_or_path (--model) is not set");
  if (cfg.data.train_file.empty()) missing.push_back("data.train_file (--train-file) is not set");
  return missing;
}

}  // namespace bidora
