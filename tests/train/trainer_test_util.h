#pragma once
// The training configuration the trainer tests share: the bundled tiny Qwen2 example model and
// its Alpaca data (10 examples, 10% held out), all seven projections adapted, a step per batch.
#include <atomic>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/train_config.h"
#include "core/files.h"
#include "test_support.h"
#include "train/trainer.h"

namespace bidora::train::test_util {

inline TrainConfig example_config(const std::string& out) {
  TrainConfig cfg;
  cfg.model.name_or_path = test::source_path("examples/tiny-qwen2");
  cfg.data.train_file = test::source_path("examples/data/alpaca.jsonl");
  cfg.output.dir = out;
  cfg.training.epochs = 6;
  cfg.training.batch_size = 2;
  cfg.training.gradient_accumulation_steps = 1;
  cfg.training.learning_rate = 2e-2;
  cfg.training.warmup_steps = 2;
  cfg.training.logging_steps = 1;
  cfg.adapter.targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return cfg;
}

// Runs `cfg` and asks it to stop right after optimiser step `stop_at` (as Ctrl-C would).
inline TrainResult run_and_stop_at(const TrainConfig& cfg, int64_t stop_at,
                                   WeightStorage storage = WeightStorage::BF16) {
  std::atomic<bool> stop{false};
  TrainCallbacks cb;
  cb.stop_requested = &stop;
  cb.on_step = [&](const TrainLog& e) {
    if (e.step == stop_at) stop = true;
  };
  return run_training(cfg, storage, cb);
}

// The adapter file of <out>/<sub>/ (final_model, best_model, search_model, checkpoint-N).
inline std::string adapter_bytes(const std::string& out, const char* sub = "final_model") {
  return read_file(out + "/" + sub + "/adapter_model.safetensors");
}

// metrics.jsonl without the wall-clock fields, which legitimately differ between runs.
inline std::vector<nlohmann::json> metrics_without_timing(const std::string& out) {
  std::vector<nlohmann::json> entries;
  std::istringstream in(read_file(out + "/metrics.jsonl"));
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    j.erase("tokens_per_second");
    j.erase("elapsed_seconds");
    entries.push_back(j);
  }
  return entries;
}

}  // namespace bidora::train::test_util
