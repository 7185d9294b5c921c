#pragma once
// Box-drawn text tables for every command's human-readable output:
//
//   Table t{"Hardware"};
//   t.columns({"Property", {"Value", Align::Right}});
//   t.row({"Cores", "8"});
//   t.row({"AVX2", Cell{"✓", Color::Green}});
//   t.print(stdout);
//
// Columns are sized by DISPLAY width (UTF-8 aware: CJK and fullwidth characters take two cells,
// combining marks none), so mixed scripts and ✓/✗ marks line up. Colour is used only when the
// output is a terminal and NO_COLOR is unset (https://no-color.org), so piped output and files
// stay plain. Commands print JSON instead when given --json; tables are for people.
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace bidora::cli {

enum class Align { Left, Right, Center };
enum class Color { None, Red, Green, Yellow, Blue, Magenta, Cyan, Dim, Bold };

struct Column {
  std::string header;
  Align align = Align::Left;
  Column(const char* h, Align a = Align::Left) : header(h), align(a) {}
  Column(std::string h, Align a = Align::Left) : header(std::move(h)), align(a) {}
};

// One cell: text (may contain '\n' for several lines) and an optional colour.
struct Cell {
  std::string text;
  Color color = Color::None;
  Cell(const char* t, Color c = Color::None) : text(t), color(c) {}
  Cell(std::string t, Color c = Color::None) : text(std::move(t)), color(c) {}
};

struct TableStyle {
  bool color = false;   // ANSI colours for title, header and coloured cells
  bool unicode = true;  // box-drawing characters; false: +-| ASCII
};

// The style for `out`: colour only on a terminal without NO_COLOR (or TERM=dumb).
TableStyle style_for(std::FILE* out);

class Table {
 public:
  explicit Table(std::string title = {}) : title_(std::move(title)) {}

  Table& columns(std::vector<Column> cols);
  // A row with fewer cells than columns is padded with empty cells; more cells is a bug (throws).
  Table& row(std::vector<Cell> cells);
  // A horizontal rule before the next row (groups rows).
  Table& separator();
  // A line printed under the table (notes, legends).
  Table& footer(std::string text);

  size_t num_rows() const { return rows_.size(); }
  std::string render(const TableStyle& style) const;
  void print(std::FILE* out) const;  // render(style_for(out)) and write it

 private:
  std::string title_;
  std::vector<Column> cols_;
  std::vector<std::vector<Cell>> rows_;  // an empty row marks a separator
  std::vector<std::string> footers_;
};

// Number of terminal cells `s` occupies: UTF-8 decoded, East Asian wide/fullwidth and emoji
// count 2, combining marks and zero-width characters 0, ANSI escape sequences 0. Bytes that are
// not valid UTF-8 count 1 each (a terminal shows a replacement character).
size_t display_width(std::string_view s);

// Wraps `s` in the ANSI sequence for `c` when `enabled`.
std::string colorize(std::string_view s, Color c, bool enabled);

// Shared human formats: "1.50 GiB", "494.0M", check marks.
std::string format_bytes(int64_t bytes);
std::string format_count(int64_t n);  // 494032768 -> "494.0M", 8030261248 -> "8.03B"
const char* check_mark(bool ok);      // "✓" or "✗"

}  // namespace bidora::cli
