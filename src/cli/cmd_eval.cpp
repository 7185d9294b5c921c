// `bidora eval`: loss and perplexity of a model, and of the model with an adapter, over a JSONL
// file, measured exactly as training measures its validation loss (train/evaluate.h). It takes
// the options of `train` (so `bidora eval -c config.yaml --adapter out/final_model --file f.jsonl`
// evaluates with the run's formatting, masking, max_seq_len, packing, batch size and storage),
// plus --file and --json.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "adapters/adapter_loading.h"
#include "cli/commands.h"
#include "cli/config_command.h"
#include "cli/config_options.h"
#include "cli/progress_bar.h"
#include "cli/table.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/hardware.h"
#include "data/codec.h"
#include "model/decoder.h"
#include "tokenizer/tokenizer.h"
#include "train/evaluate.h"

namespace bidora::cli {
namespace {

struct EvalArgs {
  std::string file;
  bool json = false;
};

std::string signed_fixed(double v, int digits) {
  return fmt::format("{}{:.{}f}", v > 0 ? "+" : "", v, digits);
}

// Perplexities span from ~1 to the vocabulary size: fewer decimals as they grow.
int ppl_digits(double ppl) {
  return std::abs(ppl) < 100 ? 3 : std::abs(ppl) < 10000 ? 1 : 0;
}

void run(const ConfigOptions& options, const EvalArgs& args) {
  ConfigOrigins origins;
  const TrainConfig cfg = options.resolve(&origins);
  validate(cfg);
  if (cfg.model.name_or_path.empty())
    fail("eval: no model given (--model, or model.name_or_path in --config)");
  const std::string file = args.file.empty() ? cfg.data.val_file : args.file;
  if (file.empty())
    fail(
        "eval: no data file given (--file data.jsonl, or data.val_file in --config): a JSONL file in any "
        "format "
        "`train` reads");

  // The storage and threads `train` would use for this configuration, so that an adapter is
  // evaluated over the weights it was trained on. Evaluation keeps no activations for a backward,
  // so the plan's memory verdict does not apply here.
  const HardwareInfo hw = detect_hardware();
  const ConfigPlan plan = make_config_plan(cfg, origins, hw);
  if (!plan.training) fail("model '{}': {}", cfg.model.name_or_path, plan.note);
  const WeightStorage storage = plan.training->storage;
  set_num_threads(plan.training->threads);

  const auto t0 = std::chrono::steady_clock::now();
  auto weights = ModelWeights::load(cfg.model.name_or_path, LoadOptions(storage));
  const Tokenizer tokenizer = Tokenizer::from_dir(weights->dir());
  const data::TextCodec codec = data::codec_for(tokenizer);
  const train::EvalData data = train::load_eval_data(cfg, codec, file);
  std::optional<LoadedAdapter> adapter;
  if (!cfg.adapter.init_from.empty())
    adapter = load_adapter_for_model(cfg.adapter.init_from, *weights, cfg.model.name_or_path,
                                     cfg.adapter.allow_base_mismatch);

  Decoder decoder(*weights);
  const bool bf16_compute = cfg.model.compute_dtype == ComputeDtype::BF16;  // as the trainer
  decoder.set_bf16_compute(bf16_compute);
  if (adapter) adapter->runtime->set_bf16_compute(bf16_compute);

  // Progress over every pass (base, then adapter) on stderr, so --json output stays clean.
  ProgressBar bar(stderr);
  const int64_t passes = adapter ? 2 : 1;
  const int64_t total = passes * static_cast<int64_t>(data.batches.size());
  int64_t pass = 0;
  auto on_batch = [&](int64_t done, int64_t) {
    ProgressState s;
    s.step = pass * static_cast<int64_t>(data.batches.size()) + done;
    s.total = total;
    s.elapsed_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    bar.update(s);
  };
  const train::EvalResult base = train::eval_result(train::evaluation_loss(decoder, data.batches, on_batch));
  std::optional<train::EvalResult> adapted;
  if (adapter) {
    pass = 1;
    decoder.set_adapters(adapter->runtime.get());
    adapted = train::eval_result(train::evaluation_loss(decoder, data.batches, on_batch));
  }
  bar.finish();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  if (args.json) {
    auto result_json = [](const train::EvalResult& r) {
      return nlohmann::ordered_json{{"loss", r.loss}, {"perplexity", r.perplexity}, {"tokens", r.tokens}};
    };
    nlohmann::ordered_json j;
    j["file"] = file;
    j["model"] = cfg.model.name_or_path;
    j["storage"] = storage_name(storage);
    j["examples"] = data.examples.size();
    j["truncated"] = data.truncated;
    j["dropped_untrained"] = data.dropped_untrained;
    j["skipped_lines"] = data.report.skipped.count;
    j["max_seq_len"] = cfg.training.max_seq_len;
    j["train_on_prompt"] = cfg.data.train_on_prompt;
    j["packing"] = cfg.data.packing;
    j["base"] = result_json(base);
    if (adapted) {
      j["adapter"] = result_json(*adapted);
      j["adapter"]["dir"] = adapter->dir;
      j["delta"] = {{"loss", adapted->loss - base.loss},
                    {"perplexity", adapted->perplexity - base.perplexity}};
    }
    j["seconds"] = seconds;
    fmt::print("{}\n", j.dump(2));
    return;
  }

  Table t(fmt::format("Evaluation of {}", file));
  if (adapted) {
    t.columns({"Metric", {"Base", Align::Right}, {"Adapter", Align::Right}, {"Δ", Align::Right}});
    const double dppl = adapted->perplexity - base.perplexity;
    const Color better = adapted->loss < base.loss   ? Color::Green
                         : adapted->loss > base.loss ? Color::Red
                                                     : Color::None;
    t.row({"Loss", fmt::format("{:.4f}", base.loss), fmt::format("{:.4f}", adapted->loss),
           Cell{signed_fixed(adapted->loss - base.loss, 4), better}});
    t.row({"Perplexity", fmt::format("{:.{}f}", base.perplexity, ppl_digits(base.perplexity)),
           fmt::format("{:.{}f}", adapted->perplexity, ppl_digits(adapted->perplexity)),
           Cell{fmt::format("{} ({}%)", signed_fixed(dppl, ppl_digits(dppl)),
                            signed_fixed(100.0 * dppl / base.perplexity, 1)),
                better}});
    t.row({"Tokens", fmt::format("{}", base.tokens), fmt::format("{}", adapted->tokens), ""});
  } else {
    t.columns({"Metric", {"Base", Align::Right}});
    t.row({"Loss", fmt::format("{:.4f}", base.loss)});
    t.row({"Perplexity", fmt::format("{:.{}f}", base.perplexity, ppl_digits(base.perplexity))});
    t.row({"Tokens", fmt::format("{}", base.tokens)});
  }
  t.footer(fmt::format("model {} ({}){}", cfg.model.name_or_path, storage_name(storage),
                       adapted ? fmt::format(", adapter {}", adapter->dir) : ""));
  t.footer(fmt::format(
      "{} examples ({} truncated to {} tokens, {} without a trained token left out{}), loss on {}{}; {:.1f} "
      "s",
      data.examples.size(), data.truncated, cfg.training.max_seq_len, data.dropped_untrained,
      data.report.skipped.count ? fmt::format(", {} bad lines skipped", data.report.skipped.count) : "",
      cfg.data.train_on_prompt ? "every token" : "responses only", cfg.data.packing ? ", packed" : "",
      seconds));
  t.print(stdout);
}

}  // namespace

void register_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval",
      "Loss and perplexity over a JSONL file, of the model and of --adapter DIR, as training measures them");
  auto args = std::make_shared<EvalArgs>();
  cmd->add_option("--file,--data", args->file,
                  "JSONL file to evaluate (any format train reads); default: data.val_file of --config")
      ->type_name("FILE")
      ->group("Evaluation");
  cmd->add_flag("--json", args->json, "Print the results as JSON")->group("Evaluation");
  auto options = std::make_shared<ConfigOptions>(*cmd);
  cmd->callback([options, args] { run(*options, *args); });
}

}  // namespace bidora::cli
