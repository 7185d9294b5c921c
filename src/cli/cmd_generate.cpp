// `bidora generate`: text from a model, optionally with a trained adapter, streamed as it is
// produced. --prompt TEXT continues a text; --chat renders a conversation with the family's chat
// template (the one training uses) and answers as the assistant: one turn with --prompt, or an
// interactive conversation over stdin (one user turn per line, history kept) until EOF.
//
// Sampling settings: command-line flags, else generation_config.json's values, else bidora's
// defaults (temperature 0.7, top-k 50, top-p 0.9, repetition penalty 1.0); --temperature 0 is
// greedy. Generation stops at an end-of-sequence token (tokenizer eos, config.json and
// generation_config.json eos_token_id), at a --stop string (not printed) or after
// --max-new-tokens.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "adapters/adapter_loading.h"
#include "cli/commands.h"
#include "core/backend.h"
#include "core/error.h"
#include "data/dataset.h"
#include "generate/chat_prompt.h"
#include "generate/generation_config.h"
#include "generate/generator.h"
#include "generate/inference_adapters.h"
#include "model/inference.h"
#include "tokenizer/tokenizer.h"

namespace bidora::cli {
namespace {

struct Options {
  std::string model, adapter, prompt, system, chat_template, quantization = "bf16";
  bool chat = false, json = false, allow_base_mismatch = false, ignore_eos = false;
  int64_t max_new_tokens = 256;
  double temperature = 0, top_p = 0, repetition_penalty = 0;
  int64_t top_k = 0;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  int threads = 0;
  // Set at registration: whether the user gave these options.
  CLI::Option *prompt_opt = nullptr, *temperature_opt = nullptr, *top_p_opt = nullptr, *top_k_opt = nullptr,
              *penalty_opt = nullptr, *seed_opt = nullptr;
};

bool given(const CLI::Option* o) {
  return o && o->count() > 0;
}

SamplingParams sampling_for(const Options& o, const GenerationDefaults& g) {
  SamplingParams p = default_sampling(g);
  if (given(o.temperature_opt)) p.temperature = o.temperature;
  if (given(o.top_k_opt)) p.top_k = o.top_k;
  if (given(o.top_p_opt)) p.top_p = o.top_p;
  if (given(o.penalty_opt)) p.repetition_penalty = o.repetition_penalty;
  p.validate();
  return p;
}

// Token ids that end generation: the tokenizer's eos and generation_config.json's (its stop_ids),
// and config.json's eos_token_id (an int or a list), without duplicates.
std::vector<int32_t> stop_ids(const Tokenizer& tok, const ModelConfig& c, const GenerationDefaults& g) {
  std::vector<int32_t> ids = tok.special().stop_ids;
  auto add = [&](int64_t id) {
    if (id >= 0 && id < c.vocab_size && std::find(ids.begin(), ids.end(), id) == ids.end())
      ids.push_back(static_cast<int32_t>(id));
  };
  for (int64_t id : c.eos_token_ids) add(id);
  for (int64_t id : g.eos_token_ids) add(id);
  return ids;
}

data::ChatTemplate chat_template_for(const Tokenizer& tok, const std::string& model_dir,
                                     const std::string& name) {
  // Only the template's inputs: a tokenizer without an eos token can still render a chat.
  data::TextCodec codec;
  codec.bos_token = tok.special().bos_token;
  codec.eos_token = tok.special().eos_token;
  codec.chat_template = tok.chat_template();
  const data::ResolvedTemplate r = data::resolve_chat_template(codec, name);
  if (!r.chat_template)
    fail("--chat: {}: {}; choose one with --chat-template ({})", model_dir, r.why_none,
         fmt::join(data::chat_template_names(), ", "));
  return *r.chat_template;
}

nlohmann::ordered_json result_json(const GenerationResult& r, uint64_t seed) {
  nlohmann::ordered_json j;
  j["prompt_tokens"] = r.prompt_tokens;
  j["prefill_tokens"] = r.prefill_tokens;
  j["generated_tokens"] = static_cast<int64_t>(r.ids.size());
  j["finish_reason"] = r.finish_reason;
  j["text"] = r.text;
  j["prefill_tokens_per_s"] = r.prefill_tokens_per_s();
  j["decode_tokens_per_s"] = r.decode_tokens_per_s();
  j["seed"] = seed;
  return j;
}

// Decoded text is valid UTF-8, but a --stop string may end inside a character: such bytes are
// written as U+FFFD rather than making the JSON writer throw.
std::string dump(const nlohmann::ordered_json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

void print_summary(const GenerationResult& r, uint64_t seed) {
  fmt::print(
      stderr,
      "prompt {} tokens ({} run) | generated {} tokens ({}) | prefill {:.1f} tok/s | decode {:.1f} tok/s | "
      "seed {}\n",
      r.prompt_tokens, r.prefill_tokens, r.ids.size(), r.finish_reason, r.prefill_tokens_per_s(),
      r.decode_tokens_per_s(), seed);
}

void run(const Options& o) {
  if (o.threads > 0) set_num_threads(o.threads);
  const bool has_prompt = given(o.prompt_opt);
  if (!has_prompt && !o.chat) fail("generate: give --prompt TEXT, or --chat for a conversation");
  if (has_prompt && o.prompt.empty())
    fail("--prompt is empty: give the text to continue (or to answer, with --chat)");
  if (!o.system.empty() && !o.chat) fail("--system needs --chat (it is the conversation's system message)");
  if (o.max_new_tokens < 1) fail("--max-new-tokens must be >= 1, got {}", o.max_new_tokens);
  const auto storage = storage_from_string(o.quantization);
  if (!storage) fail("--quantization: '{}' is not one of f32, bf16, nf4, int8", o.quantization);

  auto w = ModelWeights::load(o.model, LoadOptions(*storage));
  const ModelConfig& c = w->config();
  const Tokenizer tok = Tokenizer::from_dir(w->dir());
  std::optional<data::ChatTemplate> tmpl;
  if (o.chat) tmpl = chat_template_for(tok, w->dir(), o.chat_template);
  // The adapter is checked against the model by the loader every command shares; generation then
  // runs it through InferenceAdapters (DoRA's norms computed once, not at every token).
  LoadedAdapter adapter;
  std::unique_ptr<InferenceAdapters> adapters;
  if (!o.adapter.empty()) {
    adapter = load_adapter_for_model(o.adapter, *w, o.model, o.allow_base_mismatch);
    adapters = std::make_unique<InferenceAdapters>(*adapter.set);
  }

  const GenerationDefaults gen = read_generation_config(w->dir());
  const SamplingParams sampling = sampling_for(o, gen);
  const uint64_t seed = given(o.seed_opt) ? o.seed : std::random_device{}();
  Sampler sampler(sampling, seed);
  GenerationOptions opt;
  opt.max_new_tokens = o.max_new_tokens;
  if (!o.ignore_eos) opt.stop_ids = stop_ids(tok, c, gen);
  opt.stop_strings = o.stop;
  const TextStream::DecodeFn decode = [&tok](std::span<const int32_t> ids) { return tok.decode(ids, true); };

  // Sized per turn (turn() reserves the prompt + the new tokens): a 7B model without GQA keeps
  // 1 MB of float32 keys and values per position.
  InferenceDecoder dec(*w, 1);
  dec.set_adapters(adapters.get());
  auto on_text = [&](std::string_view s) {
    if (o.json) return;
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
  };
  auto turn = [&](const std::vector<int32_t>& ids) {
    if (static_cast<int64_t>(ids.size()) + o.max_new_tokens > c.max_position_embeddings)
      fmt::print(stderr,
                 "warning: {} prompt tokens + {} new tokens exceed the model's context ({} positions)\n",
                 ids.size(), o.max_new_tokens, c.max_position_embeddings);
    dec.reserve_positions(static_cast<int64_t>(ids.size()) + o.max_new_tokens);
    const GenerationResult r = generate(dec, ids, opt, sampler, decode, on_text);
    if (!o.json) {
      std::fputs("\n", stdout);
      std::fflush(stdout);
    }
    print_summary(r, seed);
    return r;
  };

  if (!o.chat) {
    const GenerationResult r = turn(tok.encode(o.prompt, true));
    if (o.json) fmt::print("{}\n", dump(result_json(r, seed), 2));
    return;
  }
  std::vector<data::Message> messages;
  if (!o.system.empty()) messages.push_back({data::Role::System, o.system, std::nullopt});
  // A rendered chat already holds the template's special tokens: encoded without the
  // post-processor, as transformers encodes apply_chat_template's text.
  auto answer = [&](const std::string& user) {
    messages.push_back({data::Role::User, user, std::nullopt});
    const GenerationResult r = turn(tok.encode(render_generation_prompt(*tmpl, messages), false));
    messages.push_back({data::Role::Assistant, r.text, std::nullopt});
    return r;
  };
  if (has_prompt) {
    const GenerationResult r = answer(o.prompt);
    if (o.json) fmt::print("{}\n", dump(result_json(r, seed), 2));
    return;
  }
  const bool tty = ::isatty(STDIN_FILENO) != 0;
  std::string line;
  while (true) {
    if (tty) {
      std::fputs("> ", stderr);
      std::fflush(stderr);
    }
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const GenerationResult r = answer(line);
    if (o.json) {
      fmt::print("{}\n", dump(result_json(r, seed), -1));
      std::fflush(stdout);
    }
  }
}

}  // namespace

void register_generate(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* cmd =
      app.add_subcommand("generate", "Generate text with a model (and an adapter), streaming the output");
  cmd->add_option("-m,--model", o->model, "Model directory or Hugging Face id in the local cache")
      ->required();
  cmd->add_option("-a,--adapter", o->adapter, "PEFT adapter directory to apply (LoRA / DoRA)");
  cmd->add_flag("--allow-base-mismatch", o->allow_base_mismatch,
                "Apply the adapter even if its base_model_name_or_path names another model");
  o->prompt_opt =
      cmd->add_option("-p,--prompt", o->prompt, "Text to continue (with --chat: the user's message)");
  cmd->add_flag(
      "--chat", o->chat,
      "Chat with the family's chat template; without --prompt, reads one user turn per line from stdin "
      "until EOF");
  cmd->add_option("--system", o->system, "System message for --chat");
  cmd->add_option("--chat-template", o->chat_template,
                  "Chat template preset instead of the one recognised in the tokenizer: " +
                      fmt::format("{}", fmt::join(data::chat_template_names(), ", ")));
  cmd->add_option("-n,--max-new-tokens", o->max_new_tokens, "Most tokens to generate per reply")
      ->capture_default_str();
  o->temperature_opt =
      cmd->add_option("-t,--temperature", o->temperature,
                      "Sampling temperature; 0 = greedy (default: generation_config.json, else 0.7)");
  o->top_k_opt =
      cmd->add_option("--top-k", o->top_k,
                      "Keep the k most likely tokens; 0 = off (default: generation_config.json, else 50)");
  o->top_p_opt = cmd->add_option("--top-p", o->top_p,
                                 "Nucleus sampling: smallest set with probability >= p; 1 = off (default: "
                                 "generation_config.json, else 0.9)");
  o->penalty_opt = cmd->add_option(
      "--repetition-penalty", o->repetition_penalty,
      "Penalty on tokens already in the sequence (CTRL); 1 = off (default: generation_config.json, else 1)");
  o->seed_opt =
      cmd->add_option("--seed", o->seed, "Seed of the sampler (default: random, printed in the summary)");
  cmd->add_option("--stop", o->stop, "Stop when the text contains this string (not printed); repeatable")
      ->allow_extra_args(false);
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Do not stop at end-of-sequence tokens (benchmarks)");
  cmd->add_option("-q,--quantization", o->quantization, "Frozen weight storage: f32, bf16, nf4, int8")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "Worker threads (0 = all available cores)");
  cmd->add_flag(
      "--json", o->json,
      "Print {prompt_tokens, generated_tokens, text, prefill_tokens_per_s, decode_tokens_per_s, ...} "
      "instead of streaming the text (one line per turn in an interactive chat)");
  cmd->callback([o] { run(*o); });
}

}  // namespace bidora::cli
