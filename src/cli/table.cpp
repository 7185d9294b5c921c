#include "cli/table.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace bidora::cli {
namespace {

// Code-point ranges (inclusive) that terminals draw two cells wide: Unicode East Asian Width
// W and F, plus the emoji blocks that wcwidth-style implementations treat as wide.
constexpr char32_t kWide[][2] = {
    {0x1100, 0x115F},   {0x231A, 0x231B},   {0x2329, 0x232A},   {0x23E9, 0x23EC},   {0x23F0, 0x23F0},
    {0x23F3, 0x23F3},   {0x25FD, 0x25FE},   {0x2614, 0x2615},   {0x2648, 0x2653},   {0x267F, 0x267F},
    {0x2693, 0x2693},   {0x26A1, 0x26A1},   {0x26AA, 0x26AB},   {0x26BD, 0x26BE},   {0x26C4, 0x26C5},
    {0x26CE, 0x26CE},   {0x26D4, 0x26D4},   {0x26EA, 0x26EA},   {0x26F2, 0x26F3},   {0x26F5, 0x26F5},
    {0x26FA, 0x26FA},   {0x26FD, 0x26FD},   {0x2705, 0x2705},   {0x270A, 0x270B},   {0x2728, 0x2728},
    {0x274C, 0x274C},   {0x274E, 0x274E},   {0x2753, 0x2755},   {0x2757, 0x2757},   {0x2795, 0x2797},
    {0x27B0, 0x27B0},   {0x27BF, 0x27BF},   {0x2B1B, 0x2B1C},   {0x2B50, 0x2B50},   {0x2B55, 0x2B55},
    {0x2E80, 0x303E},   {0x3041, 0x33FF},   {0x3400, 0x4DBF},   {0x4E00, 0x9FFF},   {0xA000, 0xA4CF},
    {0xA960, 0xA97F},   {0xAC00, 0xD7A3},   {0xF900, 0xFAFF},   {0xFE10, 0xFE19},   {0xFE30, 0xFE6F},
    {0xFF00, 0xFF60},   {0xFFE0, 0xFFE6},   {0x16FE0, 0x16FE4}, {0x17000, 0x18CFF}, {0x1B000, 0x1B2FF},
    {0x1F004, 0x1F004}, {0x1F0CF, 0x1F0CF}, {0x1F18E, 0x1F18E}, {0x1F191, 0x1F19A}, {0x1F200, 0x1F251},
    {0x1F300, 0x1F64F}, {0x1F680, 0x1F6FF}, {0x1F7E0, 0x1F7EB}, {0x1F90C, 0x1F9FF}, {0x1FA70, 0x1FAFF},
    {0x20000, 0x2FFFD}, {0x30000, 0x3FFFD},
};

// Zero-width: combining marks, zero-width space/joiners, variation selectors.
constexpr char32_t kZero[][2] = {
    {0x0300, 0x036F}, {0x0483, 0x0489}, {0x0591, 0x05BD}, {0x0610, 0x061A}, {0x064B, 0x065F},
    {0x0E31, 0x0E31}, {0x0E34, 0x0E3A}, {0x0E47, 0x0E4E}, {0x1AB0, 0x1AFF}, {0x1DC0, 0x1DFF},
    {0x200B, 0x200F}, {0x202A, 0x202E}, {0x2060, 0x2064}, {0x20D0, 0x20FF}, {0x302A, 0x302D},
    {0x3099, 0x309A}, {0xFE00, 0xFE0F}, {0xFE20, 0xFE2F}, {0xFEFF, 0xFEFF}, {0xE0100, 0xE01EF},
};

template <size_t N>
bool in_ranges(char32_t c, const char32_t (&ranges)[N][2]) {
  // Both tables are sorted: binary search on the range starts.
  size_t lo = 0, hi = N;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (c < ranges[mid][0]) {
      hi = mid;
    } else if (c > ranges[mid][1]) {
      lo = mid + 1;
    } else {
      return true;
    }
  }
  return false;
}

size_t codepoint_width(char32_t c) {
  if (c == 0) return 0;
  if (c < 0x20 || (c >= 0x7F && c < 0xA0)) return 0;  // control characters draw nothing
  if (in_ranges(c, kZero)) return 0;
  if (in_ranges(c, kWide)) return 2;
  return 1;
}

// Decodes one UTF-8 sequence at s[i]; returns its length, or 0 when invalid (overlong, surrogate,
// truncated, out of range).
size_t decode_utf8(std::string_view s, size_t i, char32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  size_t len;
  char32_t min;
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

const char* ansi_code(Color c) {
  switch (c) {
    case Color::Red:
      return "\x1b[31m";
    case Color::Green:
      return "\x1b[32m";
    case Color::Yellow:
      return "\x1b[33m";
    case Color::Blue:
      return "\x1b[34m";
    case Color::Magenta:
      return "\x1b[35m";
    case Color::Cyan:
      return "\x1b[36m";
    case Color::Dim:
      return "\x1b[2m";
    case Color::Bold:
      return "\x1b[1m";
    case Color::None:
      break;
  }
  return "";
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t nl = s.find('\n', start);
    out.push_back(s.substr(start, nl == std::string::npos ? std::string::npos : nl - start));
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return out;
}

std::string repeat(std::string_view s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

// Pads `text` (drawn as `shown`, which may carry colour codes) to `width` display cells.
std::string pad(const std::string& text, size_t width, Align align, const std::string& shown) {
  const size_t w = display_width(text);
  const size_t gap = width > w ? width - w : 0;
  switch (align) {
    case Align::Right:
      return std::string(gap, ' ') + shown;
    case Align::Center:
      return std::string(gap / 2, ' ') + shown + std::string(gap - gap / 2, ' ');
    case Align::Left:
      break;
  }
  return shown + std::string(gap, ' ');
}
std::string pad(const std::string& text, size_t width, Align align) {
  return pad(text, width, align, text);
}

struct Glyphs {
  const char *h, *v, *tl, *tm, *tr, *ml, *mm, *mr, *bl, *bm, *br;
};
constexpr Glyphs kUnicode{"─", "│", "┌", "┬", "┐", "├", "┼", "┤", "└", "┴", "┘"};
constexpr Glyphs kAscii{"-", "|", "+", "+", "+", "+", "+", "+", "+", "+", "+"};

}  // namespace

size_t display_width(std::string_view s) {
  size_t width = 0;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == '\x1b' && i + 1 < s.size() && s[i + 1] == '[') {  // CSI ... final byte 0x40-0x7E
      i += 2;
      while (i < s.size() && !(s[i] >= 0x40 && s[i] <= 0x7E)) ++i;
      if (i < s.size()) ++i;
      continue;
    }
    char32_t cp = 0;
    const size_t len = decode_utf8(s, i, cp);
    if (len == 0) {
      ++width;
      ++i;
      continue;
    }
    width += codepoint_width(cp);
    i += len;
  }
  return width;
}

std::string colorize(std::string_view s, Color c, bool enabled) {
  if (!enabled || c == Color::None || s.empty()) return std::string(s);
  return fmt::format("{}{}\x1b[0m", ansi_code(c), s);
}

TableStyle style_for(std::FILE* out) {
  TableStyle st;
  const char* no_color = std::getenv("NO_COLOR");
  const char* term = std::getenv("TERM");
  const bool tty = out != nullptr && ::isatty(::fileno(out)) == 1;
  st.color = tty && !(no_color && *no_color) && !(term && std::strcmp(term, "dumb") == 0);
  return st;
}

Table& Table::columns(std::vector<Column> cols) {
  cols_ = std::move(cols);
  return *this;
}

Table& Table::row(std::vector<Cell> cells) {
  if (cells.size() > cols_.size())
    fail("table '{}': a row has {} cells but the table has {} columns", title_, cells.size(), cols_.size());
  if (cells.empty()) cells.emplace_back("");  // an empty vector is reserved for separators
  while (cells.size() < cols_.size()) cells.emplace_back("");
  rows_.push_back(std::move(cells));
  return *this;
}

Table& Table::separator() {
  rows_.emplace_back();
  return *this;
}

Table& Table::footer(std::string text) {
  footers_.push_back(std::move(text));
  return *this;
}

std::string Table::render(const TableStyle& style) const {
  const Glyphs& g = style.unicode ? kUnicode : kAscii;
  const size_t n = cols_.size();
  std::vector<size_t> width(n, 0);
  for (size_t c = 0; c < n; ++c) {
    for (const auto& line : split_lines(cols_[c].header)) width[c] = std::max(width[c], display_width(line));
  }
  for (const auto& r : rows_) {
    for (size_t c = 0; c < r.size(); ++c) {
      for (const auto& line : split_lines(r[c].text)) width[c] = std::max(width[c], display_width(line));
    }
  }

  auto rule = [&](const char* left, const char* mid, const char* right) {
    std::string s = left;
    for (size_t c = 0; c < n; ++c) {
      s += repeat(g.h, width[c] + 2);
      s += c + 1 < n ? mid : right;
    }
    return s + "\n";
  };
  auto emit_row = [&](std::string& out, const std::vector<std::string>& texts,
                      const std::vector<Color>& colors, bool header) {
    std::vector<std::vector<std::string>> lines(n);
    size_t height = 1;
    for (size_t c = 0; c < n; ++c) {
      lines[c] = split_lines(texts[c]);
      height = std::max(height, lines[c].size());
    }
    for (size_t l = 0; l < height; ++l) {
      out += g.v;
      for (size_t c = 0; c < n; ++c) {
        const std::string text = l < lines[c].size() ? lines[c][l] : "";
        // The width comes from the plain text; only the text itself is coloured, not the padding.
        const std::string shown = colorize(text, colors[c], style.color);
        out += ' ';
        out += pad(text, width[c], header ? Align::Left : cols_[c].align, shown);
        out += ' ';
        out += g.v;
      }
      out += "\n";
    }
  };

  std::string out;
  if (!title_.empty()) {
    size_t total = 1;
    for (size_t c = 0; c < n; ++c) total += width[c] + 3;
    out += colorize(pad(title_, std::max(total, display_width(title_)), Align::Center), Color::Bold,
                    style.color);
    // Trailing spaces of a centred title are noise in files and tests.
    while (!out.empty() && out.back() == ' ') out.pop_back();
    out += "\n";
  }
  if (n == 0) return out;
  out += rule(g.tl, g.tm, g.tr);
  {
    std::vector<std::string> texts;
    for (const auto& c : cols_) texts.push_back(c.header);
    emit_row(out, texts, std::vector<Color>(n, Color::Cyan), true);
  }
  out += rule(g.ml, g.mm, g.mr);
  for (size_t r = 0; r < rows_.size(); ++r) {
    if (rows_[r].empty()) {
      if (r > 0 && r + 1 < rows_.size() && !rows_[r - 1].empty()) out += rule(g.ml, g.mm, g.mr);
      continue;
    }
    std::vector<std::string> texts;
    std::vector<Color> colors;
    for (const auto& cell : rows_[r]) {
      texts.push_back(cell.text);
      colors.push_back(cell.color);
    }
    emit_row(out, texts, colors, false);
  }
  out += rule(g.bl, g.bm, g.br);
  for (const auto& f : footers_) out += colorize(f, Color::Dim, style.color) + "\n";
  return out;
}

void Table::print(std::FILE* out) const {
  const std::string s = render(style_for(out));
  std::fwrite(s.data(), 1, s.size(), out);
}

std::string format_bytes(int64_t bytes) {
  if (bytes < 0) return "?";
  constexpr double kKiB = 1024.0;
  const double b = static_cast<double>(bytes);
  if (b < kKiB) return fmt::format("{} B", bytes);
  if (b < kKiB * kKiB) return fmt::format("{:.1f} KiB", b / kKiB);
  if (b < kKiB * kKiB * kKiB) return fmt::format("{:.1f} MiB", b / (kKiB * kKiB));
  return fmt::format("{:.2f} GiB", b / (kKiB * kKiB * kKiB));
}

std::string format_count(int64_t n) {
  const double v = static_cast<double>(n);
  if (n >= 1'000'000'000) return fmt::format("{:.2f}B", v / 1e9);
  if (n >= 1'000'000) return fmt::format("{:.1f}M", v / 1e6);
  if (n >= 1'000) return fmt::format("{:.1f}K", v / 1e3);
  return fmt::format("{}", n);
}

const char* check_mark(bool ok) {
  return ok ? "✓" : "✗";
}

}  // namespace bidora::cli
