// The training progress line: exact renderings at known states, the width contract at every
// terminal width from 0 to 200 columns, eighth-block bar fractions, clock formats, and what
// ProgressBar writes on a terminal (throttled redraws, permanent lines) and off one (log lines only).
#include "cli/progress_bar.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cli/table.h"
#include "train/trainer.h"

namespace bidora::cli {
namespace {

ProgressState state(int64_t step, int64_t total) {
  ProgressState s;
  s.step = step;
  s.total = total;
  s.loss = 1.2341;
  s.lr = 1.93e-4;
  s.tokens_per_second = 512.4;
  s.elapsed_seconds = 62;
  s.epoch = 0.74;
  return s;
}

// The bar between the two '|' of a line.
std::string bar_of(const std::string& line) {
  const size_t a = line.find('|'), b = line.rfind('|');
  return line.substr(a + 1, b - a - 1);
}

TEST(FormatClock, MinutesSecondsThenHours) {
  EXPECT_EQ(format_clock(0), "00:00");
  EXPECT_EQ(format_clock(45), "00:45");
  EXPECT_EQ(format_clock(44.6), "00:45");  // rounded, not truncated
  EXPECT_EQ(format_clock(62), "01:02");
  EXPECT_EQ(format_clock(3599.4), "59:59");
  EXPECT_EQ(format_clock(3600), "1:00:00");
  EXPECT_EQ(format_clock(3723), "1:02:03");
  EXPECT_EQ(format_clock(100 * 3600 + 5), "100:00:05");
  EXPECT_EQ(format_clock(-1), "?");
  EXPECT_EQ(format_clock(NAN), "?");
  EXPECT_EQ(format_clock(INFINITY), "?");
}

TEST(ProgressLine, ExactLineAt81Columns) {
  // 37 of 100 steps in 62 s: 1.676 s/step, 63 steps left -> 105.6 s = 01:46. The counter is padded
  // to the width of the total (so the bar does not shrink when step gains a digit). The fields take
  // 61 columns and the frame 8, leaving a 12-cell bar; 37% of it is 35.5 eighths: 4 full cells and
  // U+258D (three eighths), then 7 blank cells.
  const std::string line = render_progress_line(state(37, 100), 81, false);
  EXPECT_EQ(line, " 37% |████▍       |  37/100 [01:02<01:46, 512 tok/s] loss 1.234 lr 1.9e-4 ep 0.74");
  EXPECT_EQ(display_width(line), 81u);
  // One column less: an 11-cell bar, 32.6 eighths = 4 full cells.
  EXPECT_EQ(render_progress_line(state(37, 100), 80, false),
            " 37% |████       |  37/100 [01:02<01:46, 512 tok/s] loss 1.234 lr 1.9e-4 ep 0.74");
}

TEST(ProgressLine, BarFractionsInEighths) {
  // 200 columns: the bar reaches its 60-cell maximum.
  auto cells = [](int64_t step, int64_t total) {
    return bar_of(render_progress_line(state(step, total), 200, false));
  };
  EXPECT_EQ(cells(0, 100), std::string(60, ' '));
  std::string half;
  for (int i = 0; i < 30; ++i) half += "█";
  EXPECT_EQ(cells(50, 100), half + std::string(30, ' '));
  std::string full;
  for (int i = 0; i < 60; ++i) full += "█";
  EXPECT_EQ(cells(100, 100), full);
  EXPECT_EQ(cells(150, 100), full);  // past the end: clamped
  // 1/480 of the bar is one eighth of a cell; 7/480 seven eighths; 9/480 one cell and an eighth.
  EXPECT_EQ(cells(1, 480), "▏" + std::string(59, ' '));
  EXPECT_EQ(cells(7, 480), "▉" + std::string(59, ' '));
  EXPECT_EQ(cells(9, 480), "█▏" + std::string(58, ' '));
  EXPECT_EQ(cells(479, 480), half + half.substr(0, 29 * 3) + "▉");
  // 37% of a 20-cell bar is 7.4 cells: 7 full and three eighths.
  ProgressState s = state(37, 100);
  s.eval_loss = 1.456;
  const std::string line = render_progress_line(s, 100, false);  // 72 columns of fields: a 20-cell bar
  EXPECT_EQ(bar_of(line), "███████▍" + std::string(12, ' ')) << line;
}

TEST(ProgressLine, PercentagesAndFieldsAtZeroHalfAndFull) {
  for (int width : {40, 80, 200}) {
    const std::string zero = render_progress_line(state(0, 100), width, false);
    const std::string half = render_progress_line(state(50, 100), width, false);
    const std::string full = render_progress_line(state(100, 100), width, false);
    EXPECT_TRUE(zero.starts_with("  0% |")) << zero;
    EXPECT_TRUE(half.starts_with(" 50% |")) << half;
    EXPECT_TRUE(full.starts_with("100% |")) << full;
    for (const std::string& l : {zero, half, full}) {
      EXPECT_LE(display_width(l), static_cast<size_t>(width)) << l;
      EXPECT_GE(display_width(bar_of(l)), 10u) << l;  // fields give way before the bar does
    }
    if (width >= 80) {
      EXPECT_NE(zero.find("  0/100 [01:02<?, 512 tok/s]"), std::string::npos) << zero;  // no ETA yet
      EXPECT_NE(half.find(" 50/100 [01:02<01:02, 512 tok/s]"), std::string::npos) << half;
      EXPECT_NE(full.find("100/100 [01:02<00:00, 512 tok/s]"), std::string::npos) << full;
    }
  }
  // 99.9% is not yet 100%.
  EXPECT_TRUE(render_progress_line(state(999, 1000), 80, false).starts_with(" 99% |"));
}

TEST(ProgressLine, DropsFieldsFromTheRightWhenNarrow) {
  ProgressState s = state(37, 100);
  s.eval_loss = 1.456;
  s.tokens_per_second = 12345;
  const std::string wide = render_progress_line(s, 200, false);
  EXPECT_EQ(wide, " 37% |" + bar_of(wide) +
                      "|  37/100 [01:02<01:46, 12.3k tok/s] loss 1.234 eval 1.456 lr 1.9e-4 ep 0.74");
  EXPECT_EQ(display_width(bar_of(wide)), 60u);
  EXPECT_EQ(render_progress_line(s, 40, false),
            " 37% |" + bar_of(render_progress_line(s, 40, false)) + "|  37/100 [01:02<01:46]");
  // 30 columns: only the counter still fits beside a bar of at least 10 cells (here 15; 37% of it
  // is 44.4 eighths: 5 full cells and a half).
  EXPECT_EQ(render_progress_line(s, 30, false), " 37% |█████▌" + std::string(9, ' ') + "|  37/100");
  // Then the bar alone, shrinking: 5 cells (14.8 eighths), 1 cell (2.96 eighths), none.
  EXPECT_EQ(render_progress_line(s, 12, false), " 37% |█▊   |");
  EXPECT_EQ(render_progress_line(s, 8, false), " 37% |▎|");
  EXPECT_EQ(render_progress_line(s, 7, false), " 37%");
  EXPECT_EQ(render_progress_line(s, 3, false), "");
  EXPECT_EQ(render_progress_line(s, -5, false), "");
}

TEST(ProgressLine, NeverExceedsTheWidth) {
  ProgressState s = state(1234, 98765);
  s.eval_loss = 2.5;
  s.tokens_per_second = 2.5e6;
  s.elapsed_seconds = 4000;
  for (bool color : {false, true})
    for (int w = 0; w <= 200; ++w) {
      const std::string l = render_progress_line(s, w, color);
      ASSERT_LE(display_width(l), static_cast<size_t>(w)) << w << ": " << l;
      if (w >= 20) {
        EXPECT_TRUE(l.starts_with(color ? "\x1b[1m  1%\x1b[0m |" : "  1% |")) << l;
      }
    }
}

TEST(ProgressLine, ColorOnlyWhenAsked) {
  const std::string plain = render_progress_line(state(50, 100), 80, false);
  const std::string colored = render_progress_line(state(50, 100), 80, true);
  EXPECT_EQ(plain.find('\x1b'), std::string::npos);
  EXPECT_NE(colored.find("\x1b[36m█"), std::string::npos) << colored;  // cyan while running
  EXPECT_EQ(display_width(colored), display_width(plain));
  EXPECT_NE(render_progress_line(state(100, 100), 80, true).find("\x1b[32m█"),
            std::string::npos);  // green done
}

TEST(ProgressLine, UnknownTotalAndOddValues) {
  ProgressState s = state(37, 0);  // total unknown: no percentage, bar or ETA
  const std::string fields = "step 37 [01:02, 512 tok/s] loss 1.234 lr 1.9e-4 ep 0.74";
  EXPECT_EQ(render_progress_line(s, 80, false), fields);
  EXPECT_EQ(render_progress_line(s, static_cast<int>(fields.size()), false), fields);
  EXPECT_EQ(render_progress_line(s, 20, false), "step 37 [01:02]");
  s = state(3, 10);
  s.loss = NAN;
  s.tokens_per_second = 0;
  s.lr = 2e-5;
  EXPECT_EQ(
      render_progress_line(s, 81, false),  // 53 columns of fields, a 20-cell bar: 6 full cells
      " 30% |██████" + std::string(14, ' ') + "|  3/10 [01:02<02:25, ? tok/s] loss nan lr 2e-5 ep 0.74");
}

TEST(ProgressLine, FromATrainerLogEntry) {
  train::TrainLog e;
  e.step = 5;
  e.total_steps = 20;
  e.epoch = 1.25;
  e.loss = 0.5;
  e.lr = 1e-3;
  e.tokens_per_second = 100;
  e.elapsed_seconds = 10;
  e.val_loss = 0.75;
  const ProgressState s = progress_state(e);
  EXPECT_EQ(s.step, 5);
  EXPECT_EQ(s.total, 20);
  EXPECT_EQ(s.loss, 0.5);
  EXPECT_EQ(s.lr, 1e-3);
  EXPECT_EQ(s.tokens_per_second, 100);
  EXPECT_EQ(s.elapsed_seconds, 10);
  EXPECT_EQ(s.eval_loss, 0.75);
  EXPECT_EQ(s.epoch, 1.25);
}

struct Capture {
  std::vector<std::string> writes;
  std::string all() const {
    std::string s;
    for (const auto& w : writes) s += w;
    return s;
  }
};

ProgressBarOptions options(Capture& cap, bool interactive, double& clock) {
  ProgressBarOptions o;
  o.write = [&cap](std::string_view s) { cap.writes.emplace_back(s); };
  o.interactive = interactive;
  o.width = 61;  // lines of at most 60 columns
  o.clock = [&clock] { return clock; };
  return o;
}

TEST(ProgressBar, OffATerminalWritesOnlyTheLogLines) {
  Capture cap;
  double t = 0;
  {
    ProgressBar bar(options(cap, false, t));
    EXPECT_FALSE(bar.interactive());
    for (int i = 1; i <= 10; ++i) {
      t += 1;
      bar.update(state(i, 10));
      if (i % 5 == 0) bar.print(fmt::format("step {}/10 | loss 1.2341\n", i), state(i, 10));
    }
    bar.finish();
    bar.print("done");
  }  // the destructor adds nothing either
  EXPECT_EQ(cap.all(), "step 5/10 | loss 1.2341\nstep 10/10 | loss 1.2341\ndone\n");
}

TEST(ProgressBar, OnATerminalRedrawsInPlaceAtMostEvery100ms) {
  Capture cap;
  double t = 0;
  ProgressBar bar(options(cap, true, t));
  auto line = [](int64_t step) { return render_progress_line(state(step, 10), 60, false); };
  bar.update(state(1, 10));  // the first state is drawn at once
  ASSERT_EQ(cap.writes.size(), 1u);
  EXPECT_EQ(cap.writes[0], "\r" + line(1) + "\x1b[K");
  t = 0.05;
  bar.update(state(2, 10));  // 50 ms later: skipped
  EXPECT_EQ(cap.writes.size(), 1u);
  t = 0.11;
  bar.update(state(3, 10));
  ASSERT_EQ(cap.writes.size(), 2u);
  EXPECT_EQ(cap.writes[1], "\r" + line(3) + "\x1b[K");
  // A log line: clear the bar, print the line, draw the bar below it, in one write.
  t = 0.12;
  bar.print("step 4/10 | loss 1.2341", state(4, 10));
  ASSERT_EQ(cap.writes.size(), 3u);
  EXPECT_EQ(cap.writes[2], "\r\x1b[Kstep 4/10 | loss 1.2341\n\r" + line(4) + "\x1b[K");
  t = 0.13;
  bar.update(state(9, 10));   // throttled (the print just drew)
  bar.update(state(10, 10));  // the last step is always drawn
  ASSERT_EQ(cap.writes.size(), 4u);
  EXPECT_EQ(cap.writes[3], "\r" + line(10) + "\x1b[K");
  bar.finish();  // final state stays on screen, cursor on the next line
  ASSERT_EQ(cap.writes.size(), 5u);
  EXPECT_EQ(cap.writes[4], "\r" + line(10) + "\x1b[K\n");
  bar.finish();  // idempotent
  bar.print("Trained 10 steps");
  ASSERT_EQ(cap.writes.size(), 6u);
  EXPECT_EQ(cap.writes[5], "Trained 10 steps\n");  // nothing to clear any more
}

TEST(ProgressBar, KeepsTheLatestEvalLossAcrossSteps) {
  Capture cap;
  double t = 0;
  ProgressBarOptions o = options(cap, true, t);
  o.width = 121;  // room for every field
  ProgressBar bar(o);
  ProgressState evaluated = state(5, 10);
  evaluated.eval_loss = 1.456;
  bar.print("step 5/10 | eval loss 1.456", evaluated);
  t = 1;
  bar.update(state(6, 10));  // a per-step state: no evaluation of its own
  ASSERT_EQ(cap.writes.size(), 2u);
  EXPECT_NE(cap.writes[1].find(" eval 1.456 "), std::string::npos) << cap.writes[1];
  ProgressState later = state(7, 10);
  later.eval_loss = 1.3;
  t = 2;
  bar.update(later);
  EXPECT_NE(cap.writes[2].find(" eval 1.300 "), std::string::npos) << cap.writes[2];
  bar.finish();
  t = 3;
  bar.update(state(1, 10));  // a new bar after finish() starts without one
  EXPECT_EQ(cap.writes.back().find("eval"), std::string::npos) << cap.writes.back();
}

TEST(ProgressBar, DestructorLeavesAFreshLine) {
  Capture cap;
  double t = 0;
  {
    ProgressBar bar(options(cap, true, t));
    bar.update(state(3, 10));
  }  // e.g. unwinding from a training error: the error message starts on its own line
  ASSERT_EQ(cap.writes.size(), 2u);
  EXPECT_TRUE(cap.writes.back().ends_with("\x1b[K\n"));
}

TEST(TerminalWidth, FallsBackToColumnsThen100) {
  // A pipe is no terminal.
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  const char* old = std::getenv("COLUMNS");
  const std::string saved = old ? old : "";
  ::setenv("COLUMNS", "123", 1);
  EXPECT_EQ(terminal_width(f), 123);
  ::setenv("COLUMNS", "abc", 1);
  EXPECT_EQ(terminal_width(f), 100);
  ::unsetenv("COLUMNS");
  EXPECT_EQ(terminal_width(f), 100);
  EXPECT_EQ(terminal_width(nullptr), 100);
  if (old) ::setenv("COLUMNS", saved.c_str(), 1);
  std::fclose(f);
  // ProgressBar on a file: not interactive, the log line only.
  std::FILE* g = std::tmpfile();
  ASSERT_NE(g, nullptr);
  {
    ProgressBar bar(g);
    EXPECT_FALSE(bar.interactive());
    bar.update(state(1, 2));
    bar.print("line");
  }
  std::fseek(g, 0, SEEK_SET);
  char buf[64] = {};
  EXPECT_EQ(std::fread(buf, 1, sizeof buf - 1, g), 5u);
  EXPECT_STREQ(buf, "line\n");
  std::fclose(g);
}

}  // namespace
}  // namespace bidora::cli
