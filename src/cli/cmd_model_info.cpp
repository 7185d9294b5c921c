// `bidora model-info`: load a model as training would, and show its architecture, what the
// frozen weights cost in memory, how long loading took, and (with --tokens) a forward pass.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "cli/commands.h"
#include "cli/table.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/process_stats.h"
#include "model/decoder.h"

namespace bidora::cli {
namespace {

struct Options {
  std::string model;
  std::string quantization = "bf16";
  std::string tokens;
  int threads = 0;
  bool json = false;
};

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::string s = text;
  std::replace(s.begin(), s.end(), ',', ' ');
  std::istringstream in(s);
  std::string tok;
  while (in >> tok) {
    try {
      size_t used = 0;
      const long v = std::stol(tok, &used);
      if (used != tok.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument(tok);
      ids.push_back(static_cast<int32_t>(v));
    } catch (const std::exception&) {
      fail("--tokens: '{}' is not a token id (expected non-negative integers separated by spaces or commas)",
           tok);
    }
  }
  if (ids.empty()) fail("--tokens: no token ids given");
  return ids;
}

std::string rope_desc(const ModelConfig& c) {
  std::string s = fmt::format("θ={:g}", c.rope_theta);
  if (c.rope_scaling.type != "default")
    s += fmt::format(", {} ×{:g}", c.rope_scaling.type, c.rope_scaling.factor);
  return s;
}

void run(const Options& o) {
  if (o.threads > 0) set_num_threads(o.threads);
  const auto storage = storage_from_string(o.quantization);
  if (!storage) fail("--quantization: '{}' is not one of f32, bf16, nf4, int8", o.quantization);
  const auto before = process_memory();
  const auto t0 = std::chrono::steady_clock::now();
  auto w = ModelWeights::load(o.model, LoadOptions(*storage));
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto after = process_memory();
  const ModelConfig& c = w->config();

  nlohmann::ordered_json j;
  j["model_dir"] = w->dir();
  j["family"] = family_name(c.family);
  j["architecture"] = c.architecture;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_layers"] = c.num_layers;
  j["num_heads"] = c.num_heads;
  j["num_kv_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab_size;
  j["rope_theta"] = c.rope_theta;
  j["rope_scaling"] = c.rope_scaling.type;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["parameters"] = c.num_parameters();
  j["checkpoint_files"] = w->checkpoint().files().size();
  j["checkpoint_bytes"] = w->checkpoint().total_bytes();
  j["storage"] = storage_name(*storage);
  j["weight_bytes"] = w->resident_bytes();
  j["load_seconds"] = load_s;
  j["rss_bytes"] = after.rss_bytes;
  j["rss_increase_bytes"] = after.rss_bytes - before.rss_bytes;
  j["peak_rss_bytes"] = after.peak_rss_bytes;

  if (!o.tokens.empty()) {
    TokenBatch b;
    b.input_ids = parse_ids(o.tokens);
    b.rows = 1;
    b.seq_len = static_cast<int64_t>(b.input_ids.size());
    b.labels = b.input_ids;
    Decoder dec(*w);
    const auto t1 = std::chrono::steady_clock::now();
    const LossSums loss = dec.loss(b);
    j["forward_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    j["loss"] = loss.mean();
    j["perplexity"] = std::exp(loss.mean());
    j["loss_tokens"] = loss.count;
    j["peak_rss_bytes"] = process_memory().peak_rss_bytes;
  }

  if (o.json) {
    fmt::print("{}\n", j.dump(2));
    return;
  }
  Table arch{"Model"};
  arch.columns({"Property", "Value"});
  arch.row({"Directory", w->dir()});
  arch.row({"Family / architecture", fmt::format("{} / {}", family_name(c.family), c.architecture)});
  arch.row({"Hidden / intermediate", fmt::format("{} / {}", c.hidden_size, c.intermediate_size)});
  arch.row({"Layers", std::to_string(c.num_layers)});
  arch.row(
      {"Heads (q / kv) × head_dim", fmt::format("{} / {} × {}", c.num_heads, c.num_kv_heads, c.head_dim)});
  arch.row({"Vocabulary", std::to_string(c.vocab_size)});
  arch.row({"RoPE", rope_desc(c)});
  arch.row({"Tied embeddings", check_mark(c.tie_word_embeddings)});
  arch.row({"Biases (qkv / o / mlp)", fmt::format("{} / {} / {}", check_mark(c.qkv_bias),
                                                  check_mark(c.o_bias), check_mark(c.mlp_bias))});
  if (c.sliding_window) arch.row({"Sliding window", std::to_string(*c.sliding_window)});
  arch.row({"Parameters", format_count(c.num_parameters())});
  arch.print(stdout);

  Table mem{"Loading"};
  mem.columns({"Measure", {"Value", Align::Right}});
  mem.row({"Checkpoint", fmt::format("{} in {} file(s)", format_bytes(w->checkpoint().total_bytes()),
                                     w->checkpoint().files().size())});
  mem.row({"Frozen weights storage", storage_name(*storage)});
  mem.row({"Weights resident", format_bytes(static_cast<int64_t>(w->resident_bytes()))});
  mem.row({"Load time", fmt::format("{:.2f} s", load_s)});
  mem.row({"RSS after load", format_bytes(after.rss_bytes)});
  mem.row({"Peak RSS", format_bytes(j["peak_rss_bytes"].get<int64_t>())});
  if (j.contains("loss")) {
    mem.row(
        {"Loss / perplexity", fmt::format("{:.4f} / {:.2f} over {} tokens", j["loss"].get<double>(),
                                          j["perplexity"].get<double>(), j["loss_tokens"].get<int64_t>())});
    mem.row({"Forward time", fmt::format("{:.3f} s", j["forward_seconds"].get<double>())});
  }
  mem.print(stdout);
}

}  // namespace

void register_model_info(CLI::App& app) {
  auto opts = std::make_shared<Options>();
  auto* cmd =
      app.add_subcommand("model-info", "Load a model and show its architecture, memory and load time");
  cmd->add_option("-m,--model", opts->model, "Model directory or Hugging Face id in the local cache")
      ->required();
  cmd->add_option("-q,--quantization", opts->quantization, "Frozen weight storage: f32, bf16, nf4, int8")
      ->capture_default_str();
  cmd->add_option("--tokens", opts->tokens,
                  "Token ids to run a forward pass on (prints loss and perplexity)");
  cmd->add_option("--threads", opts->threads, "Worker threads (0 = all available cores)");
  cmd->add_flag("--json", opts->json, "Print JSON instead of tables");
  cmd->callback([opts] { run(*opts); });
}

}  // namespace bidora::cli
