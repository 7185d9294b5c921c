// The whole recipe on the bundled example (examples/tiny-qwen2 + examples/data): it learns, it
// writes a loadable PEFT adapter and the run's records, it is reproducible from its seed, and it
// refuses to overwrite a finished run.
#include <gtest/gtest.h>

#include <filesystem>

#include "adapters/peft_io.h"
#include "core/error.h"
#include "core/files.h"
#include "model/weights.h"
#include "test_support.h"
#include "train/trainer.h"
#include "trainer_test_util.h"

namespace bidora::train {
namespace {

namespace fs = std::filesystem;

using test_util::example_config;

TEST(Trainer, LearnsAndWritesAPeftAdapter) {
  const std::string out = test::make_temp_dir("train") + "/run";
  const TrainConfig cfg = example_config(out);
  std::vector<TrainLog> logs;
  const TrainResult r = run_training(cfg, WeightStorage::BF16, [&](const TrainLog& e) { logs.push_back(e); });

  // 10 examples, 10% held out → 9 train examples → 5 batches of 2 per epoch, 6 epochs.
  EXPECT_EQ(r.steps, 30);
  ASSERT_EQ(static_cast<int64_t>(logs.size()), 30);
  EXPECT_EQ(logs.back().step, 30);
  EXPECT_LT(r.last_loss, 0.7 * r.first_loss) << "the loss did not fall";
  ASSERT_TRUE(r.best_val_loss.has_value());
  int evals = 0;
  for (const auto& e : logs) evals += e.val_loss.has_value();
  EXPECT_EQ(evals, 6);  // once per epoch

  for (const char* f : {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
                        "tokenizer_config.json", "README.md"})
    EXPECT_TRUE(fs::exists(fs::path(out) / "final_model" / f)) << f;
  EXPECT_TRUE(fs::exists(fs::path(out) / "best_model" / "adapter_model.safetensors"));
  auto weights = ModelWeights::load(cfg.model.name_or_path, LoadOptions(WeightStorage::BF16));
  const AdapterSet loaded = read_peft_adapter(out + "/final_model", weights->layers());
  EXPECT_EQ(loaded.all().size(), 2u * 7u);
  // metrics.jsonl: one line per log entry; config.yaml: the resolved configuration.
  const std::string metrics = read_file(out + "/metrics.jsonl");
  EXPECT_EQ(std::count(metrics.begin(), metrics.end(), '\n'), 30);
  EXPECT_EQ(load_config_file(out + "/config.yaml"), cfg);

  // A finished run is never overwritten by accident.
  try {
    run_training(cfg, WeightStorage::BF16);
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--overwrite"), std::string::npos) << e.what();
  }
}

TEST(Trainer, SameSeedSameAdapter) {
  const std::string root = test::make_temp_dir("train-repro");
  TrainConfig a = example_config(root + "/a");
  a.training.epochs = 2;
  a.adapter.method = AdapterMethod::DoRA;
  a.adapter.dropout = 0.1;  // dropout masks must be reproducible too
  TrainConfig b = a;
  b.output.dir = root + "/b";
  run_training(a, WeightStorage::NF4);
  run_training(b, WeightStorage::NF4);
  EXPECT_EQ(read_file(root + "/a/final_model/adapter_model.safetensors"),
            read_file(root + "/b/final_model/adapter_model.safetensors"));
  TrainConfig c = a;
  c.output.dir = root + "/c";
  c.training.seed = 7;
  run_training(c, WeightStorage::NF4);
  EXPECT_NE(read_file(root + "/a/final_model/adapter_model.safetensors"),
            read_file(root + "/c/final_model/adapter_model.safetensors"));
}

}  // namespace
}  // namespace bidora::train
