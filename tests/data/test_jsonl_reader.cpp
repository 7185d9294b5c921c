#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "core/files.h"
#include "data/jsonl_reader.h"
#include "test_support.h"

namespace bidora::data {
namespace {

using ::testing::HasSubstr;

std::string write_jsonl(const std::string& name, const std::string& content) {
  const std::string path = test::make_temp_dir("jsonl") + "/" + name;
  write_file_atomic(path, content);
  return path;
}

std::vector<Record> read_all(JsonlReader& r) {
  std::vector<Record> out;
  while (auto rec = r.next()) out.push_back(std::move(*rec));
  return out;
}

std::string stop_error(const std::string& path) {
  JsonlReader r(path, BadLinePolicy::Stop);
  try {
    read_all(r);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(JsonlReader, ReadsRecordsWithLineNumbersSkippingBlankLines) {
  const std::string path = write_jsonl("a.jsonl",
                                       "\xEF\xBB\xBF{\"text\": \"one\"}\r\n"
                                       "\n"
                                       "   \t\n"
                                       "{\"prompt\": \"p\", \"completion\": \"c\"}\n"
                                       "{\"code\": \"x\"}");  // no final newline
  JsonlReader r(path, BadLinePolicy::Stop);
  auto recs = read_all(r);
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0].text, "one");
  EXPECT_EQ(recs[0].line, 1);
  EXPECT_EQ(recs[0].source, path + ":1");
  EXPECT_EQ(recs[1].format, RecordFormat::PromptCompletion);
  EXPECT_EQ(recs[1].line, 4);
  EXPECT_EQ(recs[2].line, 5);
  EXPECT_EQ(r.lines_read(), 5);
  EXPECT_EQ(r.blank_lines(), 2);
  EXPECT_EQ(r.skipped().count, 0);
}

TEST(JsonlReader, MalformedJsonStopsWithFileLineAndReason) {
  const std::string path = write_jsonl("bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"unterminated}\n");
  const std::string e = stop_error(path);
  EXPECT_THAT(e, HasSubstr(path + ":2: malformed JSON at column"));
  EXPECT_THAT(e, HasSubstr("missing closing quote"));
}

TEST(JsonlReader, TrailingGarbageAndTwoObjectsOnALineAreErrors) {
  EXPECT_THAT(stop_error(write_jsonl("g.jsonl", "{\"text\": \"a\"} x\n")), HasSubstr(":1: malformed JSON"));
  EXPECT_THAT(stop_error(write_jsonl("h.jsonl", "{\"text\": \"a\"}{\"text\": \"b\"}\n")),
              HasSubstr(":1: malformed JSON"));
}

TEST(JsonlReader, InvalidUtf8AndLoneSurrogatesAreRejected) {
  EXPECT_THAT(stop_error(write_jsonl("u.jsonl", "{\"text\": \"bad \xff byte\"}\n")),
              HasSubstr(":1: malformed JSON"));
  EXPECT_THAT(stop_error(write_jsonl("s.jsonl", "{\"text\": \"\\ud800 alone\"}\n")),
              HasSubstr(":1: malformed JSON"));
  // A proper surrogate pair is fine.
  JsonlReader r(write_jsonl("p.jsonl", "{\"text\": \"\\ud83d\\ude00\"}\n"), BadLinePolicy::Stop);
  EXPECT_EQ(read_all(r).at(0).text, "\xF0\x9F\x98\x80");
}

// Fuzzing regression: nlohmann throws out_of_range (not parse_error) for a number too large for a
// double, which escaped the reader as a non-bidora exception.
TEST(JsonlReader, NumberOverflowIsALineError) {
  const std::string path = write_jsonl("big.jsonl", "{\"text\": \"ok\"}\n{\"text\": 1e400}\n");
  EXPECT_THAT(stop_error(path), HasSubstr(path + ":2: malformed JSON: number overflow"));
  JsonlReader r(path, BadLinePolicy::Skip);
  EXPECT_EQ(read_all(r).size(), 1u);
  EXPECT_EQ(r.skipped().count, 1);
}

TEST(JsonlReader, RecordErrorsCarryTheLine) {
  const std::string path = write_jsonl("r.jsonl", "{\"text\": \"ok\"}\n\n{\"text\": 3}\n");
  EXPECT_THAT(stop_error(path), HasSubstr(path + ":3: field \"text\" must be a string, got number 3"));
}

TEST(JsonlReader, SkipPolicyCountsBadLinesAndKeepsTheirReasons) {
  std::string content;
  for (int i = 1; i <= 30; ++i)
    content += i % 3 == 0 ? "not json\n" : "{\"text\": \"t" + std::to_string(i) + "\"}\n";
  const std::string path = write_jsonl("skip.jsonl", content);
  JsonlReader r(path, BadLinePolicy::Skip);
  auto recs = read_all(r);
  EXPECT_EQ(recs.size(), 20u);
  EXPECT_EQ(r.skipped().count, 10);
  ASSERT_EQ(r.skipped().first.size(), 10u);
  EXPECT_EQ(r.skipped().first[0].line, 3);
  EXPECT_THAT(r.skipped().first[0].reason, HasSubstr(path + ":3: malformed JSON"));
  EXPECT_EQ(r.skipped().first[9].line, 30);
  EXPECT_EQ(recs.back().text, "t29");
}

TEST(JsonlReader, BadLineLogKeepsOnlyTheFirstReasons) {
  BadLineLog log;
  for (int i = 0; i < 50; ++i) log.add(i, "r");
  EXPECT_EQ(log.count, 50);
  EXPECT_EQ(log.first.size(), BadLineLog::kMaxKeptBadLines);
}

TEST(JsonlReader, MissingFileIsAnError) {
  try {
    JsonlReader r("/nonexistent/dir/x.jsonl", BadLinePolicy::Stop);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot open data file /nonexistent/dir/x.jsonl"));
  }
}

}  // namespace
}  // namespace bidora::data
