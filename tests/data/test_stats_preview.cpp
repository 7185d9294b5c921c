#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/files.h"
#include "data/preview.h"
#include "data/stats.h"
#include "fake_codec.h"
#include "test_support.h"

namespace bidora::data {
namespace {

using fake::FakeTokenizer;
using ::testing::HasSubstr;
using ::testing::Not;

TokenizedExample ex_of(int64_t len, int64_t full, int64_t trained, RecordFormat f = RecordFormat::Text) {
  TokenizedExample t;
  t.ids.assign(static_cast<size_t>(len), 5);
  t.trained.assign(static_cast<size_t>(len), 0);
  for (int64_t i = 0; i < trained; ++i) t.trained[static_cast<size_t>(len - 1 - i)] = 1;
  t.full_length = full;
  t.truncated = full > len;
  t.format = f;
  return t;
}

TEST(Stats, ComputesCountsLengthsHistogramAndPacking) {
  std::vector<TokenizedExample> v = {ex_of(11, 11, 3),   ex_of(18, 18, 7, RecordFormat::Alpaca),
                                     ex_of(21, 21, 0),   ex_of(27, 27, 9, RecordFormat::Messages),
                                     ex_of(100, 155, 2), ex_of(100, 234, 5)};
  DatasetStats s = compute_stats(v, 100, 10);
  EXPECT_EQ(s.examples, 6);
  EXPECT_EQ(s.tokens, 277);
  EXPECT_EQ(s.trained_tokens, 26);
  EXPECT_EQ(s.truncated, 2);
  EXPECT_EQ(s.untrained, 1);
  EXPECT_EQ(s.min_length, 11);
  EXPECT_EQ(s.max_length, 234);
  EXPECT_EQ(s.median_length, 21);  // nearest rank: ceil(0.5 * 6) = 3rd
  EXPECT_EQ(s.p95_length, 234);
  EXPECT_NEAR(s.mean_length, 466.0 / 6.0, 1e-12);
  EXPECT_EQ(s.formats, (std::array<int64_t, kNumRecordFormats>{1, 1, 0, 0, 4}));
  // Width: the smallest 1/2/5 x 10^k >= (234 + 10) / 10 = 24 -> 50.
  EXPECT_EQ(s.histogram.bin_width, 50);
  EXPECT_EQ(s.histogram.counts, (std::vector<int64_t>{4, 0, 0, 1, 1}));
  // Packed at 100: [100], [100], [27 21 18 11].
  EXPECT_EQ(s.packed_rows, 3);
  EXPECT_EQ(format_histogram(s.histogram, 100, 8),
            "     0-49 | ######## 4\n"
            "    50-99 |          0\n"
            "  100-149 |          0  (partly longer than max_seq_len)\n"  // 100 itself is not truncated
            "  150-199 | ##       1  (longer than max_seq_len: truncated)\n"
            "  200-249 | ##       1  (longer than max_seq_len: truncated)\n");
}

TEST(Stats, HistogramMarksABinThatStraddlesMaxSeqLen) {
  LengthHistogram h{100, 0, {1, 2}};
  EXPECT_EQ(format_histogram(h, 150, 4),
            "     0-99 | ##   1\n  100-199 | #### 2  (partly longer than max_seq_len)\n");
}

TEST(Stats, HistogramStartsAtTheShortestExample) {
  std::vector<TokenizedExample> v = {ex_of(23, 23, 1), ex_of(38, 38, 1), ex_of(62, 62, 1)};
  DatasetStats s = compute_stats(v, 1024, 10);
  EXPECT_EQ(s.histogram.bin_width, 5);  // (62 - 23 + 10) / 10 = 4 -> 5
  EXPECT_EQ(s.histogram.first, 20);
  EXPECT_EQ(s.histogram.counts, (std::vector<int64_t>{1, 0, 0, 1, 0, 0, 0, 0, 1}));
  EXPECT_EQ(format_histogram(s.histogram, 1024, 2).substr(0, 17), "  20-24 | ## 1\n  ");
}

TEST(Stats, EmptyDataset) {
  DatasetStats s = compute_stats({}, 10, 5);
  EXPECT_EQ(s.examples, 0);
  EXPECT_EQ(s.tokens, 0);
}

TEST(DecodeRuns, SplitsDecodedTextByTrainedFlag) {
  // A SentencePiece-like decoder: "▁" -> space, then one leading space of the whole text removed.
  const std::vector<std::string> pieces = {"▁a", "▁b", "▁c", "</s>"};
  DecodeFn decode = [&](std::span<const int32_t> ids) {
    std::string s;
    for (int32_t id : ids) {
      std::string p = pieces[static_cast<size_t>(id)];
      if (p.rfind("▁", 0) == 0) p.replace(0, 3, " ");
      s += p;
    }
    return s.empty() || s[0] != ' ' ? s : s.substr(1);
  };
  TokenizedExample t;
  t.ids = {0, 1, 2, 3};
  t.trained = {0, 0, 1, 1};
  // Decoded alone the answer would lose its space: " c</s>" keeps it.
  EXPECT_EQ(decode_runs(decode, t), (std::vector<Segment>{{"a b", false}, {" c</s>", true}}));
}

TEST(DecodeRuns, FallsBackWhenACharacterIsSplitBetweenRuns) {
  // A decoder that replaces an incomplete UTF-8 sequence at the end with U+FFFD, as HF does.
  DecodeFn decode = [](std::span<const int32_t> ids) {
    std::string s;
    for (int32_t id : ids) s += static_cast<char>(id);
    if (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xE0) == 0xC0) s.back() = '?';
    return s;
  };
  TokenizedExample t;
  t.ids = {'x', 0xC3, 0xA9};  // "xé" with é split between runs
  t.trained = {0, 0, 1};
  auto runs = decode_runs(decode, t);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].text, "x?");
  EXPECT_TRUE(runs[1].trained);
}

using fake::llama_like_codec;
using fake::mixed_jsonl;

PreviewOptions preview_options() {
  PreviewOptions o;
  o.file = mixed_jsonl();
  o.num_examples = 6;
  o.max_seq_len = 100;
  o.chat_template = "llama2";
  o.bad_lines = BadLinePolicy::Skip;
  return o;
}

TEST(Preview, ReportsTheNumbersOfTheFixture) {
  const PreviewResult r = run_data_preview(llama_like_codec(), preview_options());
  EXPECT_EQ(r.file.lines, 11);
  EXPECT_EQ(r.file.blank_lines, 1);
  EXPECT_EQ(r.file.skipped.count, 4);
  EXPECT_EQ(r.stats.examples, 6);
  EXPECT_EQ(r.stats.tokens, 277);         // 11 + 18 + 21 + 27 + 100 + 100
  EXPECT_EQ(r.stats.trained_tokens, 46);  // the truncated Alpaca answers are gone
  EXPECT_EQ(r.stats.truncated, 2);
  EXPECT_EQ(r.stats.untrained, 2);
  EXPECT_EQ(r.stats.max_length, 234);
  EXPECT_EQ(r.stats.packed_rows, 3);
  EXPECT_EQ(r.chat_template.chat_template->name, "llama2");
  ASSERT_EQ(r.examples.size(), 6u);
  // Line 6, the conversation: the answer (with Llama 2's spaces) and </s> are the trained run.
  const PreviewExample& chat = r.examples[5];
  EXPECT_EQ(chat.tokens.line, 6);
  EXPECT_EQ(chat.token_runs, (std::vector<Segment>{{"<s>[INST] Hi [/INST]", false}, {" Hello! </s>", true}}));
  EXPECT_EQ(chat.example.segments, chat.token_runs);
}

TEST(Preview, TextReportMarksTrainedTextAndListsSkippedLines) {
  PreviewOptions o = preview_options();
  o.max_seq_len = 1024;
  o.num_examples = 1;
  const PreviewResult r = run_data_preview(llama_like_codec(), o);
  const std::string text = format_preview(r, /*color=*/false);
  EXPECT_THAT(
      text, HasSubstr("── example 1 (line 1, alpaca, 155 tokens, 2 trained) ──\n<s>Below is an instruction"));
  EXPECT_THAT(text, HasSubstr("### Response:\n[[5</s>]]\n"));
  EXPECT_THAT(text, HasSubstr("  chat template   llama2\n"));
  EXPECT_THAT(text, HasSubstr("  special tokens  bos <s>, eos </s> (1001), pad = eos (1001)\n"));
  EXPECT_THAT(text, HasSubstr("  lines read        11 (1 blank, 4 skipped)\n"));
  EXPECT_THAT(
      text, HasSubstr("  examples          6 (messages 1, alpaca 2, prompt_completion 1, code 1, text 1)\n"));
  EXPECT_THAT(text, HasSubstr("  tokens            466 (53 trained, 11.4%)\n"));
  EXPECT_THAT(text, HasSubstr("  truncated         0 (longer than max_seq_len 1024)\n"));
  EXPECT_THAT(text, HasSubstr("  length (tokens)   min 11, median 21, mean 77.7, p95 234, max 234\n"));
  EXPECT_THAT(text, HasSubstr("  packed            1 row of 1024 tokens (45.5% filled)\n"));
  EXPECT_THAT(text, HasSubstr("\n     0-49 | ######################################## 4\n"));
  EXPECT_THAT(text, HasSubstr("  150-199 | ##########                               1\n"));
  EXPECT_THAT(text, HasSubstr("skipped lines (4):\n  " + mixed_jsonl() + ":8: malformed JSON"));
  EXPECT_THAT(text, Not(HasSubstr("\x1b[")));
  const std::string colored = format_preview(r, /*color=*/true);
  EXPECT_THAT(colored, HasSubstr("\x1b[32m5</s>\x1b[0m"));
  EXPECT_THAT(colored, HasSubstr("\x1b[2m<s>Below is"));
}

TEST(Preview, ControlCharactersInDataAreEscaped) {
  const std::string dir = test::make_temp_dir("preview");
  write_file_atomic(dir + "/c.jsonl", "{\"text\": \"bell\\u0007 esc\\u001b[31m\"}\n");
  PreviewOptions o = preview_options();
  o.file = dir + "/c.jsonl";
  const std::string text = format_preview(run_data_preview(llama_like_codec(), o), true);
  EXPECT_THAT(text, HasSubstr("bell\\x07 esc\\x1b[31m"));
}

TEST(Preview, JsonReport) {
  const nlohmann::ordered_json j = preview_json(run_data_preview(llama_like_codec(), preview_options()));
  EXPECT_EQ(j["file"], mixed_jsonl());
  EXPECT_EQ(j["chat_template"], "llama2");
  EXPECT_EQ(j["special_tokens"]["bos"], "<s>");
  EXPECT_EQ(j["special_tokens"]["pad_is_eos"], true);
  EXPECT_EQ(j["stats"]["examples"], 6);
  EXPECT_EQ(j["stats"]["skipped_lines"], 4);
  EXPECT_EQ(j["stats"]["tokens"], 277);
  EXPECT_EQ(j["stats"]["trained_tokens"], 46);
  EXPECT_EQ(j["stats"]["truncated"], 2);
  EXPECT_EQ(j["stats"]["formats"]["alpaca"], 2);
  EXPECT_EQ(j["stats"]["length"]["median"], 21);
  EXPECT_EQ(j["stats"]["histogram"].size(), 5u);
  EXPECT_EQ(j["stats"]["histogram"][0], (nlohmann::ordered_json{{"from", 0}, {"to", 49}, {"count", 4}}));
  EXPECT_EQ(j["skipped"].size(), 4u);
  EXPECT_EQ(j["skipped"][0]["line"], 8);
  ASSERT_EQ(j["examples"].size(), 6u);
  const auto& chat = j["examples"][5];
  EXPECT_EQ(chat["format"], "messages");
  EXPECT_EQ(chat["tokens"], 27);
  EXPECT_EQ(chat["trained_tokens"], 9);
  EXPECT_EQ(chat["ids"].size(), 27u);
  EXPECT_EQ(chat["trained"].size(), 27u);
  EXPECT_EQ(chat["token_runs"][1]["text"], " Hello! </s>");
  EXPECT_EQ(j["examples"][0]["truncated"], true);
  EXPECT_EQ(j["examples"][0]["untruncated_tokens"], 155);
}

TEST(Preview, StopPolicyFailsOnTheFirstBadLine) {
  PreviewOptions o = preview_options();
  o.bad_lines = BadLinePolicy::Stop;
  EXPECT_THROW(run_data_preview(llama_like_codec(), o), Error);
}

}  // namespace
}  // namespace bidora::data
