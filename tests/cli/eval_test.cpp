// `bidora eval` as a user runs it (the executable, on examples/tiny-qwen2 and its Alpaca data):
// the JSON numbers against the library's evaluation, the side-by-side table, a YAML config with
// the training settings, and the errors (no file, a bad line, a missing file, an adapter of
// another base model, with and without --allow-base-mismatch).
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "adapters/adapter_loading.h"
#include "adapters/peft_io.h"
#include "core/files.h"
#include "data/codec.h"
#include "model/decoder.h"
#include "run_bidora.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "train/evaluate.h"

namespace bidora::cli {
namespace {

using nlohmann::json;
using test::Finished;
using test::run_bidora;
using ::testing::HasSubstr;

std::string tiny_model_dir() {
  return test::source_path("examples/tiny-qwen2");
}
std::string alpaca() {
  return test::source_path("examples/data/alpaca.jsonl");
}

// A LoRA adapter on q/v of tiny-qwen2 with non-zero B, trained (as far as the file says) on `base`.
void write_adapter(const std::string& dir, const std::string& base) {
  const auto w = ModelWeights::load(tiny_model_dir(), LoadOptions(WeightStorage::BF16));
  AdapterConfig cfg;
  cfg.r = 4;
  cfg.alpha = 8;
  AdapterSet set(cfg, w->layers(), 3);
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(0.0f, 0.2f);
  for (LoraLayer* l : set.all())
    for (float& b : l->B) b = nd(rng);
  write_peft_adapter(dir, set, base);
}

// The library's evaluation with the default configuration (what the CLI runs without -c).
train::EvalResult library_eval(const std::string& adapter_dir) {
  TrainConfig cfg;
  cfg.model.name_or_path = tiny_model_dir();
  const auto w = ModelWeights::load(cfg.model.name_or_path, LoadOptions(WeightStorage::BF16));
  const Tokenizer tok = Tokenizer::from_dir(w->dir());
  const data::TextCodec codec = data::codec_for(tok);
  const train::EvalData data = train::load_eval_data(cfg, codec, alpaca());
  Decoder dec(*w);
  std::optional<LoadedAdapter> adapter;
  if (!adapter_dir.empty()) {
    adapter = load_adapter_for_model(adapter_dir, *w, cfg.model.name_or_path, false);
    dec.set_adapters(adapter->runtime.get());
  }
  return train::eval_result(train::evaluation_loss(dec, data.batches));
}

TEST(EvalCommand, JsonEqualsTheLibraryAndTheTableShowsBothSides) {
  const std::string dir = test::make_temp_dir("cli-eval");
  write_adapter(dir + "/adapter", tiny_model_dir());
  const Finished f = run_bidora(
      {"eval", "-m", tiny_model_dir(), "--file", alpaca(), "--adapter", dir + "/adapter", "--json"}, dir);
  ASSERT_EQ(f.exit_code, 0) << f.err;
  const json j = json::parse(f.out);  // stdout holds the JSON only
  const train::EvalResult base = library_eval(""), tuned = library_eval(dir + "/adapter");
  EXPECT_EQ(j["storage"], "bf16");
  EXPECT_EQ(j["examples"], 10);
  EXPECT_DOUBLE_EQ(j["base"]["loss"].get<double>(), base.loss);
  EXPECT_DOUBLE_EQ(j["base"]["perplexity"].get<double>(), std::exp(base.loss));
  EXPECT_EQ(j["base"]["tokens"], 195);  // the Alpaca responses (+ EOS) of the 10 examples
  EXPECT_DOUBLE_EQ(j["adapter"]["loss"].get<double>(), tuned.loss);
  EXPECT_EQ(j["adapter"]["dir"], dir + "/adapter");
  EXPECT_DOUBLE_EQ(j["delta"]["loss"].get<double>(), tuned.loss - base.loss);
  EXPECT_GT(std::abs(tuned.loss - base.loss), 1e-3);  // the adapter changes the loss

  const Finished t =
      run_bidora({"eval", "-m", tiny_model_dir(), "--file", alpaca(), "-a", dir + "/adapter"}, dir);
  ASSERT_EQ(t.exit_code, 0) << t.err;
  for (const std::string& s :
       {std::string("Metric"), std::string("Base"), std::string("Adapter"), std::string("Δ"),
        fmt::format("{:.4f}", base.loss), fmt::format("{:.4f}", tuned.loss), std::string("Perplexity"),
        std::string("Tokens"), std::string("10 examples")})
    EXPECT_THAT(t.out, HasSubstr(s));
  // Without an adapter: the base column only.
  const Finished b = run_bidora({"eval", "-m", tiny_model_dir(), "--file", alpaca()}, dir);
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_THAT(b.out, HasSubstr(fmt::format("{:.4f}", base.loss)));
  EXPECT_THAT(b.out, ::testing::Not(HasSubstr("Adapter")));
}

TEST(EvalCommand, TakesTheTrainingSettingsFromAConfigFile) {
  const std::string dir = test::make_temp_dir("cli-eval-config");
  write_file_atomic(dir + "/run.yaml", fmt::format("model:\n  name_or_path: {}\n"
                                                   "training:\n  max_seq_len: 120\n  batch_size: 3\n"
                                                   "data:\n  val_file: {}\n  train_on_prompt: true\n",
                                                   tiny_model_dir(), alpaca()));
  const Finished f = run_bidora({"eval", "-c", dir + "/run.yaml", "--json"}, dir);
  ASSERT_EQ(f.exit_code, 0) << f.err;
  const json j = json::parse(f.out);
  EXPECT_EQ(j["file"], alpaca());  // data.val_file when --file is not given
  EXPECT_EQ(j["max_seq_len"], 120);
  EXPECT_EQ(j["train_on_prompt"], true);
  EXPECT_GT(j["truncated"].get<int>(), 0);
  EXPECT_GT(j["base"]["tokens"].get<int>(), 195);  // prompts are in the loss too
  // A flag overrides the file.
  const Finished g = run_bidora({"eval", "-c", dir + "/run.yaml", "--no-train-on-prompt", "--json"}, dir);
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_EQ(json::parse(g.out)["train_on_prompt"], false);
}

TEST(EvalCommand, Errors) {
  const std::string dir = test::make_temp_dir("cli-eval-errors");
  auto expect_failure = [&](const std::vector<std::string>& args, const std::vector<std::string>& parts) {
    const Finished f = run_bidora(args, dir);
    EXPECT_EQ(f.exit_code, 1) << f.out << f.err;
    for (const auto& p : parts) EXPECT_THAT(f.err, HasSubstr(p));
  };
  expect_failure({"eval", "-m", tiny_model_dir()}, {"no data file given", "--file"});
  expect_failure({"eval", "--file", alpaca()}, {"no model given"});
  expect_failure({"eval", "-m", tiny_model_dir(), "--file", dir + "/none.jsonl"}, {dir + "/none.jsonl"});
  write_file_atomic(dir + "/bad.jsonl",
                    "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": oops\n");
  expect_failure({"eval", "-m", tiny_model_dir(), "--file", dir + "/bad.jsonl"}, {dir + "/bad.jsonl:2"});
  const Finished skipped = run_bidora(
      {"eval", "-m", tiny_model_dir(), "--file", dir + "/bad.jsonl", "--skip-bad-lines", "--json"}, dir);
  ASSERT_EQ(skipped.exit_code, 0) << skipped.err;
  EXPECT_EQ(json::parse(skipped.out)["skipped_lines"], 1);
  expect_failure({"eval", "-m", tiny_model_dir(), "--file", alpaca(), "--adapter", dir + "/nope"},
                 {dir + "/nope", "no such adapter directory"});

  // An adapter whose config names another base model.
  write_adapter(dir + "/other", "Qwen/Qwen2.5-0.5B-Instruct");
  expect_failure({"eval", "-m", tiny_model_dir(), "--file", alpaca(), "--adapter", dir + "/other"},
                 {"base_model_name_or_path is \"Qwen/Qwen2.5-0.5B-Instruct\"", "--allow-base-mismatch"});
  const Finished allowed = run_bidora({"eval", "-m", tiny_model_dir(), "--file", alpaca(), "--adapter",
                                       dir + "/other", "--allow-base-mismatch", "--json"},
                                      dir);
  EXPECT_EQ(allowed.exit_code, 0) << allowed.err;
  EXPECT_THAT(allowed.err, HasSubstr("warning"));
}

}  // namespace
}  // namespace bidora::cli
