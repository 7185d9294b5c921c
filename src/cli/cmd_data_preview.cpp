// `bidora data-preview`: load a JSONL file exactly as training would, then show how a few
// examples are rendered and which of their tokens are trained, plus statistics over the file.
// The work is done by data::run_data_preview (src/data/preview.h); this file only maps options
// and prints.
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/table.h"
#include "core/error.h"
#include "data/chat_template.h"
#include "data/codec.h"
#include "data/preview.h"
#include "io/model_files.h"
#include "tokenizer/tokenizer.h"

namespace bidora::cli {
namespace {

struct Options {
  std::string model;
  std::string file;
  int64_t num = 3;
  int64_t max_seq_len = 1024;
  bool train_on_prompt = false;
  bool skip_bad_lines = false;
  std::string chat_template;
  int bins = 10;
  bool no_color = false;
  bool json = false;
};

void run(const Options& o) {
  const std::string dir = resolve_model_dir(o.model);
  const Tokenizer tok = Tokenizer::from_dir(dir);
  const data::TextCodec codec = data::codec_for(tok);

  data::PreviewOptions p;
  p.file = o.file;
  p.num_examples = o.num;
  p.max_seq_len = o.max_seq_len;
  p.train_on_prompt = o.train_on_prompt;
  p.bad_lines = o.skip_bad_lines ? data::BadLinePolicy::Skip : data::BadLinePolicy::Stop;
  p.chat_template = o.chat_template;
  p.histogram_bins = o.bins;
  const data::PreviewResult r = data::run_data_preview(codec, p);

  if (o.json) {
    nlohmann::ordered_json j = data::preview_json(r);
    j["tokenizer_dir"] = dir;
    j["options"] = {{"max_seq_len", o.max_seq_len},
                    {"train_on_prompt", o.train_on_prompt},
                    {"skip_bad_lines", o.skip_bad_lines}};
    // Invalid UTF-8 cannot reach here (the JSONL parser rejects it), but a decoded token may
    // end in the middle of a character: replace rather than fail.
    fmt::print("{}\n", j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
    return;
  }
  const bool color = !o.no_color && style_for(stdout).color;
  fmt::print("{}", data::format_preview(r, color));
}

}  // namespace

void register_data_preview(CLI::App& app) {
  auto opts = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "data-preview", "Show how training data is rendered, masked and tokenized, with dataset statistics");
  cmd->add_option(
         "-m,--model", opts->model,
         "Model or tokenizer directory (tokenizer.json, tokenizer_config.json), or a Hugging Face id in "
         "the local cache")
      ->required();
  cmd->add_option("-f,--file", opts->file, "Training data (JSONL)")->required()->check(CLI::ExistingFile);
  cmd->add_option("-n,--num", opts->num, "Number of examples to show")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1000000}));
  cmd->add_option("--max-seq-len", opts->max_seq_len, "Truncate examples to this many tokens")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  cmd->add_flag("--train-on-prompt", opts->train_on_prompt,
                "Train on every token (prompts, system and user turns too), not only on the responses");
  cmd->add_flag("--skip-bad-lines", opts->skip_bad_lines,
                "Skip malformed or invalid lines and count them (default: stop at the first one)");
  cmd->add_option(
         "--chat-template", opts->chat_template,
         "Chat template for {\"messages\"} records, instead of the one recognised in the tokenizer's "
         "tokenizer_config.json")
      ->check(CLI::IsMember(data::chat_template_names()));
  cmd->add_option("--bins", opts->bins, "Bars in the length histogram")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  cmd->add_flag("--no-color", opts->no_color, "Mark trained text with [[ ]] instead of colours");
  cmd->add_flag("--json", opts->json, "Print JSON (includes token ids and flags of the shown examples)");
  cmd->callback([opts] { run(*opts); });
}

}  // namespace bidora::cli
