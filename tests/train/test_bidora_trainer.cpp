// BiDoRA through the whole recipe (bidora-algorithm.md §2-§5) on the bundled example: the
// search phase alternates direction steps on the training split with magnitude steps on the
// validation split, the retraining phase trains the directions on train + validation with the
// magnitudes frozen, the result is a standard PEFT DoRA adapter, and a stopped run resumes
// exactly in either phase and across the switch between them. A BiDoRA-trained adapter is also
// written for the PEFT-format loader check (check_peft_export.py).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "adapters/direction_regulariser.h"
#include "adapters/peft_export_case.h"
#include "adapters/peft_io.h"
#include "core/error.h"
#include "core/files.h"
#include "model/weights.h"
#include "test_support.h"
#include "train/bilevel.h"
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

// 9 training examples → 5 batches of 2 → 3 steps per epoch (accumulation 2, a partial last
// group); 2 search epochs = 6 direction steps and 3 magnitude steps (lower_steps 2); then one
// retraining epoch over the 10 train + validation examples = 3 steps. Dropout on, so the
// finite-difference passes must reuse the lower step's masks.
TrainConfig bidora_config(const std::string& out) {
  TrainConfig cfg = example_config(out);
  cfg.adapter.method = AdapterMethod::BiDoRA;
  cfg.adapter.dropout = 0.1;
  cfg.training.gradient_accumulation_steps = 2;
  cfg.training.epochs = 2;
  cfg.training.eval_steps = 3;
  cfg.training.logging_steps = 2;
  cfg.training.save_steps = 0;
  cfg.training.bidora.lower_steps = 2;
  cfg.training.bidora.upper_lr_mult = 2.0;
  cfg.training.bidora.orth_reg = 1e-3;
  return cfg;
}

// The adapter tensors of `dir`, by (layer, kind).
struct Tensors {
  std::vector<std::vector<float>> A, B, m;
};
Tensors tensors(const std::string& dir, const ModelWeights& w) {
  const AdapterSet set = read_peft_adapter(dir, w.layers());
  Tensors t;
  for (const LoraLayer* l : set.all()) {
    t.A.push_back(l->A);
    t.B.push_back(l->B);
    t.m.push_back(l->m);
  }
  return t;
}

class BiDoRATrainer : public ::testing::TestWithParam<WeightStorage> {};

TEST_P(BiDoRATrainer, SearchesThenRetrainsAndExportsAPeftDoraAdapter) {
  const std::string out = test::make_temp_dir("bidora") + "/run";
  TrainConfig cfg = bidora_config(out);
  cfg.training.save_steps = 1;  // to look at the adapter after every step
  std::vector<TrainLog> steps, logs;
  TrainCallbacks cb;
  cb.on_step = [&](const TrainLog& e) { steps.push_back(e); };
  cb.on_log = [&](const TrainLog& e) { logs.push_back(e); };
  const TrainResult r = run_training(cfg, GetParam(), cb);

  ASSERT_EQ(r.steps, 9);
  ASSERT_EQ(steps.size(), 9u);
  for (const TrainLog& e : steps) {
    EXPECT_EQ(e.phase, e.step <= 6 ? "search" : "retrain") << e.step;
    // A magnitude step after every second direction step of the search phase, none after.
    EXPECT_EQ(e.upper.has_value(), e.step <= 6 && e.step % 2 == 0) << e.step;
    if (e.upper) {
      EXPECT_GT(e.upper->hypergrad_norm, 0);
      EXPECT_TRUE(std::isfinite(e.upper->implicit_norm));
      EXPECT_GT(e.upper->eps, 0);
      // Magnitude schedule: warmup 2 / lower_steps 2 = 1 step, base lr × upper_lr_mult.
      if (e.step == 2) {
        EXPECT_EQ(e.upper->lr, 0.0);
      }
      if (e.step == 4) {
        EXPECT_DOUBLE_EQ(e.upper->lr, cfg.training.learning_rate * 2.0);
      }
    }
    EXPECT_GT(e.regulariser, 0) << "the orthogonality regulariser is part of the direction loss";
  }
  // Evaluation only in the search phase (the validation split is training data afterwards).
  for (const TrainLog& e : logs) EXPECT_EQ(e.val_loss.has_value(), e.step == 3 || e.step == 6) << e.step;
  ASSERT_TRUE(r.best_val_loss.has_value());

  // The exported adapter is PEFT DoRA: use_dora and lora_magnitude_vector keys.
  const auto config = nlohmann::json::parse(read_file(out + "/final_model/adapter_config.json"));
  EXPECT_EQ(config["peft_type"], "LORA");
  EXPECT_EQ(config["use_dora"], true);
  SafetensorsFile st(out + "/final_model/adapter_model.safetensors");
  EXPECT_NO_THROW(st.get("base_model.model.model.layers.0.mlp.down_proj.lora_magnitude_vector"));

  auto w = ModelWeights::load(cfg.model.name_or_path, LoadOptions(GetParam()));
  const Tensors search = tensors(out + "/search_model", *w), final = tensors(out + "/final_model", *w);
  std::vector<Tensors> at;  // at[k]: after step k
  at.push_back(Tensors{});
  for (int k = 1; k <= 6; ++k) at.push_back(tensors(out + "/checkpoint-" + std::to_string(k), *w));
  // Init m = ‖W‖_row. Direction steps leave m alone; the magnitude step after step 2 has the
  // warm-up's lr 0; the one after step 4 moves it.
  const AdapterSet fresh(read_peft_adapter(out + "/checkpoint-1", w->layers()).config(), w->layers(),
                         static_cast<uint64_t>(cfg.training.seed));
  std::vector<std::vector<float>> initial_m;
  for (const LoraLayer* l : fresh.all()) initial_m.push_back(l->m);
  EXPECT_EQ(at[1].m, initial_m);
  EXPECT_EQ(at[2].m, initial_m);
  EXPECT_EQ(at[3].m, at[2].m);
  EXPECT_NE(at[4].m, at[3].m);
  EXPECT_EQ(at[5].m, at[4].m);
  EXPECT_NE(at[1].B, at[2].B);
  // Retraining keeps the learned magnitudes bit for bit and trains the directions further.
  EXPECT_EQ(final.m, search.m);
  EXPECT_NE(final.B, search.B);
  EXPECT_NE(final.A, search.A);
  EXPECT_TRUE(fs::exists(out + "/best_model/adapter_model.safetensors"));

  // metrics.jsonl carries the phase and the magnitude step's figures.
  const auto metrics = metrics_without_timing(out);
  ASSERT_FALSE(metrics.empty());
  EXPECT_EQ(metrics.front()["phase"], "search");
  EXPECT_TRUE(metrics.front().contains("hypergrad_norm"));
  EXPECT_EQ(metrics.back()["phase"], "retrain");
}

INSTANTIATE_TEST_SUITE_P(Storage, BiDoRATrainer,
                         ::testing::Values(WeightStorage::BF16, WeightStorage::NF4, WeightStorage::INT8),
                         [](const auto& info) { return std::string(storage_name(info.param)); });

TEST(BiDoRATrainerOptions, RetrainFromInitAndNoRetraining) {
  const std::string root = test::make_temp_dir("bidora-opts");
  TrainConfig cont = bidora_config(root + "/continue");
  run_training(cont, WeightStorage::BF16);
  TrainConfig init = bidora_config(root + "/init");
  init.training.bidora.retrain_from_init = true;
  run_training(init, WeightStorage::BF16);
  // Same search, different starting point for the retraining.
  EXPECT_EQ(adapter_bytes(root + "/continue", "search_model"), adapter_bytes(root + "/init", "search_model"));
  EXPECT_NE(adapter_bytes(root + "/continue"), adapter_bytes(root + "/init"));

  TrainConfig none = bidora_config(root + "/none");
  none.training.bidora.retrain_epochs = 0;
  const TrainResult r = run_training(none, WeightStorage::BF16);
  EXPECT_EQ(r.steps, 6);
  EXPECT_EQ(adapter_bytes(root + "/none"), adapter_bytes(root + "/none", "search_model"));
  EXPECT_EQ(adapter_bytes(root + "/none"), adapter_bytes(root + "/continue", "search_model"));
}

TEST(BiDoRATrainerOptions, RefusesRunsWithoutAMagnitudeStep) {
  const std::string root = test::make_temp_dir("bidora-refuse");
  TrainConfig cfg = bidora_config(root + "/k");
  cfg.training.max_steps = 3;
  cfg.training.bidora.lower_steps = 4;
  try {
    run_training(cfg, WeightStorage::BF16);
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("training.bidora.lower_steps = 4"));
  }
  // A validation file without a single usable example.
  const std::string empty_val = root + "/empty.jsonl";
  write_file_atomic(empty_val, "\n");
  TrainConfig nov = bidora_config(root + "/noval");
  nov.data.val_file = empty_val;
  try {
    run_training(nov, WeightStorage::BF16);
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("validation"));
  }
}

// Stop after a direction step, after a magnitude step, at the switch to retraining, and in the
// retraining phase: the resumed run must end exactly as the uninterrupted one.
TEST(BiDoRATrainerResume, StoppedRunsResumeExactlyInBothPhases) {
  const std::string root = test::make_temp_dir("bidora-resume");
  auto config = [](const std::string& out) {
    TrainConfig cfg = bidora_config(out);
    cfg.training.logging_steps = 3;
    return cfg;
  };
  const std::string reference = root + "/uninterrupted";
  run_training(config(reference), WeightStorage::BF16);
  // Logging every 3 steps: the entry of step 3 reports the magnitude step of step 2.
  for (int64_t stop_at : {1, 2, 4, 6, 7}) {
    const std::string out = root + "/stopped-" + std::to_string(stop_at);
    TrainConfig cfg = config(out);
    const TrainResult stopped = run_and_stop_at(cfg, stop_at);
    ASSERT_TRUE(stopped.interrupted);
    const auto state = nlohmann::json::parse(
        read_file(out + "/checkpoint-" + std::to_string(stop_at) + "/trainer_state.json"));
    EXPECT_EQ(state["bidora"]["phase"], stop_at <= 6 ? "search" : "retrain");
    EXPECT_EQ(fs::exists(out + "/checkpoint-" + std::to_string(stop_at) + "/upper_optimizer.safetensors"),
              stop_at <= 6);

    cfg.output.resume = "latest";
    const TrainResult resumed = run_training(cfg, WeightStorage::BF16);
    EXPECT_EQ(resumed.steps, 9);
    EXPECT_EQ(adapter_bytes(out), adapter_bytes(reference)) << "stopped after step " << stop_at;
    EXPECT_EQ(adapter_bytes(out, "search_model"), adapter_bytes(reference, "search_model")) << stop_at;
    EXPECT_EQ(adapter_bytes(out, "best_model"), adapter_bytes(reference, "best_model")) << stop_at;
    EXPECT_EQ(metrics_without_timing(out), metrics_without_timing(reference)) << "stopped after " << stop_at;
  }
}

}  // namespace
}  // namespace bidora::train

namespace bidora::train {
namespace {

TokenBatch random_batch(std::mt19937& rng, int64_t vocab, int64_t rows, int64_t seq) {
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(vocab - 1));
  TokenBatch b;
  b.rows = rows;
  b.seq_len = seq;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < seq; ++t) {
      b.input_ids.push_back(token(rng));
      b.position_ids.push_back(static_cast<int32_t>(t));
    }
  b.labels = b.input_ids;
  return b;
}

// A BiDoRA-trained adapter (direction steps with the regulariser, magnitude steps by
// hypergradient) for check_peft_export.py: PEFT's loader must give bidora's logits with it.
TEST(BiDoRAPeftExport, WritesTrainedAdapterAndLogits) {
  const std::string model = "qwen2_tied_sharded_f32";
  auto w = ModelWeights::load(test::reference_model_dir(model), LoadOptions(WeightStorage::F32));
  AdapterConfig ac;
  ac.method = LoraVariant::DoRA;
  ac.r = 4;
  ac.alpha = 8;
  ac.targets = {LinearKind::Q,    LinearKind::K,  LinearKind::V,   LinearKind::O,
                LinearKind::Gate, LinearKind::Up, LinearKind::Down};
  AdapterSet set(ac, w->layers(), 5);
  std::vector<std::vector<float>> initial_m;
  for (const LoraLayer* l : set.all()) initial_m.push_back(l->m);
  {
    AdapterRuntime runtime(set);
    Decoder dec(*w);
    dec.set_adapters(&runtime);
    AdamWConfig oc;
    oc.weight_decay = 0.01;
    auto lower = make_optimizer("adamw_torch", direction_params(set), oc);
    auto upper = make_optimizer("adamw_torch", magnitude_params(set), oc);
    LrSchedule sched;
    sched.kind = ScheduleKind::ConstantWithWarmup;
    sched.base_lr = 5e-2;
    sched.total_steps = 4;
    RegulariserScratch scratch;
    std::mt19937 rng(3);
    const int64_t vocab = w->config().vocab_size;
    for (int64_t step = 0; step < 4; ++step) {
      const std::vector<TokenBatch> train = {random_batch(rng, vocab, 2, 12),
                                             random_batch(rng, vocab, 2, 12)};
      StepOptions so;
      so.step = step;
      so.wants = {.directions = true, .magnitude = false};
      so.regulariser = [&] { return direction_regulariser(set, w->layers(), 1e-3, true, scratch); };
      train_step(dec, runtime, train, *lower, sched, so);
      if (step % 2 == 1) {
        const std::vector<TokenBatch> val = {random_batch(rng, vocab, 2, 12)};
        upper_step(dec, runtime, train, val, *upper, 5e-2, 1.0,
                   {.fd_alpha = 0.01, .seed = 42, .train_step = step});
      }
    }
  }
  std::vector<std::vector<float>> trained_m;
  for (const LoraLayer* l : set.all()) trained_m.push_back(l->m);
  ASSERT_NE(trained_m, initial_m) << "the magnitude steps did not move m";

  const std::vector<float> logits = test::write_peft_export_case("qwen2_bidora_trained", model, *w, set);
  // What the Python side compares with is the adapter as stored.
  AdapterSet back =
      read_peft_adapter(test::reference_dir() + "/peft_export/qwen2_bidora_trained", w->layers());
  AdapterRuntime back_runtime(back);
  Decoder dec(*w);
  dec.set_adapters(&back_runtime);
  EXPECT_EQ(dec.logits(test::reference_batch(model)), logits);
}

}  // namespace
}  // namespace bidora::train
