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
  // BiDoRA: "search" or "retrain" (empty for LoRA / DoRA), the regulariser's part of `loss`,
  // and the latest magnitude (upper-level) step.
  std::string phase;
  double regulariser = 0;
  struct Upper {
    double val_loss = 0;        // the validation loss the hypergradient was taken on
    double hypergrad_norm = 0;  // ‖h‖ before clipping
    double direct_norm = 0, implicit_norm = 0, eps = 0;
    double lr = 0;
  };
  std::optional<Upper> upper;
};

struct TrainResult {
  int64_t steps = 0;
  int64_t resumed_from_step = 0;         // 0 for a fresh run
  double first_loss = 0, last_loss = 0;  // mean loss of the first and the last logged window
  std::optional<double> best_val_loss;
  std::string final_adapter_dir;
  std::string search_adapter_dir;  // BiDoRA: the adapter at the end of the search phase
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
