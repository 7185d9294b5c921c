// `bidora generate` as a user runs it (the executable on examples/tiny-qwen2): the JSON and the
// streamed text against the library's generation loop on the same settings, the chat prompt's
// token count against the rendered template, an interactive chat over stdin that keeps its
// history and reuses the KV cache, seeded sampling, stop strings, an adapter (and one for another
// base model), and the error messages.
#include <fcntl.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "adapters/adapter_loading.h"
#include "adapters/peft_io.h"
#include "core/files.h"
#include "generate/chat_prompt.h"
#include "generate/generator.h"
#include "model/inference.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"

namespace bidora::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;

struct Finished {
  int exit_code = -1;
  std::string out, err;
};

// Runs the bidora executable with `args` and `input` on stdin; stdout and stderr into files of `dir`.
Finished run_bidora(const std::vector<std::string>& args, const std::string& dir,
                    const std::string& input = "") {
  const std::string in_path = dir + "/stdin.txt", out_path = dir + "/stdout.txt",
                    err_path = dir + "/stderr.txt";
  std::ofstream(in_path) << input;
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int i = ::open(in_path.c_str(), O_RDONLY);
    const int o = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (i < 0 || o < 0 || e < 0) ::_exit(126);
    ::dup2(i, STDIN_FILENO);
    ::dup2(o, STDOUT_FILENO);
    ::dup2(e, STDERR_FILENO);
    std::vector<char*> argv{const_cast<char*>(BIDORA_EXECUTABLE)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(BIDORA_EXECUTABLE, argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  Finished f;
  f.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  f.out = read_file(out_path);
  f.err = read_file(err_path);
  return f;
}

std::string tiny() {
  return test::source_path("examples/tiny-qwen2");
}

json parse_json(const Finished& f) {
  EXPECT_EQ(f.exit_code, 0) << f.err;
  try {
    return json::parse(f.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not JSON: " << f.out << "\n" << f.err;
    return json::object();
  }
}

// The library's generation on the same model with the settings the CLI resolves (bf16 weights,
// the tokenizer's and config.json's stop tokens).
GenerationResult library_generate(const std::vector<int32_t>& ids, int64_t max_new, const SamplingParams& p,
                                  uint64_t seed, const std::string& adapter = "") {
  auto w = ModelWeights::load(tiny(), LoadOptions(WeightStorage::BF16));
  const Tokenizer tok = Tokenizer::from_dir(tiny());
  LoadedAdapter la;
  if (!adapter.empty()) la = load_adapter_for_model(adapter, *w, tiny(), false);
  InferenceDecoder dec(*w, 64);
  dec.set_adapters(la.runtime.get());
  Sampler s(p, seed);
  GenerationOptions opt;
  opt.max_new_tokens = max_new;
  opt.stop_ids = tok.special().stop_ids;
  for (int64_t e : w->config().eos_token_ids)
    if (std::find(opt.stop_ids.begin(), opt.stop_ids.end(), e) == opt.stop_ids.end())
      opt.stop_ids.push_back(static_cast<int32_t>(e));
  return generate(dec, ids, opt, s, [&](std::span<const int32_t> x) { return tok.decode(x, true); });
}

TEST(GenerateCommand, GreedyJsonAndStreamedTextMatchTheLibrary) {
  const std::string dir = test::make_temp_dir("gen-greedy");
  const Finished f =
      run_bidora({"generate", "-m", tiny(), "-p", "Hello world", "-n", "12", "-t", "0", "--json"}, dir);
  const json j = parse_json(f);
  const Tokenizer tok = Tokenizer::from_dir(tiny());
  const std::vector<int32_t> ids = tok.encode("Hello world", true);
  const GenerationResult r = library_generate(ids, 12, SamplingParams{.temperature = 0.0}, 0);
  EXPECT_EQ(j["prompt_tokens"], ids.size());
  EXPECT_EQ(j["prefill_tokens"], ids.size());
  EXPECT_EQ(j["generated_tokens"], r.ids.size());
  EXPECT_EQ(j["text"], r.text);
  EXPECT_EQ(j["finish_reason"], r.finish_reason);
  EXPECT_GT(j["decode_tokens_per_s"].get<double>(), 0.0);
  EXPECT_GT(j["prefill_tokens_per_s"].get<double>(), 0.0);

  // Streaming: stdout is the text and a newline; the summary line goes to stderr.
  const Finished s = run_bidora({"generate", "-m", tiny(), "-p", "Hello world", "-n", "12", "-t", "0"}, dir);
  EXPECT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(s.out, r.text + "\n");
  EXPECT_THAT(s.err, HasSubstr(fmt::format("prompt {} tokens", ids.size())));
  EXPECT_THAT(s.err, HasSubstr(fmt::format("generated {} tokens ({})", r.ids.size(), r.finish_reason)));
  EXPECT_THAT(s.err, HasSubstr("decode "));
}

TEST(GenerateCommand, ChatTurnUsesTheTemplatesGenerationPrompt) {
  const std::string dir = test::make_temp_dir("gen-chat");
  const Finished f = run_bidora({"generate", "-m", tiny(), "--chat", "--system", "Be brief.", "-p", "Hi",
                                 "-n", "6", "-t", "0", "--json"},
                                dir);
  const json j = parse_json(f);
  const Tokenizer tok = Tokenizer::from_dir(tiny());
  const std::vector<int32_t> ids = tok.encode(
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
      false);
  EXPECT_EQ(j["prompt_tokens"], ids.size());
  EXPECT_EQ(j["text"], library_generate(ids, 6, SamplingParams{.temperature = 0.0}, 0).text);
}

TEST(GenerateCommand, InteractiveChatKeepsHistoryAndReusesTheCache) {
  const std::string dir = test::make_temp_dir("gen-interactive");
  const Finished f = run_bidora({"generate", "-m", tiny(), "--chat", "-n", "5", "-t", "0", "--json"}, dir,
                                "Hi\n\nHow are you?\n");
  ASSERT_EQ(f.exit_code, 0) << f.err;
  std::istringstream lines(f.out);
  std::vector<json> turns;
  for (std::string line; std::getline(lines, line);) turns.push_back(json::parse(line));
  ASSERT_EQ(turns.size(), 2u) << f.out;  // the empty line is no turn
  const int64_t p1 = turns[0]["prompt_tokens"], g1 = turns[0]["generated_tokens"];
  const int64_t p2 = turns[1]["prompt_tokens"], run2 = turns[1]["prefill_tokens"];
  EXPECT_EQ(turns[0]["prefill_tokens"], p1);
  // The second prompt holds the first turn and its reply; only the new part is run.
  EXPECT_GT(p2, p1 + g1);
  EXPECT_LT(run2, p2 - p1);
  EXPECT_GT(run2, 0);
  // The same two-turn conversation rendered by the library.
  const Tokenizer tok = Tokenizer::from_dir(tiny());
  const auto tmpl = data::chat_template_by_name("qwen2", "", "<|im_end|>");
  std::vector<data::Message> m = {{data::Role::User, "Hi", std::nullopt},
                                  {data::Role::Assistant, turns[0]["text"].get<std::string>(), std::nullopt},
                                  {data::Role::User, "How are you?", std::nullopt}};
  EXPECT_EQ(p2, static_cast<int64_t>(tok.encode(render_generation_prompt(tmpl, m), false).size()));
}

TEST(GenerateCommand, SeededSamplingIsReproducibleAndStopStringsCutTheText) {
  const std::string dir = test::make_temp_dir("gen-seed");
  const std::vector<std::string> args = {"generate", "-m",  tiny(),    "-p", "Hello",   "-n", "16",
                                         "-t",       "1.0", "--top-k", "0",  "--top-p", "1",  "--json"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = args;
    a.insert(a.end(), extra.begin(), extra.end());
    return parse_json(run_bidora(a, dir));
  };
  const json a = with({"--seed", "7"}), b = with({"--seed", "7"});
  EXPECT_EQ(a["text"], b["text"]);
  EXPECT_EQ(a["seed"], 7);
  const Tokenizer tok = Tokenizer::from_dir(tiny());
  EXPECT_EQ(a["text"], library_generate(tok.encode("Hello", true), 16,
                                        SamplingParams{.temperature = 1.0, .top_k = 0, .top_p = 1.0}, 7)
                           .text);
  const std::string text = a["text"];
  ASSERT_GE(text.size(), 4u) << "the model ended too early for this test";
  // One whole character from the third byte on (the random model's text may hold multi-byte ones).
  auto continuation = [&](size_t i) { return i < text.size() && (text[i] & 0xC0) == 0x80; };
  size_t first = 2;
  while (continuation(first)) ++first;
  size_t last = first + 1;
  while (continuation(last)) ++last;
  ASSERT_LT(first, text.size());
  const std::string stop = text.substr(first, last - first);
  const json c = with({"--seed", "7", "--stop", "never in the text", "--stop", stop});
  EXPECT_EQ(c["text"], text.substr(0, text.find(stop)));
  EXPECT_EQ(c["finish_reason"], "stop_string");
}

// A LoRA adapter with non-zero B on every linear of tiny-qwen2, written as PEFT files for `base`.
void write_adapter(const std::string& dir, const std::string& base) {
  auto w = ModelWeights::load(tiny(), LoadOptions(WeightStorage::BF16));
  AdapterConfig cfg;
  cfg.r = 4;
  cfg.alpha = 8;
  cfg.targets = {LinearKind::Q,    LinearKind::K,  LinearKind::V,   LinearKind::O,
                 LinearKind::Gate, LinearKind::Up, LinearKind::Down};
  AdapterSet set(cfg, w->layers(), 3);
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (LoraLayer* l : set.all())
    for (float& b : l->B) b = 0.5f * u(gen);
  write_peft_adapter(dir, set, base);
}

TEST(GenerateCommand, AdapterIsAppliedAndAnotherModelsAdapterIsRefused) {
  const std::string dir = test::make_temp_dir("gen-adapter");
  write_adapter(dir + "/ours", tiny());
  const Tokenizer tok = Tokenizer::from_dir(tiny());
  const std::vector<int32_t> ids = tok.encode("Hello world", true);
  const json j = parse_json(run_bidora(
      {"generate", "-m", tiny(), "-a", dir + "/ours", "-p", "Hello world", "-n", "10", "-t", "0", "--json"},
      dir));
  EXPECT_EQ(j["text"], library_generate(ids, 10, SamplingParams{.temperature = 0.0}, 0, dir + "/ours").text);
  EXPECT_NE(library_generate(ids, 10, SamplingParams{.temperature = 0.0}, 0).ids,
            library_generate(ids, 10, SamplingParams{.temperature = 0.0}, 0, dir + "/ours").ids)
      << "the adapter does not change greedy decoding: the check above would not see it missing";

  write_adapter(dir + "/theirs", "SomeOrg/OtherModel-7B");
  const std::vector<std::string> args = {"generate", "-m", tiny(), "-a", dir + "/theirs",
                                         "-p",       "Hi", "-n",   "2"};
  const Finished refused = run_bidora(args, dir);
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("SomeOrg/OtherModel-7B"));
  EXPECT_THAT(refused.err, HasSubstr("--allow-base-mismatch"));
  std::vector<std::string> allowed = args;
  allowed.push_back("--allow-base-mismatch");
  EXPECT_EQ(run_bidora(allowed, dir).exit_code, 0);
}

TEST(GenerateCommand, ClearErrors) {
  const std::string dir = test::make_temp_dir("gen-errors");
  auto fails_with = [&](const std::vector<std::string>& args, const std::string& needle) {
    const Finished f = run_bidora(args, dir);
    EXPECT_EQ(f.exit_code, 1) << f.err;
    EXPECT_THAT(f.err, HasSubstr("error: "));
    EXPECT_THAT(f.err, HasSubstr(needle));
    EXPECT_EQ(f.out, "");
  };
  fails_with({"generate", "-m", dir + "/no-such-model", "-p", "Hi"}, dir + "/no-such-model");
  fails_with({"generate", "-m", tiny(), "-p", ""}, "--prompt is empty");
  fails_with({"generate", "-m", tiny()}, "--prompt TEXT, or --chat");
  fails_with({"generate", "-m", tiny(), "-p", "Hi", "-t", "-1"}, "--temperature");
  fails_with({"generate", "-m", tiny(), "-p", "Hi", "--system", "x"}, "--system needs --chat");
  fails_with({"generate", "-m", tiny(), "-p", "Hi", "-q", "fp8"}, "--quantization");

  // A model whose tokenizer has no chat template: --chat names the fix.
  const std::string bare = dir + "/bare";
  fs::create_directories(bare);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"})
    fs::copy(tiny() + "/" + f, bare + "/" + f);
  json cfg = json::parse(read_file(tiny() + "/tokenizer_config.json"));
  cfg.erase("chat_template");
  std::ofstream(bare + "/tokenizer_config.json") << cfg.dump();
  fails_with({"generate", "-m", bare, "--chat", "-p", "Hi"}, "--chat-template");
  // ...and --chat-template picks one.
  const Finished ok =
      run_bidora({"generate", "-m", bare, "--chat", "--chat-template", "chatml", "-p", "Hi", "-n", "2"}, dir);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

}  // namespace
}  // namespace bidora::cli
