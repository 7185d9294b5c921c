#pragma once
// The training recipe, top to bottom: model + tokenizer → data → adapters → optimiser and
// schedule → epochs of accumulated steps with periodic evaluation → PEFT adapters on disk.
#include <atomic>
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
  int64_t resumed_from_step = 0;         // 0 for a fresh run
  double first_loss = 0, last_loss = 0;  // mean loss of the first and the last logged window
  std::optional<double> best_val_loss;
  std::string final_adapter_dir;
  double tokens_per_second = 0;
  bool interrupted = false;     // stopped on request after saving a checkpoint
  std::string last_checkpoint;  // the newest checkpoint-<step> this run wrote (empty if none)
};

struct TrainCallbacks {
  std::function<void(const TrainLog&)> on_log;       // every logging and evaluation entry
  std::function<void(const TrainLog&)> on_step;      // after every optimiser step (loss of that step)
  std::function<void(const std::string&)> on_event;  // "resumed from …", "saved checkpoint-20", …
  // Polled after every optimiser step: when set, the run saves a checkpoint and returns with
  // interrupted = true (Ctrl-C in the CLI). Resuming from it ends exactly as if never stopped.
  const std::atomic<bool>* stop_requested = nullptr;
};

// Runs a whole training, or continues one (cfg.output.resume). `storage` is the resolved
// frozen-weight storage (the CLI turns `quantization: auto` into one).
TrainResult run_training(const TrainConfig& cfg, WeightStorage storage, const TrainCallbacks& callbacks);
TrainResult run_training(const TrainConfig& cfg, WeightStorage storage,
                         const std::function<void(const TrainLog&)>& on_log = {});

}  // namespace bidora::train
