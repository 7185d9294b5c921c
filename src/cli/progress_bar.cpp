#include "cli/progress_bar.h"

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cli/table.h"
#include "train/trainer.h"

namespace bidora::cli {
namespace {

constexpr int kMinBar = 10, kMaxBar = 60;
// The bar is drawn in eighths of a cell: U+258F (one eighth) .. U+2589 (seven eighths), U+2588 full.
constexpr const char* kEighths[8] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
constexpr const char* kFull = "█";

// "512", "12.3k", "1.23M" tokens per second.
std::string format_rate(double r) {
  if (!std::isfinite(r) || r <= 0) return "?";
  if (r < 999.5) return fmt::format("{:.0f}", r);
  if (r < 999.5e3) return fmt::format("{:.1f}k", r / 1e3);
  return fmt::format("{:.2f}M", r / 1e6);
}

// Two significant digits, short exponent: 1.9e-4, 2e-5, 0.
std::string format_lr(double lr) {
  if (lr == 0 || !std::isfinite(lr)) return fmt::format("{}", lr);
  std::string s = fmt::format("{:.1e}", lr);  // "1.9e-04"
  const size_t e = s.find('e');
  std::string mant = s.substr(0, e), exp = s.substr(e + 1);
  if (mant.ends_with(".0")) mant.resize(mant.size() - 2);
  const char sign = exp[0];
  exp.erase(0, 1);
  while (exp.size() > 1 && exp[0] == '0') exp.erase(0, 1);
  return mant + "e" + (sign == '-' ? "-" : "") + exp;
}

std::string format_value(double v) {
  return std::isfinite(v) ? fmt::format("{:.3f}", v) : fmt::format("{}", v);
}

// A field of the line with its renderings from the longest to the shortest acceptable one.
struct Field {
  std::vector<std::string> forms;
};

std::string bar_cells(int64_t step, int64_t total, int width, bool color) {
  const int64_t done = std::clamp<int64_t>(step, 0, total);
  // Integer eighths (long double: exact for any realistic step count), so 50% of 20 cells is 10
  // full cells, never 9 and seven eighths.
  const auto eighths = static_cast<int64_t>(static_cast<long double>(done) * width * 8 / total);
  const int64_t full = eighths / 8, part = eighths % 8;
  std::string filled;
  for (int64_t i = 0; i < full; ++i) filled += kFull;
  filled += kEighths[part];
  const int64_t used = full + (part ? 1 : 0);
  return colorize(filled, done == total ? Color::Green : Color::Cyan, color) +
         std::string(static_cast<size_t>(width - used), ' ');
}

}  // namespace

ProgressState progress_state(const train::TrainLog& e) {
  ProgressState s;
  s.step = e.step;
  s.total = e.total_steps;
  s.loss = e.loss;
  s.lr = e.lr;
  s.tokens_per_second = e.tokens_per_second;
  s.elapsed_seconds = e.elapsed_seconds;
  s.eval_loss = e.val_loss;
  s.epoch = e.epoch;
  return s;
}

std::string format_clock(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0 || seconds > 1e12) return "?";
  const auto t = static_cast<int64_t>(seconds + 0.5);
  if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60);
  return fmt::format("{:02}:{:02}", t / 60, t % 60);
}

std::string render_progress_line(const ProgressState& s, int terminal_width, bool color) {
  const bool known = s.total > 0;
  const int64_t step = std::max<int64_t>(0, s.step);

  std::vector<Field> fields;
  const std::string elapsed = format_clock(s.elapsed_seconds);
  if (known) {
    const std::string tot = fmt::format("{}", s.total);
    fields.push_back({{fmt::format("{:>{}}/{}", step, tot.size(), tot)}});
    const double eta = step > 0 ? s.elapsed_seconds / static_cast<double>(step) *
                                      static_cast<double>(std::max<int64_t>(0, s.total - step))
                                : NAN;
    const std::string times = elapsed + "<" + format_clock(eta);
    fields.push_back({{fmt::format("[{}, {} tok/s]", times, format_rate(s.tokens_per_second)),
                       fmt::format("[{}]", times)}});
  } else {
    fields.push_back({{fmt::format("step {}", step)}});
    fields.push_back({{fmt::format("[{}, {} tok/s]", elapsed, format_rate(s.tokens_per_second)),
                       fmt::format("[{}]", elapsed)}});
  }
  fields.push_back({{"loss " + format_value(s.loss)}});
  if (s.eval_loss) fields.push_back({{"eval " + format_value(*s.eval_loss)}});
  fields.push_back({{"lr " + format_lr(s.lr)}});
  fields.push_back({{fmt::format("ep {:.2f}", s.epoch)}});

  // Percentage and bar first: " 37% |" + bar + "| ".
  const int64_t pct =
      known ? static_cast<int64_t>(static_cast<long double>(std::min(step, s.total)) * 100 / s.total) : 0;
  const std::string pct_text = fmt::format("{:>3}%", pct);
  // " |" + bar + "|", and a space before the fields when there are any.
  const int frame = known ? static_cast<int>(pct_text.size()) + 3 : 0;
  std::vector<size_t> form(fields.size(), 0);  // which rendering each field uses
  size_t n = fields.size();                    // fields shown
  auto tail_width = [&] {
    int w = 0;
    for (size_t i = 0; i < n; ++i)
      w += static_cast<int>(display_width(fields[i].forms[form[i]])) + (i ? 1 : 0);
    return w;
  };
  // Narrow terminal: shorten, then drop, the rightmost field until the bar keeps its minimum.
  const int reserved = known ? frame + kMinBar + 1 : 0;
  while (n > 0 && reserved + tail_width() > terminal_width) {
    if (form[n - 1] + 1 < fields[n - 1].forms.size())
      ++form[n - 1];
    else
      --n;
  }

  std::string line;
  if (known) {
    const int bar = std::min(kMaxBar, terminal_width - frame - (n > 0 ? 1 + tail_width() : 0));
    if (bar < 1) {  // not even a cell of bar: the percentage alone, if it fits
      return terminal_width >= static_cast<int>(pct_text.size()) ? colorize(pct_text, Color::Bold, color)
                                                                 : "";
    }
    line = colorize(pct_text, Color::Bold, color) + " |" + bar_cells(step, s.total, bar, color) + "|";
    if (n > 0) line += ' ';
  }
  for (size_t i = 0; i < n; ++i) {
    if (i) line += ' ';
    line += fields[i].forms[form[i]];
  }
  return line;
}

int terminal_width(std::FILE* out) {
  winsize ws{};
  if (out != nullptr && ::ioctl(::fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* c = std::getenv("COLUMNS")) {
    char* end = nullptr;
    const long v = std::strtol(c, &end, 10);
    if (end != c && *end == '\0' && v > 0 && v < 100000) return static_cast<int>(v);
  }
  return 100;
}

ProgressBar::ProgressBar(std::FILE* out) : out_(out) {
  opt_.write = [out](std::string_view s) {
    std::fwrite(s.data(), 1, s.size(), out);
    std::fflush(out);
  };
  const char* term = std::getenv("TERM");
  opt_.interactive =
      out != nullptr && ::isatty(::fileno(out)) == 1 && !(term && std::strcmp(term, "dumb") == 0);
  opt_.color = style_for(out).color;
}

ProgressBar::ProgressBar(ProgressBarOptions options) : opt_(std::move(options)) {}

ProgressBar::~ProgressBar() {
  try {
    finish();
  } catch (...) {  // a destructor must not throw; a failed final write loses nothing
  }
}

double ProgressBar::now() const {
  if (opt_.clock) return opt_.clock();
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int ProgressBar::width() const {
  const int w = opt_.width > 0 ? opt_.width : terminal_width(out_);
  // One column short of the edge: a character in the last column leaves many terminals in a
  // pending-wrap state, and the next '\r' would then return to the wrong line.
  return std::max(1, w - 1);
}

// Back to column 0, the line, then clear what a longer previous frame left behind (clearing
// after writing, not before, is what keeps the line from flickering).
void ProgressBar::append_frame(std::string& out) const {
  out += '\r';
  out += render_progress_line(*state_, width(), opt_.color);
  out += "\x1b[K";
}

void ProgressBar::draw() {
  std::string out;
  append_frame(out);
  opt_.write(out);
  shown_ = true;
  last_draw_ = now();
}

// Per-step states carry no evaluation; the bar keeps showing the latest one until the next.
void ProgressBar::set_state(const ProgressState& s) {
  const std::optional<double> eval = state_ ? state_->eval_loss : std::nullopt;
  state_ = s;
  if (!state_->eval_loss) state_->eval_loss = eval;
}

void ProgressBar::update(const ProgressState& s) {
  set_state(s);
  if (!opt_.interactive) return;
  const bool last = s.total > 0 && s.step >= s.total;
  if (shown_ && !last && now() - last_draw_ < opt_.min_interval_seconds) return;
  draw();
}

void ProgressBar::print(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (!opt_.interactive) {
    std::string out(line);
    out += '\n';
    opt_.write(out);
    return;
  }
  std::string out = shown_ ? "\r\x1b[K" : "";
  out += line;
  out += "\n";
  if (state_) append_frame(out);
  opt_.write(out);  // one write: the bar never flashes without its log line
  shown_ = state_.has_value();
  if (shown_) last_draw_ = now();
}

void ProgressBar::print(std::string_view line, const ProgressState& state) {
  set_state(state);
  print(line);
}

void ProgressBar::finish() {
  if (opt_.interactive && state_) {
    std::string out;
    append_frame(out);
    out += '\n';
    opt_.write(out);
  }
  state_.reset();
  shown_ = false;
}

}  // namespace bidora::cli
