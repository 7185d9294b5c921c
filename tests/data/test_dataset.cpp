#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "core/files.h"
#include "data/dataset.h"
#include "fake_codec.h"
#include "test_support.h"

namespace bidora::data {
namespace {

using fake::FakeTokenizer;
using ::testing::HasSubstr;

// tests/fixtures/data/mixed.jsonl: six valid lines of every format (1-6), a blank line (7) and
// four bad ones: malformed JSON (8), unknown format (9), non-string value (10), a conversation
// without an answer (11).
using fake::llama_like_codec;
using fake::mixed_jsonl;

DataOptions options() {
  DataOptions o;
  o.train_file = mixed_jsonl();
  o.chat_template = "llama2";
  o.bad_lines = BadLinePolicy::Skip;
  o.val_ratio = 0.0;
  return o;
}

TEST(Dataset, StopPolicyReportsTheFirstBadLine) {
  DataOptions o = options();
  o.bad_lines = BadLinePolicy::Stop;
  try {
    load_training_data(llama_like_codec(), o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(mixed_jsonl() + ":8: malformed JSON"));
  }
}

TEST(Dataset, SkipPolicyCountsEveryKindOfBadLine) {
  TrainingData d = load_training_data(llama_like_codec(), options());
  ASSERT_EQ(d.files.size(), 1u);
  const FileReport& f = d.files[0];
  EXPECT_EQ(f.lines, 11);
  EXPECT_EQ(f.blank_lines, 1);
  EXPECT_EQ(f.examples, 6);
  EXPECT_EQ(f.skipped.count, 4);
  ASSERT_EQ(f.skipped.first.size(), 4u);
  EXPECT_EQ(f.skipped.first[0].line, 8);
  EXPECT_THAT(f.skipped.first[1].reason, HasSubstr(":9: unknown record format"));
  EXPECT_THAT(f.skipped.first[2].reason, HasSubstr(":10: field \"text\" must be a string"));
  EXPECT_THAT(f.skipped.first[3].reason, HasSubstr(":11: the conversation has no assistant message"));
  EXPECT_EQ(f.formats, (std::array<int64_t, kNumRecordFormats>{1, 2, 1, 1, 1}));
  ASSERT_EQ(d.train.size(), 6u);
  EXPECT_TRUE(d.val.empty());
  // Lengths: BOS + bytes + EOS for the non-chat formats, the rendered Llama 2 chat for line 6.
  std::vector<int64_t> lengths, trained;
  for (const auto& t : d.train) {
    lengths.push_back(static_cast<int64_t>(t.ids.size()));
    trained.push_back(t.num_trained());
  }
  EXPECT_EQ(lengths, (std::vector<int64_t>{155, 234, 18, 21, 11, 27}));
  EXPECT_EQ(trained, (std::vector<int64_t>{2, 5, 7, 20, 10, 9}));
  EXPECT_EQ(d.train[5].line, 6);
  EXPECT_EQ(d.train[5].format, RecordFormat::Messages);
  EXPECT_EQ(d.chat_template->name, "llama2");
}

TEST(Dataset, SplitsByRatioWithASeed) {
  DataOptions o = options();
  o.val_ratio = 0.34;  // ceil(0.34 * 6) = 3
  TrainingData a = load_training_data(llama_like_codec(), o);
  EXPECT_EQ(a.train.size(), 3u);
  EXPECT_EQ(a.val.size(), 3u);
  TrainingData b = load_training_data(llama_like_codec(), o);
  ASSERT_EQ(b.val.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(a.val[i].line, b.val[i].line);
  std::vector<int64_t> lines;
  for (const auto& t : a.train) lines.push_back(t.line);
  for (const auto& t : a.val) lines.push_back(t.line);
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
}

TEST(Dataset, MaxSamplesTakesTheFirstValidExamples) {
  DataOptions o = options();
  o.max_samples = 4;
  TrainingData d = load_training_data(llama_like_codec(), o);
  ASSERT_EQ(d.train.size(), 4u);
  EXPECT_EQ(d.train[3].line, 4);
  EXPECT_EQ(d.files[0].lines, 4);  // reading stopped there
}

TEST(Dataset, SeparateValidationFile) {
  const std::string dir = test::make_temp_dir("dataset");
  write_file_atomic(dir + "/val.jsonl", "{\"text\": \"v1\"}\n{\"text\": \"v2\"}\n");
  DataOptions o = options();
  o.val_file = dir + "/val.jsonl";
  o.val_ratio = 0.5;  // ignored with a validation file
  TrainingData d = load_training_data(llama_like_codec(), o);
  EXPECT_EQ(d.train.size(), 6u);
  ASSERT_EQ(d.val.size(), 2u);
  EXPECT_EQ(d.val[1].ids.size(), 4u);  // <s> v 2 </s>
  ASSERT_EQ(d.files.size(), 2u);
  EXPECT_EQ(d.files[1].examples, 2);
}

TEST(Dataset, TruncationAndExamplesWithNothingTrained) {
  DataOptions o = options();
  o.max_seq_len = 100;
  TrainingData d = load_training_data(llama_like_codec(), o);
  EXPECT_EQ(d.truncated, 2);          // both Alpaca examples are longer than 100 tokens
  EXPECT_EQ(d.dropped_untrained, 2);  // and their answers were cut off
  ASSERT_EQ(d.train.size(), 4u);
  for (const auto& t : d.train) EXPECT_LE(t.ids.size(), 100u);
  o.max_seq_len = 1;  // only the first token is left, and it is never a target
  try {
    load_training_data(llama_like_codec(), o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("no training example has a trained token left after truncation to 1 tokens"));
  }
}

TEST(Dataset, ChatTemplateComesFromTheTokenizerOrTheOption) {
  DataOptions o = options();
  o.chat_template = "";
  TrainingData none = load_training_data(llama_like_codec(), o);
  EXPECT_FALSE(none.chat_template.has_value());
  EXPECT_EQ(none.files[0].skipped.count, 5);  // line 6 now needs a template
  EXPECT_THAT(
      none.files[0].skipped.first[0].reason,
      HasSubstr(":6: a {\"messages\"} record needs a chat template, but the tokenizer has no chat_template"));

  auto tok = std::make_shared<FakeTokenizer>();
  TextCodec with_tmpl = FakeTokenizer::codec(
      tok, "<|im_end|>", "{{'<|im_start|>' + message['role'] + '\\n' + message['content']}}");
  TrainingData chatml = load_training_data(with_tmpl, o);
  ASSERT_TRUE(chatml.chat_template.has_value());
  EXPECT_EQ(chatml.chat_template->name, "chatml");

  TextCodec unknown = FakeTokenizer::codec(tok, "</s>", "{{ '<start_of_turn>' }}");
  EXPECT_EQ(resolve_chat_template(unknown, "").why_none,
            "the tokenizer's chat_template is not one bidora reproduces");
  EXPECT_THROW(resolve_chat_template(unknown, "nope"), Error);
}

TEST(Dataset, EmptyOrMissingFiles) {
  const std::string dir = test::make_temp_dir("dataset");
  write_file_atomic(dir + "/empty.jsonl", "\n\n");
  DataOptions o = options();
  o.train_file = dir + "/empty.jsonl";
  try {
    load_training_data(llama_like_codec(), o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("empty.jsonl: no valid training example (2 lines read, 0 skipped)"));
  }
  o.train_file = dir + "/missing.jsonl";
  EXPECT_THROW(load_training_data(llama_like_codec(), o), Error);
}

}  // namespace
}  // namespace bidora::data
