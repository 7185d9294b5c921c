#pragma once
// The training recipe, top to bottom: model + tokenizer → data → adapters → optimiser and
// schedule → epochs of accumulated steps with periodic evaluation → PEFT adapters on disk.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "config/train_config.h"
#include "model/frozen_matrix.h"

namespace bidora::train {

struct TrainLog {
  int64_t step = 0, total_steps = 0;
  double epoch = 0;
  double loss = 0, grad_norm = 0, lr = 0;
  double tokens_per_second = 0;
  double elapsed_seconds = 0;
  std::optional<double> val_loss;  // set on evaluation entries
};

struct TrainResult {
  int64_t steps = 0;
  double first_loss = 0, last_loss = 0;  // mean loss of the first and the last logged window
  std::optional<double> best_val_loss;
  std::string final_adapter_dir;
  double tokens_per_second = 0;
};

// Runs a whole training. `storage` is the resolved frozen-weight storage (the CLI turns
// `quantization: auto` into one). `on_log` sees every logging and evaluation entry.
TrainResult run_training(const TrainConfig& cfg, WeightStorage storage,
                         const std::function<void(const TrainLog&)>& on_log = {});

}  // namespace bidora::train
