// The generation loop (generate/generator.h) on a tiny random model: greedy tokens equal a
// reference loop that recomputes the whole sequence with Decoder::logits at every step (no cache),
// with and without a repetition penalty; stop tokens, stop strings and the token limit end it with
// the right reason; a second call reuses the cached prefix; seeded sampling is reproducible.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/error.h"
#include "generate/generator.h"
#include "model/kv_cache_check.h"
#include "model/tiny_model.h"
#include "test_support.h"

namespace bidora {
namespace {

// Token i decodes to "<i>": every token has its own visible text.
std::string fake_decode(std::span<const int32_t> ids) {
  std::string s;
  for (int32_t i : ids) {
    s += '<';
    s += std::to_string(i);
    s += '>';
  }
  return s;
}

class Generator : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    test::TinyModelSpec s;
    s.family = "qwen2";
    s.vocab = 61;
    s.seed = 9;
    dir_ = new std::string(test::write_tiny_model(test::make_temp_dir("generator"), s));
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string* dir_;
};
std::string* Generator::dir_ = nullptr;

// Greedy by full recomputation: argmax of the last row of Decoder::logits, penalised as HF does.
std::vector<int32_t> reference_greedy(const ModelWeights& w, std::vector<int32_t> seq, int64_t n,
                                      double penalty) {
  const int64_t V = w.config().vocab_size;
  std::vector<int32_t> out;
  for (int64_t i = 0; i < n; ++i) {
    const std::vector<float> all = test::full_logits(w, nullptr, seq);
    std::vector<float> last(all.end() - V, all.end());
    apply_repetition_penalty(last, seq, penalty);
    const int32_t t = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
    out.push_back(t);
    seq.push_back(t);
  }
  return out;
}

TEST_F(Generator, GreedyEqualsFullRecomputation) {
  auto w = ModelWeights::load(*dir_, LoadOptions(WeightStorage::F32));
  const std::vector<int32_t> prompt = {3, 17, 42, 8, 8, 11};
  for (double penalty : {1.0, 1.3}) {
    InferenceDecoder dec(*w, 4);
    Sampler sampler(SamplingParams{.temperature = 0.0, .repetition_penalty = penalty}, 0);
    std::string streamed;
    const GenerationResult r = generate(dec, prompt, {.max_new_tokens = 12}, sampler, fake_decode,
                                        [&](std::string_view s) { streamed += s; });
    EXPECT_EQ(r.ids, reference_greedy(*w, prompt, 12, penalty)) << "penalty " << penalty;
    EXPECT_EQ(r.finish_reason, "length");
    EXPECT_EQ(r.text, fake_decode(r.ids));
    EXPECT_EQ(streamed, r.text);
    EXPECT_EQ(r.prompt_tokens, 6);
    EXPECT_EQ(r.prefill_tokens, 6);
    // The cache holds the prompt and every generated token but the last.
    EXPECT_EQ(dec.length(), 6 + 11);
  }
}

TEST_F(Generator, StopTokenStopStringAndLimit) {
  auto w = ModelWeights::load(*dir_, LoadOptions(WeightStorage::F32));
  const std::vector<int32_t> prompt = {5, 6, 7};
  const std::vector<int32_t> greedy = reference_greedy(*w, prompt, 6, 1.0);
  Sampler sampler(SamplingParams{.temperature = 0.0}, 0);
  {
    InferenceDecoder dec(*w, 16);
    const GenerationResult r =
        generate(dec, prompt, {.max_new_tokens = 20, .stop_ids = {greedy[3]}}, sampler, fake_decode);
    // The first occurrence of that token ends it; it is counted but not printed.
    const auto first = std::find(greedy.begin(), greedy.end(), greedy[3]) - greedy.begin();
    EXPECT_EQ(r.finish_reason, "eos");
    EXPECT_EQ(r.ids, std::vector<int32_t>(greedy.begin(), greedy.begin() + first + 1));
    EXPECT_EQ(r.text, fake_decode(std::span<const int32_t>(greedy.data(), static_cast<size_t>(first))));
  }
  {
    InferenceDecoder dec(*w, 16);
    const std::string stop = fake_decode(std::span<const int32_t>(&greedy[2], 1));
    const GenerationResult r =
        generate(dec, prompt, {.max_new_tokens = 20, .stop_strings = {stop}}, sampler, fake_decode);
    EXPECT_EQ(r.finish_reason, "stop_string");
    const std::string full = fake_decode(greedy);
    EXPECT_EQ(r.text, full.substr(0, full.find(stop)));
  }
  {
    InferenceDecoder dec(*w, 16);
    const GenerationResult r = generate(dec, prompt, {.max_new_tokens = 1}, sampler, fake_decode);
    EXPECT_EQ(r.finish_reason, "length");
    EXPECT_EQ(r.ids, std::vector<int32_t>{greedy[0]});
    EXPECT_EQ(r.decode_tokens_per_s(), 0.0);
  }
}

TEST_F(Generator, SecondTurnReusesTheCachedPrefix) {
  auto w = ModelWeights::load(*dir_, LoadOptions(WeightStorage::F32));
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5};
  Sampler sampler(SamplingParams{.temperature = 0.0}, 0);
  InferenceDecoder dec(*w, 8);
  const GenerationResult first = generate(dec, prompt, {.max_new_tokens = 4}, sampler, fake_decode);
  // The next turn: the history, the whole reply, and new tokens.
  std::vector<int32_t> turn2 = prompt;
  turn2.insert(turn2.end(), first.ids.begin(), first.ids.end());
  turn2.insert(turn2.end(), {9, 10});
  const GenerationResult second = generate(dec, turn2, {.max_new_tokens = 5}, sampler, fake_decode);
  EXPECT_EQ(second.prompt_tokens, static_cast<int64_t>(turn2.size()));
  EXPECT_EQ(second.prefill_tokens, 3);  // the reply's last token and the two new ones
  InferenceDecoder fresh(*w, 8);
  EXPECT_EQ(second.ids, generate(fresh, turn2, {.max_new_tokens = 5}, sampler, fake_decode).ids);
  // A prompt that diverges early truncates the cache there.
  std::vector<int32_t> other = {1, 2, 60, 59};
  const GenerationResult third = generate(dec, other, {.max_new_tokens = 2}, sampler, fake_decode);
  EXPECT_EQ(third.prefill_tokens, 2);
  EXPECT_EQ(third.ids, reference_greedy(*w, other, 2, 1.0));
}

TEST_F(Generator, SeededSamplingIsReproducible) {
  auto w = ModelWeights::load(*dir_, LoadOptions(WeightStorage::F32));
  const std::vector<int32_t> prompt = {4, 4, 2};
  const SamplingParams p{.temperature = 1.5, .top_k = 0, .top_p = 1.0};
  auto run = [&](uint64_t seed) {
    InferenceDecoder dec(*w, 32);
    Sampler s(p, seed);
    return generate(dec, prompt, {.max_new_tokens = 24}, s, fake_decode).ids;
  };
  EXPECT_EQ(run(5), run(5));
  EXPECT_NE(run(5), run(6));
}

TEST_F(Generator, RejectsAnEmptyPromptAndANonPositiveLimit) {
  auto w = ModelWeights::load(*dir_, LoadOptions(WeightStorage::F32));
  InferenceDecoder dec(*w, 8);
  Sampler sampler(SamplingParams{.temperature = 0.0}, 0);
  EXPECT_THROW(generate(dec, {}, {}, sampler, fake_decode), Error);
  const std::vector<int32_t> prompt = {1};
  EXPECT_THROW(generate(dec, prompt, {.max_new_tokens = 0}, sampler, fake_decode), Error);
}

}  // namespace
}  // namespace bidora
