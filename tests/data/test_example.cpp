#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/example.h"

namespace bidora::data {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using S = std::vector<Segment>;

Example build(const char* line, const FormatOptions& opt) {
  return build_example(parse_record(json::parse(line), "f.jsonl:3"), opt);
}

FormatOptions opts() {
  FormatOptions o;
  o.eos_token = "</s>";
  o.chat_template = chat_template_by_name("llama2", "<s>", "</s>");
  return o;
}

TEST(Example, AlpacaPromptIsTheStanfordTemplate) {
  EXPECT_EQ(
      alpaca_prompt("Add 2 and 3.", ""),
      "Below is an instruction that describes a task. Write a response that appropriately completes the "
      "request.\n\n### Instruction:\nAdd 2 and 3.\n\n### Response:\n");
  EXPECT_EQ(
      alpaca_prompt("Translate.", "Hallo"),
      "Below is an instruction that describes a task, paired with an input that provides further context. "
      "Write a response that appropriately completes the request.\n\n### Instruction:\nTranslate.\n\n### "
      "Input:\nHallo\n\n### Response:\n");
}

TEST(Example, AlpacaMasksThePromptAndTrainsOutputPlusEos) {
  Example ex = build(R"({"instruction": "Translate.", "input": "Hallo", "output": "Hello"})", opts());
  EXPECT_EQ(ex.segments, (S{{alpaca_prompt("Translate.", "Hallo"), false}, {"Hello</s>", true}}));
  EXPECT_TRUE(ex.add_special_tokens);
  EXPECT_EQ(ex.format, RecordFormat::Alpaca);
  EXPECT_EQ(ex.source, "f.jsonl:3");
  // An empty input selects the template without the Input block.
  EXPECT_EQ(build(R"({"instruction": "I", "input": "", "output": "O"})", opts()).segments[0].text,
            alpaca_prompt("I", ""));
}

TEST(Example, PromptCompletionCodeAndText) {
  EXPECT_EQ(build(R"({"prompt": "2+2=", "completion": "4"})", opts()).segments,
            (S{{"2+2=", false}, {"4</s>", true}}));
  EXPECT_EQ(build(R"({"prompt": "", "completion": "x"})", opts()).segments, (S{{"x</s>", true}}));
  EXPECT_EQ(build(R"({"code": "def f():\n  pass\n"})", opts()).segments,
            (S{{"def f():\n  pass\n</s>", true}}));
  Example t = build(R"({"text": "Once."})", opts());
  EXPECT_EQ(t.segments, (S{{"Once.</s>", true}}));
  EXPECT_EQ(t.text(), "Once.</s>");
}

TEST(Example, MessagesUseTheChatTemplateWithoutPostProcessor) {
  Example ex = build(
      R"({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]})", opts());
  EXPECT_EQ(ex.segments, (S{{"<s>[INST] Hi [/INST]", false}, {" Yo </s>", true}}));
  EXPECT_FALSE(ex.add_special_tokens);
  EXPECT_EQ(ex.format, RecordFormat::Messages);
}

TEST(Example, MessagesErrorsNameTheLine) {
  FormatOptions no_tmpl = opts();
  no_tmpl.chat_template.reset();
  no_tmpl.no_template_reason = "the tokenizer has no chat_template";
  try {
    build(R"({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]})",
          no_tmpl);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("f.jsonl:3: a {\"messages\"} record needs a chat template, but the tokenizer "
                          "has no chat_template; choose one with --chat-template (chatml, "));
  }
  try {
    build(R"({"messages": [{"role": "user", "content": "Hi"}]})", opts());
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("f.jsonl:3: the conversation has no assistant message"));
  }
  try {
    build(R"({"messages": [{"role": "assistant", "content": "Hi"}]})", opts());
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("f.jsonl:3: the llama2 chat template needs user and assistant messages to "
                          "alternate, starting with user (messages[0] is assistant)"));
  }
  // With train_on_prompt a conversation without an answer is still text to learn.
  FormatOptions all = opts();
  all.train_on_prompt = true;
  EXPECT_NO_THROW(build(R"({"messages": [{"role": "user", "content": "Hi"}]})", all));
}

TEST(Example, AppendSegmentMergesEqualFlagsAndDropsEmptyText) {
  S segs;
  append_segment(segs, "a", false);
  append_segment(segs, "", true);
  append_segment(segs, "b", false);
  append_segment(segs, "c", true);
  append_segment(segs, "d", true);
  EXPECT_EQ(segs, (S{{"ab", false}, {"cd", true}}));
}

}  // namespace
}  // namespace bidora::data
