#include "cli/table.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>

#include "core/error.h"

namespace bidora::cli {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

TEST(DisplayWidth, CountsTerminalCells) {
  EXPECT_EQ(display_width(""), 0u);
  EXPECT_EQ(display_width("abc"), 3u);
  EXPECT_EQ(display_width("✓"), 1u);          // U+2713, 3 bytes, narrow
  EXPECT_EQ(display_width("✗"), 1u);          // U+2717
  EXPECT_EQ(display_width("─│┌"), 3u);        // box drawing is narrow
  EXPECT_EQ(display_width("模型"), 4u);       // CJK ideographs are wide
  EXPECT_EQ(display_width("ｆｕｌｌ"), 8u);   // fullwidth forms
  EXPECT_EQ(display_width("한국어"), 6u);     // Hangul syllables
  EXPECT_EQ(display_width("🚀"), 2u);          // emoji (4-byte UTF-8)
  EXPECT_EQ(display_width("e\xCC\x81"), 1u);  // e + combining acute
  EXPECT_EQ(display_width("a\xE2\x80\x8B"
                          "b"),
            2u);  // zero-width space
  EXPECT_EQ(display_width("ünïcödé"), 7u);
  EXPECT_EQ(display_width("\x1b[32mok\x1b[0m"), 2u);  // ANSI colour codes take no cells
  EXPECT_EQ(display_width("\xFF\xFE"), 2u);           // invalid bytes: one cell each
  EXPECT_EQ(display_width("\xE6\xA8"), 2u);           // truncated sequence
  EXPECT_EQ(display_width("\xC0\xAF"), 2u);           // overlong encoding is invalid
}

TEST(Table, AlignsColumnsByDisplayWidth) {
  Table t{"Models"};
  t.columns({"Name", {"Size", Align::Right}, {"Fit", Align::Center}});
  t.row({"Qwen", "1.5 GiB", "✓"});
  t.row({"模型", "12 GiB", "✗"});
  t.row({"ünïcödé-🚀", "3 B", "✓"});
  const std::string out = t.render(TableStyle{false, true});
  const auto lines = lines_of(out);
  ASSERT_EQ(lines.size(), 8u) << out;         // title, top, header, rule, 3 rows, bottom
  EXPECT_EQ(lines[0], "            Models");  // centred over the 30-cell box
  // Every line of the box has the same display width, and the column bars line up.
  const size_t w = display_width(lines[1]);
  for (size_t i = 1; i < lines.size(); ++i) EXPECT_EQ(display_width(lines[i]), w) << lines[i];
  EXPECT_EQ(lines[1], "┌────────────┬─────────┬─────┐");
  EXPECT_EQ(lines[2], "│ Name       │ Size    │ Fit │");
  EXPECT_EQ(lines[4], "│ Qwen       │ 1.5 GiB │  ✓  │");
  EXPECT_EQ(lines[5], "│ 模型       │  12 GiB │  ✗  │");
  EXPECT_EQ(lines[6], "│ ünïcödé-🚀 │     3 B │  ✓  │");
  EXPECT_EQ(lines[7], "└────────────┴─────────┴─────┘");
}

TEST(Table, AsciiStyleSeparatorsFootersAndMultilineCells) {
  Table t;
  t.columns({"k", "v"});
  t.row({"a", "1\n22"});
  t.separator();
  t.row({"b"});  // padded with an empty cell
  t.footer("note");
  const std::string out = t.render(TableStyle{false, false});
  EXPECT_EQ(out,
            "+---+----+\n"
            "| k | v  |\n"
            "+---+----+\n"
            "| a | 1  |\n"
            "|   | 22 |\n"
            "+---+----+\n"
            "| b |    |\n"
            "+---+----+\n"
            "note\n");
}

TEST(Table, ColourWrapsTextButNotPadding) {
  Table t;
  t.columns({{"x", Align::Right}});
  t.row({Cell{"ok", Color::Green}});
  const std::string plain = t.render(TableStyle{false, true});
  const std::string colored = t.render(TableStyle{true, true});
  EXPECT_EQ(plain.find("\x1b["), std::string::npos);
  EXPECT_THAT(colored, HasSubstr("│ \x1b[32mok\x1b[0m │"));
  EXPECT_THAT(colored, HasSubstr("\x1b[36mx\x1b[0m "));  // header in cyan, padded after
  const auto a = lines_of(plain), b = lines_of(colored);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(display_width(a[i]), display_width(b[i]));
}

TEST(Table, TooManyCellsIsAnError) {
  Table t{"t"};
  t.columns({"a"});
  EXPECT_THROW(t.row({"1", "2"}), Error);
}

TEST(Table, NoColourWhenNotATerminalOrNoColorSet) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  EXPECT_FALSE(style_for(f).color);  // a file is not a terminal
  std::fclose(f);
  ::setenv("NO_COLOR", "1", 1);
  EXPECT_FALSE(style_for(stdout).color);
  ::unsetenv("NO_COLOR");
}

TEST(Format, BytesCountsAndMarks) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(int64_t{3} << 20), "3.0 MiB");
  EXPECT_EQ(format_bytes(int64_t{5} << 30), "5.00 GiB");
  EXPECT_EQ(format_bytes(-1), "?");
  EXPECT_EQ(format_count(494032768), "494.0M");
  EXPECT_EQ(format_count(8030261248), "8.03B");
  EXPECT_EQ(format_count(999), "999");
  EXPECT_STREQ(check_mark(true), "✓");
  EXPECT_STREQ(check_mark(false), "✗");
}

}  // namespace
}  // namespace bidora::cli
