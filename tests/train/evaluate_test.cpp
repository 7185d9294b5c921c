// Evaluation as `bidora eval` does it equals the trainer's validation loss on the same data; a
// trained adapter lowers the loss on what it was trained on; packing does not change the loss;
// bad files and lines are named. Continuing training from an adapter (adapter.init_from) starts
// from exactly its values with its settings, and conflicting settings are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "adapters/adapter_loading.h"
#include "adapters/peft_io.h"
#include "core/error.h"
#include "core/files.h"
#include "data/codec.h"
#include "model/decoder.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "train/evaluate.h"
#include "train/init_adapter.h"
#include "train/trainer.h"
#include "trainer_test_util.h"

namespace bidora::train {
namespace {

namespace fs = std::filesystem;
using test_util::example_config;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// The lines of the bundled Alpaca example, [begin, end) of them, as a file in `dir`.
std::string example_lines(const std::string& dir, const char* name, int begin, int end) {
  std::istringstream in(read_file(test::source_path("examples/data/alpaca.jsonl")));
  std::string text, line;
  for (int i = 0; std::getline(in, line); ++i)
    if (i >= begin && i < end) text += line + "\n";
  const std::string path = dir + "/" + name;
  write_file_atomic(path, text);
  return path;
}

// Loss of the model (with the adapter in `adapter_dir`, if given) over `file`, as `bidora eval`
// computes it.
EvalResult evaluate_file(const TrainConfig& cfg, const std::string& file,
                         const std::string& adapter_dir = "") {
  auto w = ModelWeights::load(cfg.model.name_or_path, LoadOptions(WeightStorage::BF16));
  const Tokenizer tokenizer = Tokenizer::from_dir(w->dir());  // the codec refers to it
  const data::TextCodec codec = data::codec_for(tokenizer);
  const EvalData data = load_eval_data(cfg, codec, file);
  Decoder dec(*w);
  std::optional<LoadedAdapter> adapter;
  if (!adapter_dir.empty()) {
    adapter = load_adapter_for_model(adapter_dir, *w, cfg.model.name_or_path, false);
    dec.set_adapters(adapter->runtime.get());
  }
  const LossSums sums = evaluation_loss(dec, data.batches);
  EXPECT_EQ(sums.count, data.trained_tokens);
  return eval_result(sums);
}

TEST(Evaluate, EqualsTheTrainersValidationLoss) {
  const std::string root = test::make_temp_dir("eval-val");
  TrainConfig cfg = example_config(root + "/run");
  cfg.data.train_file = example_lines(root, "train.jsonl", 0, 7);
  cfg.data.val_file = example_lines(root, "val.jsonl", 7, 10);
  cfg.training.epochs = 1;
  cfg.training.batch_size = 2;  // the 3 validation examples in batches of 2 and 1
  std::vector<TrainLog> logs;
  const TrainResult r = run_training(cfg, WeightStorage::BF16, [&](const TrainLog& e) { logs.push_back(e); });
  ASSERT_TRUE(logs.back().val_loss.has_value());
  const double trainer_val = *logs.back().val_loss;  // evaluated after the last step: the final adapter

  const EvalResult eval = evaluate_file(cfg, cfg.data.val_file, r.final_adapter_dir);
  EXPECT_DOUBLE_EQ(eval.loss, trainer_val);
  EXPECT_DOUBLE_EQ(eval.perplexity, std::exp(trainer_val));
  // Batching does not change a token-weighted mean (up to rounding), and the adapter matters.
  TrainConfig one_batch = cfg;
  one_batch.training.batch_size = 8;
  EXPECT_NEAR(evaluate_file(one_batch, cfg.data.val_file, r.final_adapter_dir).loss, trainer_val,
              1e-5 * trainer_val);
  EXPECT_GT(std::abs(evaluate_file(cfg, cfg.data.val_file).loss - trainer_val), 1e-3);
}

TEST(Evaluate, AdapterLowersTheLossOnWhatItOverfit) {
  const std::string root = test::make_temp_dir("eval-overfit");
  TrainConfig cfg = example_config(root + "/run");
  cfg.data.val_split_ratio = 0;
  cfg.training.epochs = 8;
  cfg.adapter.dropout = 0;
  const TrainResult r = run_training(cfg, WeightStorage::BF16);
  const EvalResult base = evaluate_file(cfg, cfg.data.train_file);
  const EvalResult tuned = evaluate_file(cfg, cfg.data.train_file, r.final_adapter_dir);
  EXPECT_EQ(base.tokens, tuned.tokens);
  EXPECT_GT(base.tokens, 100);
  EXPECT_LT(tuned.loss, 0.6 * base.loss) << "base " << base.loss << ", adapter " << tuned.loss;
  EXPECT_LT(tuned.perplexity, base.perplexity);
}

TEST(Evaluate, UsesTheTrainingPipelinesSettings) {
  TrainConfig cfg = example_config(test::make_temp_dir("eval-settings"));
  const std::string file = cfg.data.train_file;
  auto w = ModelWeights::load(cfg.model.name_or_path, LoadOptions(WeightStorage::BF16));
  const Tokenizer tokenizer = Tokenizer::from_dir(w->dir());  // the codec refers to it
  const data::TextCodec codec = data::codec_for(tokenizer);
  const EvalData plain = load_eval_data(cfg, codec, file);
  EXPECT_EQ(plain.examples.size(), 10u);  // every example: nothing is held out
  EXPECT_EQ(plain.batches.size(), 5u);    // batch_size 2
  EXPECT_EQ(plain.report.path, file);

  // Packing: fewer, fuller rows, the same loss terms and (up to rounding) the same mean.
  TrainConfig packed_cfg = cfg;
  packed_cfg.data.packing = true;
  const EvalData packed = load_eval_data(packed_cfg, codec, file);
  EXPECT_LT(packed.batches.size(), plain.batches.size());
  EXPECT_EQ(packed.trained_tokens, plain.trained_tokens);
  Decoder dec(*w);
  const LossSums a = evaluation_loss(dec, plain.batches), b = evaluation_loss(dec, packed.batches);
  EXPECT_EQ(a.count, b.count);
  EXPECT_NEAR(a.mean(), b.mean(), 1e-5 * a.mean());

  // Masking: with the prompt trained too there are more loss terms.
  TrainConfig prompt_cfg = cfg;
  prompt_cfg.data.train_on_prompt = true;
  EXPECT_GT(load_eval_data(prompt_cfg, codec, file).trained_tokens, plain.trained_tokens);
  // max_seq_len truncates as in training; max_samples keeps the first N.
  TrainConfig short_cfg = cfg;
  short_cfg.training.max_seq_len = 120;
  const EvalData cut = load_eval_data(short_cfg, codec, file);
  EXPECT_GT(cut.truncated, 0);
  ASSERT_FALSE(cut.examples.empty());
  for (const auto& e : cut.examples) EXPECT_LE(e.ids.size(), 120u);
  TrainConfig few = cfg;
  few.data.max_samples = 3;
  EXPECT_EQ(load_eval_data(few, codec, file).examples.size(), 3u);

  // Bad input names the file and the line; skip_bad_lines skips and counts.
  const std::string bad = cfg.output.dir + "/bad.jsonl";
  write_file_atomic(bad, R"({"instruction": "a", "output": "b"})"
                         "\n{\"instruction\": oops\n");
  const std::string msg = error_of([&] { load_eval_data(cfg, codec, bad); });
  EXPECT_NE(msg.find(bad + ":2"), std::string::npos) << msg;
  TrainConfig skip = cfg;
  skip.data.skip_bad_lines = true;
  const EvalData skipped = load_eval_data(skip, codec, bad);
  EXPECT_EQ(skipped.examples.size(), 1u);
  EXPECT_EQ(skipped.report.skipped.count, 1);
  EXPECT_NE(error_of([&] { load_eval_data(cfg, codec, cfg.output.dir + "/none.jsonl"); }).find("none.jsonl"),
            std::string::npos);
}

TEST(ContinueTraining, StartsFromTheAdaptersValuesAndSettings) {
  const std::string root = test::make_temp_dir("continue");
  // One batch per epoch (9 training examples, batch 16), no dropout, a constant learning rate:
  // the loss at a step is the loss of the values before it on the same tokens, whatever the run.
  TrainConfig a = example_config(root + "/a");
  a.adapter.method = AdapterMethod::DoRA;
  a.adapter.r = 4;
  a.adapter.alpha = 8;
  a.adapter.use_rslora = false;
  a.adapter.dropout = 0;
  a.training.batch_size = 16;
  a.training.warmup_steps = 0;
  a.training.lr_scheduler = LrScheduler::Constant;
  a.training.max_steps = 2;
  run_training(a, WeightStorage::BF16);
  TrainConfig c = a;  // the same run, uninterrupted, one step further
  c.output.dir = root + "/c";
  c.training.max_steps = 3;
  std::vector<double> c_losses;
  TrainCallbacks cc;
  cc.on_step = [&](const TrainLog& e) { c_losses.push_back(e.loss); };
  run_training(c, WeightStorage::BF16, cc);

  // A configuration that leaves the adapter settings at their defaults takes them from the adapter.
  TrainConfig b = example_config(root + "/b");
  b.training = a.training;
  b.adapter.dropout = 0;
  b.adapter.init_from = root + "/a/final_model";
  ConfigOrigins origins;
  for (const char* f :
       {"adapter.method", "adapter.r", "adapter.alpha", "adapter.use_rslora", "adapter.targets"})
    origins[f] = "default";
  b.adapter.targets = {"q_proj", "v_proj"};
  b = resolve_init_adapter(b, &origins);
  EXPECT_EQ(b.adapter.method, AdapterMethod::DoRA);
  EXPECT_EQ(b.adapter.r, 4);
  EXPECT_DOUBLE_EQ(b.adapter.alpha, 8);
  EXPECT_FALSE(b.adapter.use_rslora);
  EXPECT_EQ(b.adapter.targets, a.adapter.targets);
  EXPECT_EQ(origins["adapter.r"], "--adapter");
  std::vector<double> b_losses;
  TrainCallbacks bc;
  bc.on_step = [&](const TrainLog& e) { b_losses.push_back(e.loss); };
  std::vector<std::string> events;
  bc.on_event = [&](const std::string& e) { events.push_back(e); };
  run_training(b, WeightStorage::BF16, bc);
  ASSERT_EQ(b_losses.size(), 2u);
  ASSERT_EQ(c_losses.size(), 3u);
  // Step 1 of the continued run sees the first run's final values: the uninterrupted run's
  // step 3 loss (rows in another order within the batch: equal up to rounding).
  EXPECT_NEAR(b_losses[0], c_losses[2], 1e-6 * c_losses[2]);
  EXPECT_GT(std::abs(b_losses[0] - c_losses[0]), 1e-3);  // not a fresh start
  ASSERT_FALSE(events.empty());
  EXPECT_NE(events[0].find("Starting from the adapter"), std::string::npos) << events[0];
}

TEST(ContinueTraining, RefusesConflictingSettings) {
  const std::string root = test::make_temp_dir("continue-conflict");
  auto w = ModelWeights::load(test::source_path("examples/tiny-qwen2"), LoadOptions(WeightStorage::BF16));
  AdapterConfig ac;
  ac.method = LoraVariant::DoRA;
  ac.r = 4;
  ac.alpha = 8;
  ac.targets = {LinearKind::Q, LinearKind::V};
  write_peft_adapter(root + "/dora", AdapterSet(ac, w->layers(), 1),
                     test::source_path("examples/tiny-qwen2"));
  ac.method = LoraVariant::LoRA;
  write_peft_adapter(root + "/lora", AdapterSet(ac, w->layers(), 1),
                     test::source_path("examples/tiny-qwen2"));

  TrainConfig cfg = example_config(root + "/out");
  cfg.adapter.init_from = root + "/dora";
  ConfigOrigins origins{{"adapter.r", "--rank"}};
  cfg.adapter.r = 16;
  EXPECT_NE(
      error_of([&] { resolve_init_adapter(cfg, &origins); }).find("adapter.r = 16 (--rank) but the adapter"),
      std::string::npos);
  EXPECT_EQ(origins, (ConfigOrigins{{"adapter.r", "--rank"}}));  // a refusal changes nothing
  const std::string msg = error_of([&] { resolve_init_adapter(cfg, &origins); });
  EXPECT_NE(msg.find("has 4"), std::string::npos) << msg;
  EXPECT_NE(msg.find(root + "/dora/adapter_config.json"), std::string::npos) << msg;
  // BiDoRA continues a DoRA adapter; it cannot continue a LoRA one.
  cfg.adapter.r = 4;
  origins = {{"adapter.method", "t.yaml:3"}};
  cfg.adapter.method = AdapterMethod::BiDoRA;
  EXPECT_EQ(resolve_init_adapter(cfg, &origins).adapter.method, AdapterMethod::BiDoRA);
  cfg.adapter.init_from = root + "/lora";
  EXPECT_NE(error_of([&] {
              resolve_init_adapter(cfg, &origins);
            }).find("adapter.method = bidora (t.yaml:3) but the adapter to continue from has lora"),
            std::string::npos);
  // The trainer itself refuses a configuration that was not resolved against the adapter, before
  // loading anything.
  cfg.adapter.method = AdapterMethod::LoRA;
  const std::string unresolved = error_of([&] { run_training(cfg, WeightStorage::BF16); });
  EXPECT_NE(unresolved.find("adapter.alpha = 16 (the configuration) but the adapter to continue from has 8"),
            std::string::npos)
      << unresolved;
  cfg.adapter.init_from = root + "/missing";
  EXPECT_NE(
      error_of([&] { resolve_init_adapter(cfg, &origins); }).find("missing/adapter_config.json: missing"),
      std::string::npos);
}

}  // namespace
}  // namespace bidora::train
