#pragma once
// A training run as one self-contained SVG file (any browser opens it, no scripts or fonts to
// fetch): top panel the training loss (line) and the evaluation loss (dashed line + markers) per
// optimiser step, bottom panel the learning rate, sharing the step axis. The trainer rewrites it
// after every log entry as <output>/training_plot.svg, so a run can be watched by reloading.
//
//   write_file_atomic(out / "training_plot.svg",
//                     training_plot_svg(plot_points_from_json(log_history), training_plot_title(cfg),
//                                       {.total_steps = total_steps}));
//
// Robust to what real runs produce: no entries yet ("no data yet"), a single entry (drawn as a
// marker), NaN/inf values (skipped and counted in the subtitle), constant series, and tens of
// thousands of entries (decimated to at most `max_points` per series keeping each bucket's minimum
// and maximum, coordinates printed to 0.1 px: 20000 logged steps make a file of about 60 KB).
#include <nlohmann/json_fwd.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace bidora {
struct TrainConfig;
}

namespace bidora::train {

struct PlotPoint {
  int64_t step = 0;
  double loss = 0;  // mean training loss of the logging window
  double lr = 0;    // learning rate of the step
  std::optional<double> eval_loss;
};

struct PlotOptions {
  int64_t total_steps = 0;    // > 0: the step axis spans the whole run, so progress is visible
  int64_t max_points = 2000;  // per series, after decimation (>= 4)
};

// The SVG document (UTF-8). `title` is the first line (XML-escaped here; invalid UTF-8 and control
// characters are replaced), a second line summarises the run: last step, last loss, best eval loss.
std::string training_plot_svg(std::span<const PlotPoint> points, const std::string& title,
                              const PlotOptions& options = {});

// The plot's fields of metrics.jsonl entries: step, loss, learning_rate and eval_loss. A missing or
// null value becomes NaN (nlohmann writes a NaN loss as null, so a resumed log holds nulls); no
// eval_loss key means no evaluation, a null one an evaluation that was NaN. An entry without an
// integer step is an Error naming it.
std::vector<PlotPoint> plot_points_from_json(std::span<const nlohmann::ordered_json> entries);

// "<model> · <method> r=<r> alpha=<alpha>[ rsLoRA]", the model as the last component of its path
// or Hugging Face id: "tiny-qwen2 · dora r=8 alpha=16 rsLoRA".
std::string training_plot_title(const TrainConfig& cfg);

// A value interval of a plot axis (shared with bidora analyze's plot); `empty` until the first
// value is added.
struct ValueRange {
  double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();
  bool empty() const { return lo > hi; }
  void add(double v) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
};

// Axis ticks: multiples of step = {1, 2, 5} x 10^k inside [lo, hi], about `target` of them.
// Exposed for tests; lo <= hi, both finite. lo == hi yields the single tick lo; a range a double
// cannot subdivide (wider than ~1e308, or denormal) yields step 0 and the ticks {lo, hi}.
struct Ticks {
  double step = 1;
  std::vector<double> values;
};
Ticks nice_ticks(double lo, double hi, int target = 6);

// A tick label with just the digits the step resolves: (1.5, step 0.5) -> "1.5", (1, 0.5) -> "1.0",
// (200, 100) -> "200"; small or huge steps in short scientific form: (1.5e-4, 5e-5) -> "1.5e-4".
// Step 0 (or non-finite input): 4 significant digits.
std::string format_tick(double value, double step);

}  // namespace bidora::train
