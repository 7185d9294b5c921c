#pragma once
// The training configuration the trainer tests share: the bundled tiny Qwen2 example model and
// its Alpaca data (10 examples, 10% held out), all seven projections adapted, a step per batch.
#include <string>

#include "config/train_config.h"
#include "test_support.h"

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

}  // namespace bidora::train::test_util
