#include <gtest/gtest.h>

#include "data/text_util.h"

namespace bidora::data {
namespace {

TEST(TextUtil, PyStripRemovesAsciiWhitespace) {
  EXPECT_EQ(py_strip(" \t\n\v\f\rabc def\r\n "), "abc def");
  EXPECT_EQ(py_lstrip("  x  "), "x  ");
  EXPECT_EQ(py_rstrip("  x  "), "  x");
  EXPECT_EQ(py_strip("   "), "");
  EXPECT_EQ(py_strip(""), "");
}

TEST(TextUtil, PyStripMatchesPythonIsspaceOutsideAscii) {
  // Python: "\x1c\x1f\u0085\u00a0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000".isspace() is True.
  EXPECT_EQ(py_strip("\x1c\x1f\u0085\u00a0\u1680\u2000\u200a\u2028\u2029\u202f\u205fx\u3000"), "x");
  // U+200B (zero width space) and U+FEFF are not whitespace for Python.
  EXPECT_EQ(py_strip("\u200bx\ufeff"), "\u200bx\ufeff");
  // A multi-byte letter next to the whitespace stays whole.
  EXPECT_EQ(py_strip("\u3000é\u3000"), "é");
}

TEST(TextUtil, PyStripLeavesInvalidUtf8Alone) {
  EXPECT_EQ(py_strip(" \xff "), "\xff");
  EXPECT_EQ(py_strip(" \xe3\x80 "), "\xe3\x80");  // truncated U+3000 is not whitespace
}

TEST(TextUtil, CharStripAndSplitHelpers) {
  EXPECT_EQ(strip_chars("\n\nab\n", "\n"), "ab");
  EXPECT_EQ(lstrip_chars("\n \nab", "\n"), " \nab");
  EXPECT_EQ(rstrip_chars("ab\n\n", "\n"), "ab");
  EXPECT_EQ(strip_chars("\n\n", "\n"), "");
  EXPECT_EQ(before_first("a</think>b</think>c", "</think>"), "a");
  EXPECT_EQ(after_last("a</think>b</think>c", "</think>"), "c");
  EXPECT_EQ(before_first("abc", "</think>"), "abc");
  EXPECT_EQ(after_last("abc", "</think>"), "abc");
}

}  // namespace
}  // namespace bidora::data
