// Throughput of the training-data pipeline on the real tokenizer fixtures (tests/fixtures/npm,
// scripts/fetch-fixtures.sh): JSONL parsing + formatting + whole-text tokenization + answer-mask
// mapping, per example family, and batch assembly. Examples/s and tokens/s are single-threaded.
//
//   build-*/bench_data
//   build-*/bench_data --benchmark_filter=Tokenize
#include <benchmark/benchmark.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "core/files.h"
#include "data/batch.h"
#include "data/dataset.h"
#include "tokenizer/tokenizer.h"

namespace bidora::data {
namespace {

std::string fixture(const std::string& name) {
  return (std::filesystem::path(__FILE__).parent_path().parent_path() / "tests/fixtures/npm" / name).string();
}

const Tokenizer& tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& t = cache[name];
  if (!t) t = std::make_unique<Tokenizer>(Tokenizer::from_dir(fixture(name)));
  return *t;
}

// A JSONL file of `n` examples of one format, with realistic lengths (a few hundred tokens).
std::string make_file(const std::string& kind, int n) {
  static std::map<std::string, std::string> made;
  const std::string key = kind + std::to_string(n);
  if (made.count(key)) return made[key];
  const std::string dir = std::filesystem::temp_directory_path() / "bidora-bench-data";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/" + key + ".jsonl";
  std::string text;
  const std::string para =
      "Low-rank adapters freeze the pretrained weights and learn a small update B A for selected layers. "
      "The update has far fewer parameters, so fine-tuning fits on a laptop, and the adapter can be merged "
      "into the base weights afterwards without any inference cost. ";
  for (int i = 0; i < n; ++i) {
    const std::string q = "Question " + std::to_string(i) + ": explain adapters. " + para;
    const std::string a = "Answer " + std::to_string(i) + ": " + para + para;
    if (kind == "alpaca") {
      text += "{\"instruction\": \"" + q + "\", \"input\": \"\", \"output\": \"" + a + "\"}\n";
    } else {
      text += "{\"messages\": [{\"role\": \"user\", \"content\": \"" + q +
              "\"}, {\"role\": \"assistant\", "
              "\"content\": \"" +
              a +
              "\"}, {\"role\": \"user\", \"content\": \"More?\"}, {\"role\": "
              "\"assistant\", \"content\": \"" +
              a + "\"}]}\n";
    }
  }
  write_file_atomic(path, text);
  return made[key] = path;
}

void BM_LoadTrainingData(benchmark::State& state, const char* tok_name, const char* kind, const char* tmpl) {
  if (!std::filesystem::exists(fixture(tok_name) + "/tokenizer.json")) {
    state.SkipWithError("missing tokenizer fixtures: run scripts/fetch-fixtures.sh");
    return;
  }
  const TextCodec codec = codec_for(tokenizer(tok_name));
  DataOptions opt;
  opt.train_file = make_file(kind, 200);
  opt.val_ratio = 0.0;
  opt.max_seq_len = 4096;
  opt.chat_template = tmpl;
  int64_t examples = 0, tokens = 0;
  for (auto _ : state) {
    TrainingData d = load_training_data(codec, opt);
    examples += static_cast<int64_t>(d.train.size());
    for (const auto& t : d.train) tokens += static_cast<int64_t>(t.ids.size());
    benchmark::DoNotOptimize(d);
  }
  state.counters["examples/s"] =
      benchmark::Counter(static_cast<double>(examples), benchmark::Counter::kIsRate);
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}
// Byte-level BPE: the per-segment fast path. Mistral (SentencePiece): the prefix fallback.
BENCHMARK_CAPTURE(BM_LoadTrainingData, qwen3_alpaca, "qwen3", "alpaca", "")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_LoadTrainingData, qwen3_chat, "qwen3", "chat", "")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_LoadTrainingData, llama3_chat, "llama3_1", "chat", "")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_LoadTrainingData, mistral_alpaca, "llama2", "alpaca", "")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_LoadTrainingData, mistral_chat, "llama2", "chat", "llama2")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_PackAndCollate(benchmark::State& state) {
  // 10k examples of 20..1000 tokens packed into rows of 2048, then every batch of 8 rows built.
  std::vector<TokenizedExample> ex(10000);
  std::vector<int64_t> lengths;
  for (size_t i = 0; i < ex.size(); ++i) {
    const auto len = static_cast<size_t>(20 + (i * 7919) % 980);
    ex[i].ids.assign(len, 7);
    ex[i].trained.assign(len, 1);
    lengths.push_back(static_cast<int64_t>(len));
  }
  int64_t tokens = 0;
  for (auto _ : state) {
    const std::vector<Row> rows = pack_rows(lengths, 2048);
    std::vector<int64_t> row_len;
    for (const Row& r : rows) row_len.push_back(r.length);
    BatchPlanOptions plan;
    plan.batch_size = 8;
    for (const auto& b : plan_epoch(row_len, plan, 0)) {
      Batch batch = collate(ex, rows, b, {0, 8});
      tokens += batch.num_tokens;
      benchmark::DoNotOptimize(batch);
    }
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PackAndCollate)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace bidora::data

BENCHMARK_MAIN();
