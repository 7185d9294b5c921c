// Regex iteration and the split behaviours of the pre-tokenizers, checked on hand-worked examples
// (Rust `tokenizers` semantics; the exact splits of the real regexes are in tokenizers.md §3).
#include <gtest/gtest.h>

#include "core/error.h"
#include "tokenizer/pattern.h"
#include "tokenizer/regex.h"

namespace bidora::tok {
namespace {

using Spans = std::vector<Span>;

std::vector<std::string> pieces(const std::string& text, const Spans& spans) {
  std::vector<std::string> out;
  for (auto [b, e] : spans) out.push_back(text.substr(b, e - b));
  return out;
}

std::vector<std::string> regex_split(const std::string& pattern, const std::string& text) {
  Regex re(pattern, "test");
  Spans m, s;
  re.find_all(text, m);
  split_spans(text.size(), m, SplitBehavior::Isolated, false, s);
  return pieces(text, s);
}

const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* kQwen =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

using V = std::vector<std::string>;

TEST(Regex, Llama3QuirksFromTheSpec) {
  EXPECT_EQ(regex_split(kLlama3, "  \n\n  x"), (V{"  \n\n", " ", " x"}));
  EXPECT_EQ(regex_split(kLlama3, "123456"), (V{"123", "456"}));
  EXPECT_EQ(regex_split(kLlama3, "\xD9\xA1\xD9\xA2\xD9\xA3\xD9\xA4"),
            (V{"\xD9\xA1\xD9\xA2\xD9\xA3", "\xD9\xA4"}));
  EXPECT_EQ(regex_split(kLlama3, "(word"), (V{"(word"}));
  EXPECT_EQ(regex_split(kLlama3, "\tTab"), (V{"\tTab"}));
  EXPECT_EQ(regex_split(kLlama3, "e\xCC\x81t"), (V{"e", "\xCC\x81t"}));  // combining mark is not \p{L}
  EXPECT_EQ(regex_split(kLlama3, "I'M here"), (V{"I", "'M", " here"}));  // (?i:) contractions
  EXPECT_EQ(regex_split(kLlama3, "  word"), (V{" ", " word"}));          // \s+(?!\S) gives one back
  EXPECT_EQ(regex_split(kQwen, "123"), (V{"1", "2", "3"}));
  EXPECT_EQ(regex_split(kGpt2, "(word"), (V{"(", "word"}));  // GPT-2 only glues a space
  EXPECT_EQ(regex_split(kGpt2, "Hello world's"), (V{"Hello", " world", "'s"}));
}

TEST(Regex, EmptyMatchesFollowTheOnigCrate) {
  // An empty match right after a match is skipped; otherwise empty matches are reported.
  Regex re("a*", "test");
  Spans m;
  re.find_all("baab", m);
  EXPECT_EQ(m, (Spans{{0, 0}, {1, 3}, {4, 4}}));
  Regex x("x*", "test");
  x.find_all("\xC3\xA9", m);  // advancing by one whole UTF-8 char
  EXPECT_EQ(m, (Spans{{0, 0}, {2, 2}}));
  EXPECT_THROW(Regex("(unclosed", "tokenizer.json: pre_tokenizer.pattern"), Error);
  try {
    Regex("[z-a]", "tokenizer.json: pre_tokenizer.pattern.Regex");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pre_tokenizer.pattern.Regex"), std::string::npos);
  }
}

// Splitting "a-b--c" on "-" with every behaviour (values worked out from the Rust definitions).
TEST(SplitSpans, AllBehaviors) {
  const std::string t = "a-b--c";
  auto run = [&](SplitBehavior b, bool invert) {
    Spans m, s;
    Pattern::literal("-").find_all(t, m);
    split_spans(t.size(), m, b, invert, s);
    return pieces(t, s);
  };
  EXPECT_EQ(run(SplitBehavior::Removed, false), (V{"a", "b", "c"}));
  EXPECT_EQ(run(SplitBehavior::Isolated, false), (V{"a", "-", "b", "-", "-", "c"}));
  EXPECT_EQ(run(SplitBehavior::MergedWithPrevious, false), (V{"a-", "b-", "-", "c"}));
  EXPECT_EQ(run(SplitBehavior::MergedWithNext, false), (V{"a", "-b", "-", "-c"}));
  EXPECT_EQ(run(SplitBehavior::Contiguous, false), (V{"a", "-", "b", "--", "c"}));
  // invert: the letters are the "matches".
  EXPECT_EQ(run(SplitBehavior::Removed, true), (V{"-", "-", "-"}));  // two separate "-" matches
  EXPECT_EQ(run(SplitBehavior::MergedWithPrevious, true), (V{"a", "-b", "-", "-c"}));
  EXPECT_EQ(run(SplitBehavior::MergedWithNext, true), (V{"a-", "b-", "-", "c"}));
  // Leading and trailing delimiters.
  const std::string u = "-x-";
  Spans m, s;
  Pattern::literal("-").find_all(u, m);
  split_spans(u.size(), m, SplitBehavior::MergedWithPrevious, false, s);
  EXPECT_EQ(pieces(u, s), (V{"-", "x-"}));
  split_spans(u.size(), m, SplitBehavior::MergedWithNext, false, s);
  EXPECT_EQ(pieces(u, s), (V{"-x", "-"}));
  split_spans(0, {}, SplitBehavior::Isolated, false, s);
  EXPECT_TRUE(s.empty());
}

TEST(Pattern, LiteralIsNotARegex) {
  Spans m;
  Pattern::literal(".").find_all("a.b..", m);
  EXPECT_EQ(m, (Spans{{1, 2}, {3, 4}, {4, 5}}));
  Pattern::literal("aa").find_all("aaa", m);  // non-overlapping
  EXPECT_EQ(m, (Spans{{0, 2}}));
}

}  // namespace
}  // namespace bidora::tok
