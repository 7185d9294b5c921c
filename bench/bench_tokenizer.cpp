// Tokenizer throughput: encode MB/s of mixed text (prose, code, CJK, emoji, numbers, whitespace
// runs) on ONE thread for each real tokenizer fixture, plus the time to load tokenizer.json.
// Needs the fixtures: scripts/fetch-fixtures.sh. Usage: bench_tokenizer [MB of text, default 2]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Deterministic mixed text: mostly English-like prose with code, CJK, numbers and emoji mixed in,
// roughly the kind of content instruction-tuning data contains.
std::string mixed_text(size_t bytes) {
  static const char* kWords[] = {"the",      "model",  "training", "data",      "of",      "and",     "a",
                                 "to",       "in",     "is",       "tokenizer", "with",    "for",     "that",
                                 "learning", "rate",   "batch",    "gradient",  "weights", "adapter", "rank",
                                 "Hello",    "World",  "It's",     "don't",     "we'll",   "they're", "I'm",
                                 "function", "return", "value",    "result",    "error",   "file",    "line"};
  static const char* kExtras[] = {
      "\n\n",
      "\n",
      ", ",
      ". ",
      "? ",
      "  ",
      "\t",
      "(see 3.14159) ",
      "2024-11-24 ",
      "1,000,000 ",
      "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c\xef\xbc\x8c\xe8\xbf\x99\xe6\x98\xaf\xe6\xb5\x8b"
      "\xe8\xaf\x95\xe3\x80\x82 ",
      "\xf0\x9f\x98\x80 ",
      "caf\xc3\xa9 na\xc3\xafve ",
      "def f(x):\n    return x * 2\n",
      "for (int i = 0; i < n; ++i) { sum += v[i]; }\n",
      "{\"key\": [1, 2, 3]} ",
      "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 "};
  std::mt19937 rng(42);
  std::string s;
  s.reserve(bytes + 64);
  while (s.size() < bytes) {
    const unsigned r = rng() % 100;
    if (r < 80) {
      s += kWords[rng() % std::size(kWords)];
      s += ' ';
    } else {
      s += kExtras[rng() % std::size(kExtras)];
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const double mb = argc > 1 ? std::atof(argv[1]) : 2.0;
  const auto fixtures = std::filesystem::path(__FILE__).parent_path().parent_path() / "tests/fixtures/npm";
  const std::string text = mixed_text(static_cast<size_t>(mb * 1e6));
  // Encode in document-sized chunks, as the data pipeline does.
  std::vector<std::string> docs;
  for (size_t i = 0; i < text.size();) {
    size_t e = std::min(text.size(), i + 4000);
    while (e < text.size() && (static_cast<unsigned char>(text[e]) & 0xC0) == 0x80) ++e;  // UTF-8 boundary
    docs.push_back(text.substr(i, e - i));
    i = e;
  }
  std::printf("bench_tokenizer: %.2f MB of mixed text in %zu documents, 1 thread\n", text.size() / 1e6,
              docs.size());
  for (const char* name : {"qwen3", "llama3_1", "llama2"}) {
    const auto dir = fixtures / name;
    if (!std::filesystem::exists(dir / "tokenizer.json")) {
      std::fprintf(stderr, "missing %s (run scripts/fetch-fixtures.sh)\n", (dir / "tokenizer.json").c_str());
      return 1;
    }
    auto t0 = Clock::now();
    auto tok = bidora::Tokenizer::from_dir(dir.string());
    const double load_s = seconds_since(t0);
    // Cold pass (empty word cache), then a warm pass.
    for (const char* pass : {"cold", "warm"}) {
      size_t n_ids = 0;
      t0 = Clock::now();
      for (const auto& d : docs) n_ids += tok.encode(d, false).size();
      const double s = seconds_since(t0);
      std::printf("  %-9s load %6.0f ms   encode (%s) %6.2f MB/s   %.2f bytes/token\n", name, load_s * 1e3,
                  pass, text.size() / 1e6 / s, static_cast<double>(text.size()) / static_cast<double>(n_ids));
    }
  }
  return 0;
}
