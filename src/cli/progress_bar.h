#pragma once
// The live progress line of `bidora train`, in the style of tqdm / Rich:
//
//    37% |███████▍            |  37/100 [01:02<01:45, 512 tok/s] loss 1.234 lr 1.9e-4 ep 0.74
//
// render_progress_line is a pure function (testable without a terminal). ProgressBar owns the
// terminal behaviour: on a TTY it redraws that line in place ('\r' + clear to end of line) at most
// every 100 ms and prints log lines permanently above it; anywhere else (pipes, CI logs, files) it
// prints only the log lines, so captured output holds no control characters or bar frames.
//
//   ProgressBar bar;                                    // stdout; TTY, width and colour detected
//   ... each optimiser step:  bar.update(progress_state(entry));
//   ... each log entry:       bar.print(line, progress_state(entry));
//   bar.finish();                                       // also run by the destructor
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace bidora::train {
struct TrainLog;
}

namespace bidora::cli {

struct ProgressState {
  int64_t step = 0, total = 0;  // total <= 0: unknown (no bar, percentage or ETA)
  double loss = std::numeric_limits<double>::quiet_NaN();
  double lr = std::numeric_limits<double>::quiet_NaN();
  double tokens_per_second = 0;  // <= 0 or non-finite: shown as "?"
  double elapsed_seconds = 0;
  std::optional<double> eval_loss;  // latest evaluation, shown when set
  double epoch = 0;
};

// The state a trainer log entry describes.
ProgressState progress_state(const train::TrainLog& e);

// One line, at most `terminal_width` display columns (colour codes take none). Fields are dropped
// from the right (epoch, lr, eval, loss, the rate, the times, the counter) to keep the bar at least
// 10 cells wide; the bar is at most 60 cells. `color` adds ANSI colour to the percentage and bar.
std::string render_progress_line(const ProgressState& s, int terminal_width, bool color);

// Elapsed / remaining time as tqdm shows it: "00:45", "01:02", "1:02:03"; "?" if negative or
// not finite.
std::string format_clock(double seconds);

// Columns of the terminal `out` is (TIOCGWINSZ), else $COLUMNS, else 100.
int terminal_width(std::FILE* out);

struct ProgressBarOptions {
  std::function<void(std::string_view)> write;  // the sink; every call is one complete update
  bool interactive = false;                     // redraw a live line; false: print only the permanent lines
  bool color = false;
  int width = 0;                      // columns; 0: $COLUMNS, else 100
  double min_interval_seconds = 0.1;  // between two redraws by update()
  std::function<double()> clock;      // monotonic seconds; unset: std::chrono::steady_clock
};

class ProgressBar {
 public:
  // On `out`: interactive when it is a terminal (and TERM is not "dumb"), coloured as tables are
  // (cli::style_for), width asked from the terminal at each redraw so resizes are followed.
  explicit ProgressBar(std::FILE* out = stdout);
  explicit ProgressBar(ProgressBarOptions options);
  ~ProgressBar();  // finish(): an exception unwinding through the caller leaves a clean line
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // The latest state (a state without eval_loss keeps the previous one's: per-step states come
  // without evaluations). Interactive: redrawn if min_interval has passed since the last redraw,
  // or if this is the last step (so 100% is always shown). Otherwise: nothing is written.
  void update(const ProgressState& s);
  // A permanent line (without its '\n'). Interactive: the bar is cleared, the line printed and
  // the bar drawn again below it (with `state` when given).
  void print(std::string_view line);
  void print(std::string_view line, const ProgressState& state);
  // Interactive: draws the final state and moves to a fresh line, leaving the bar on screen.
  // Safe to call more than once; a later update() starts a new bar.
  void finish();

  bool interactive() const { return opt_.interactive; }

 private:
  void set_state(const ProgressState& s);
  void draw();
  void append_frame(std::string& out) const;
  int width() const;
  double now() const;

  ProgressBarOptions opt_;
  std::FILE* out_ = nullptr;  // for the terminal width, when constructed on a FILE*
  std::optional<ProgressState> state_;
  bool shown_ = false;  // a bar line is on screen, the cursor at its end
  double last_draw_ = 0;
};

}  // namespace bidora::cli
