#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/record.h"

namespace bidora::data {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

Record parse(const char* text) {
  return parse_record(json::parse(text), "d.jsonl:7");
}

std::string error_of(const char* text) {
  try {
    parse(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(Record, RecognisesEveryFormat) {
  Record a = parse(R"({"instruction": "I", "input": "In", "output": "O"})");
  EXPECT_EQ(a.format, RecordFormat::Alpaca);
  EXPECT_EQ(a.instruction, "I");
  EXPECT_EQ(a.input, "In");
  EXPECT_EQ(a.output, "O");
  EXPECT_EQ(a.source, "d.jsonl:7");

  Record a2 = parse(R"({"instruction": "I", "input": null, "output": "O"})");
  EXPECT_EQ(a2.input, "");

  Record pc = parse(R"({"prompt": "P", "completion": "C"})");
  EXPECT_EQ(pc.format, RecordFormat::PromptCompletion);
  EXPECT_EQ(pc.prompt, "P");
  EXPECT_EQ(pc.completion, "C");

  Record c = parse(R"({"code": "x = 1\n"})");
  EXPECT_EQ(c.format, RecordFormat::Code);
  EXPECT_EQ(c.text, "x = 1\n");

  Record t = parse(R"({"text": "hello", "meta": 3})");
  EXPECT_EQ(t.format, RecordFormat::Text);
  EXPECT_EQ(t.text, "hello");

  Record m = parse(R"({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                        {"role": "assistant", "content": "A", "reasoning_content": "R"}]})");
  EXPECT_EQ(m.format, RecordFormat::Messages);
  ASSERT_EQ(m.messages.size(), 3u);
  EXPECT_EQ(m.messages[0].role, Role::System);
  EXPECT_EQ(m.messages[1].role, Role::User);
  EXPECT_EQ(m.messages[2].role, Role::Assistant);
  EXPECT_EQ(m.messages[2].content, "A");
  ASSERT_TRUE(m.messages[2].reasoning.has_value());
  EXPECT_EQ(*m.messages[2].reasoning, "R");
  EXPECT_FALSE(m.messages[1].reasoning.has_value());
}

TEST(Record, FormatPriorityIsMessagesAlpacaPromptCodeText) {
  // tatsu-lab/alpaca rows carry a pre-rendered "text" too: the structured fields win.
  EXPECT_EQ(parse(R"({"instruction": "I", "output": "O", "text": "T"})").format, RecordFormat::Alpaca);
  EXPECT_EQ(parse(R"({"prompt": "P", "completion": "C", "text": "T"})").format,
            RecordFormat::PromptCompletion);
  EXPECT_EQ(parse(R"({"code": "c", "text": "T"})").format, RecordFormat::Code);
  EXPECT_EQ(parse(R"({"messages": [{"role": "user", "content": "u"}], "text": "T"})").format,
            RecordFormat::Messages);
}

TEST(Record, UnknownFormatListsKeysAndAcceptedFormats) {
  const std::string e = error_of(R"({"question": "q", "answer": "a"})");
  EXPECT_THAT(e, HasSubstr("d.jsonl:7: unknown record format (keys: answer, question)"));
  EXPECT_THAT(e, HasSubstr("(alpaca)"));
  EXPECT_THAT(e, HasSubstr("{\"prompt\", \"completion\"}"));
  EXPECT_THAT(e, HasSubstr("{\"messages\": [{\"role\", \"content\"}]}"));
  EXPECT_THAT(error_of("{}"), HasSubstr("(keys: none)"));
}

TEST(Record, NonObjectLine) {
  EXPECT_THAT(error_of("[1, 2]"), HasSubstr("d.jsonl:7: expected a JSON object, got array [1,2]"));
  EXPECT_THAT(error_of("\"text\""), HasSubstr("expected a JSON object, got string"));
}

TEST(Record, MissingFields) {
  EXPECT_THAT(error_of(R"({"instruction": "I"})"),
              HasSubstr("d.jsonl:7: missing field \"output\" (alpaca format)"));
  EXPECT_THAT(error_of(R"({"output": "O"})"), HasSubstr("missing field \"instruction\" (alpaca format)"));
  EXPECT_THAT(error_of(R"({"prompt": "P"})"),
              HasSubstr("missing field \"completion\" (prompt/completion format)"));
  EXPECT_THAT(error_of(R"({"completion": "C", "prompt": null})"), HasSubstr("missing field \"prompt\""));
  EXPECT_THAT(error_of(R"({"code": null})"), HasSubstr("missing field \"code\" (code format)"));
}

TEST(Record, NonStringValues) {
  EXPECT_THAT(error_of(R"({"text": 42})"),
              HasSubstr("d.jsonl:7: field \"text\" must be a string, got number 42"));
  EXPECT_THAT(error_of(R"({"instruction": "I", "input": ["x"], "output": "O"})"),
              HasSubstr("field \"input\" must be a string, got array [\"x\"]"));
  EXPECT_THAT(error_of(R"({"prompt": true, "completion": "C"})"),
              HasSubstr("field \"prompt\" must be a string, got boolean true"));
  EXPECT_THAT(error_of(R"({"text": {"a": "long long long long long long long long long long"}})"),
              HasSubstr("got object {\"a\":\"long long long long long long l..."));
}

TEST(Record, MessageErrors) {
  EXPECT_THAT(error_of(R"({"messages": "hi"})"),
              HasSubstr("field \"messages\" must be a list of messages, got string \"hi\""));
  EXPECT_THAT(error_of(R"({"messages": []})"), HasSubstr("d.jsonl:7: field \"messages\" is empty"));
  EXPECT_THAT(error_of(R"({"messages": null})"), HasSubstr("missing field \"messages\""));
  EXPECT_THAT(error_of(R"({"messages": [["user", "hi"]]})"),
              HasSubstr("d.jsonl:7: messages[0]: expected an object {\"role\", \"content\"}"));
  EXPECT_THAT(
      error_of(R"({"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]})"),
      HasSubstr("d.jsonl:7: messages[1]: unknown role \"bot\" (expected \"system\", \"user\" or "
                "\"assistant\")"));
  EXPECT_THAT(error_of(R"({"messages": [{"content": "a"}]})"),
              HasSubstr("messages[0]: missing field \"role\""));
  EXPECT_THAT(error_of(R"({"messages": [{"role": 1, "content": "a"}]})"),
              HasSubstr("messages[0]: field \"role\" must be a string, got number 1"));
  EXPECT_THAT(error_of(R"({"messages": [{"role": "user"}]})"),
              HasSubstr("messages[0]: missing field \"content\" (message format)"));
  EXPECT_THAT(error_of(R"({"messages": [{"role": "user", "content": ["part"]}]})"),
              HasSubstr("messages[0]: field \"content\" must be a string, got array"));
  EXPECT_THAT(error_of(R"({"messages": [{"role": "assistant", "content": "a", "reasoning_content": 5}]})"),
              HasSubstr("messages[0]: field \"reasoning_content\" must be a string"));
  // A null reasoning_content is absent, like `is none` in the Qwen3 template.
  EXPECT_FALSE(parse(R"({"messages": [{"role": "assistant", "content": "a", "reasoning_content": null}]})")
                   .messages[0]
                   .reasoning.has_value());
}

}  // namespace
}  // namespace bidora::data
