// Checkpoints and --resume: a run stopped (or crashed) and resumed ends with exactly the adapter
// and the metrics of the uninterrupted run; save_total_limit; refusals; a write failure while
// saving keeps the previous checkpoint valid; a non-finite loss stops before the update.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/files.h"
#include "test_support.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#include "trainer_test_util.h"

namespace bidora::train {
namespace {

namespace fs = std::filesystem;
using test_util::adapter_bytes;
using test_util::example_config;
using test_util::metrics_without_timing;
using test_util::run_and_stop_at;
using ::testing::HasSubstr;

// DoRA with dropout, 8-bit AdamW, accumulation over 2 batches with a partial last group per
// epoch (5 batches), evaluation every 3 steps: every piece of state a resume must restore.
TrainConfig resume_config(const std::string& out) {
  TrainConfig cfg = example_config(out);
  cfg.adapter.method = AdapterMethod::DoRA;
  cfg.adapter.dropout = 0.1;
  cfg.training.optimizer = OptimizerKind::AdamW8bit;
  cfg.training.gradient_accumulation_steps = 2;
  cfg.training.epochs = 3;  // 3 steps per epoch, 9 steps
  cfg.training.eval_steps = 3;
  cfg.training.logging_steps = 2;
  cfg.training.save_steps = 0;
  return cfg;
}

class Resume : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = test::make_temp_dir("resume");
    reference_ = root_ + "/uninterrupted";
    run_training(resume_config(reference_), WeightStorage::BF16);
  }
  std::string root_, reference_;
};

TEST_F(Resume, StoppedRunResumedEqualsUninterruptedRun) {
  // Mid-epoch; the end of an epoch (an evaluation step with a partial accumulation group); the
  // middle of the second epoch.
  for (int64_t stop_at : {1, 3, 5}) {
    const std::string out = root_ + "/stopped-" + std::to_string(stop_at);
    TrainConfig cfg = resume_config(out);
    const TrainResult stopped = run_and_stop_at(cfg, stop_at);
    EXPECT_TRUE(stopped.interrupted);
    EXPECT_EQ(stopped.steps, stop_at);
    EXPECT_EQ(stopped.last_checkpoint, out + "/checkpoint-" + std::to_string(stop_at));
    EXPECT_FALSE(fs::exists(out + "/final_model"));

    cfg.output.resume = "latest";
    const TrainResult resumed = run_training(cfg, WeightStorage::BF16);
    EXPECT_FALSE(resumed.interrupted);
    EXPECT_EQ(resumed.resumed_from_step, stop_at);
    EXPECT_EQ(resumed.steps, 9);
    EXPECT_EQ(adapter_bytes(out), adapter_bytes(reference_)) << "stopped after step " << stop_at;
    EXPECT_EQ(adapter_bytes(out, "best_model"), adapter_bytes(reference_, "best_model"));
    EXPECT_EQ(metrics_without_timing(out), metrics_without_timing(reference_)) << "stopped after " << stop_at;
  }
}

TEST_F(Resume, CrashAfterAPeriodicCheckpointResumesFromIt) {
  const std::string out = root_ + "/crashed";
  TrainConfig cfg = resume_config(out);
  cfg.training.save_steps = 2;  // not part of the trajectory: the reference ran without saves
  run_training(cfg, WeightStorage::BF16);
  EXPECT_EQ(list_checkpoints(out).size(), 4u);  // 2, 4, 6, 8
  // What a kill -9 after step 5 leaves: checkpoint-4, metrics logged past it, no final model.
  fs::remove_all(out + "/final_model");
  fs::remove_all(out + "/checkpoint-6");
  fs::remove_all(out + "/checkpoint-8");
  fs::create_directories(out + "/checkpoint-6.tmp.12345");  // a save that never finished
  cfg.output.resume = out + "/checkpoint-4";
  const TrainResult r = run_training(cfg, WeightStorage::BF16);
  EXPECT_EQ(r.resumed_from_step, 4);
  EXPECT_EQ(adapter_bytes(out), adapter_bytes(reference_));
  EXPECT_EQ(metrics_without_timing(out), metrics_without_timing(reference_));
}

TEST_F(Resume, RefusesChangedSettingsAndMissingCheckpoints) {
  const std::string out = root_ + "/changed";
  TrainConfig cfg = resume_config(out);
  run_and_stop_at(cfg, 2);

  // Without --resume or --overwrite the unfinished run is not clobbered.
  try {
    run_training(cfg, WeightStorage::BF16);
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("checkpoint-2"));
    EXPECT_THAT(e.what(), HasSubstr("--resume"));
  }
  cfg.output.resume = "latest";
  TrainConfig other_lr = cfg;
  other_lr.training.learning_rate = 1e-2;
  try {
    run_training(other_lr, WeightStorage::BF16);
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("trainer_state.json"));
    EXPECT_THAT(e.what(), HasSubstr("training.learning_rate: checkpoint 0.02, now 0.01"));
  }
  try {
    run_training(cfg, WeightStorage::NF4);  // other weights, other numbers
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("weights.storage: checkpoint bf16, now nf4"));
  }
  TrainConfig nowhere = cfg;
  nowhere.output.dir = root_ + "/empty";
  try {
    run_training(nowhere, WeightStorage::BF16);
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("holds no checkpoint-<step>"));
  }
  // --overwrite starts again and clears the old checkpoints.
  cfg.output.resume.clear();
  cfg.output.overwrite = true;
  run_training(cfg, WeightStorage::BF16);
  EXPECT_TRUE(list_checkpoints(out).empty());
  EXPECT_EQ(adapter_bytes(out), adapter_bytes(reference_));
}

TEST(Checkpoints, SaveTotalLimitKeepsTheNewest) {
  const std::string out = test::make_temp_dir("limit") + "/run";
  TrainConfig cfg = resume_config(out);
  cfg.training.save_steps = 2;
  cfg.training.save_total_limit = 2;
  run_training(cfg, WeightStorage::BF16);
  const auto kept = list_checkpoints(out);
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].first, 6);
  EXPECT_EQ(kept[1].first, 8);
  for (const char* f :
       {"adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors", "trainer_state.json"})
    EXPECT_TRUE(fs::exists(fs::path(kept[1].second) / f)) << f;
  const auto state = nlohmann::json::parse(read_file(kept[1].second + "/trainer_state.json"));
  EXPECT_EQ(state["global_step"], 8);
  EXPECT_EQ(state["data_position"]["epoch_index"], 2);  // step 8 = 2nd step of the 3rd epoch
  EXPECT_EQ(state["data_position"]["next_batch"], 4);
  EXPECT_EQ(state["log_history"].size(), 5u);  // steps 2, 3 (eval), 4, 6 (eval), 8
}

// Limits the size of files this process may write (a full disk, as far as write() is concerned)
// for the lifetime of the object. SIGXFSZ is ignored so write() fails with EFBIG instead.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved_);
    prev_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit r = saved_;
    r.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &r);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, prev_);
  }

 private:
  rlimit saved_{};
  void (*prev_)(int);
};

TEST(Checkpoints, WriteFailureKeepsThePreviousCheckpoint) {
  const std::string root = test::make_temp_dir("diskfull");
  const std::string out = root + "/run";
  TrainConfig cfg = resume_config(out);
  cfg.training.save_steps = 2;
  std::unique_ptr<FileSizeLimit> limit;
  TrainCallbacks cb;
  cb.on_step = [&](const TrainLog& e) {
    // on_step runs before the step's own saves; the adapter file is larger than 16 KiB.
    if (e.step == 4) limit = std::make_unique<FileSizeLimit>(16 * 1024);
  };
  try {
    run_training(cfg, WeightStorage::BF16, cb);
    limit.reset();
    FAIL() << "expected the checkpoint save at step 4 to fail";
  } catch (const Error& e) {
    limit.reset();
    EXPECT_THAT(e.what(), HasSubstr("saving the checkpoint of step 4 failed"));
    EXPECT_THAT(e.what(), HasSubstr("adapter_model.safetensors"));
    EXPECT_THAT(e.what(), HasSubstr("File too large"));
    EXPECT_THAT(e.what(), HasSubstr("checkpoint-2 is intact"));
  }
  // Nothing half-written is left, and the previous checkpoint continues to the same result.
  const auto kept = list_checkpoints(out);
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].first, 2);
  for (const auto& entry : fs::directory_iterator(out))
    EXPECT_EQ(entry.path().filename().string().find(".tmp."), std::string::npos) << entry.path();
  cfg.output.resume = "latest";
  run_training(cfg, WeightStorage::BF16);
  const std::string reference = root + "/reference";
  run_training(resume_config(reference), WeightStorage::BF16);
  EXPECT_EQ(adapter_bytes(out), adapter_bytes(reference));
}

TEST(Checkpoints, AFreshRunKeepsAnEarlierRunsBestModel) {
  // A run that stopped before its first checkpoint leaves only best_model/: not lost silently.
  const std::string out = test::make_temp_dir("bestonly") + "/run";
  fs::create_directories(out + "/best_model");
  write_file_atomic(out + "/best_model/adapter_config.json", "{}");
  try {
    run_training(resume_config(out), WeightStorage::BF16);
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("best_model/"));
    EXPECT_THAT(e.what(), HasSubstr("--overwrite"));
  }
  EXPECT_TRUE(fs::exists(out + "/best_model/adapter_config.json"));
}

TEST(Checkpoints, IgnoresIncompleteAndForeignDirectories) {
  const std::string out = test::make_temp_dir("list");
  for (const char* d :
       {"checkpoint-3", "checkpoint-12", "checkpoint-7.tmp.99", "checkpoint-x", "checkpoint-", "other"})
    fs::create_directories(fs::path(out) / d);
  write_file_atomic(out + "/checkpoint-3/trainer_state.json", "{}");
  write_file_atomic(out + "/checkpoint-12/trainer_state.json", "{}");
  write_file_atomic(out + "/checkpoint-7.tmp.99/trainer_state.json", "{}");
  const auto all = list_checkpoints(out);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].first, 3);
  EXPECT_EQ(all[1].first, 12);  // numeric order, not "12" < "3"
}

}  // namespace
}  // namespace bidora::train
