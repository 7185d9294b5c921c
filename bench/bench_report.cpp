// Cost of the training run's live reporting, paid once per log entry (the SVG plot, rewritten in
// full each time) or once per optimiser step (the progress line). Both must stay negligible next
// to a training step; the plot is O(entries), so it is timed at realistic and extreme log sizes.
//
//   build-*/bench_report
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "cli/progress_bar.h"
#include "train/metrics_plot.h"

namespace bidora {
namespace {

std::vector<train::PlotPoint> run_log(int64_t n) {
  std::vector<train::PlotPoint> pts;
  for (int64_t i = 1; i <= n; ++i) {
    train::PlotPoint p{i, 0.6 + 2.4 * std::exp(-i / 60.0) + 0.08 * std::sin(i * 1.3),
                       2e-4 * (1.0 - i / (n + 1.0)), std::nullopt};
    if (i % 50 == 0) p.eval_loss = p.loss + 0.1;
    pts.push_back(p);
  }
  return pts;
}

void BM_TrainingPlotSvg(benchmark::State& state) {
  const auto pts = run_log(state.range(0));
  size_t bytes = 0;
  for (auto _ : state) {
    const std::string svg =
        train::training_plot_svg(pts, "bench · dora r=16", {.total_steps = state.range(0)});
    bytes = svg.size();
    benchmark::DoNotOptimize(svg.data());
  }
  state.counters["svg_bytes"] = static_cast<double>(bytes);
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_TrainingPlotSvg)->Arg(100)->Arg(2000)->Arg(20000)->Unit(benchmark::kMicrosecond);

void BM_ProgressLine(benchmark::State& state) {
  cli::ProgressState s;
  s.total = 1000;
  s.loss = 1.234;
  s.lr = 1.9e-4;
  s.tokens_per_second = 512;
  s.elapsed_seconds = 62;
  s.eval_loss = 1.5;
  s.epoch = 0.74;
  for (auto _ : state) {
    s.step = (s.step + 1) % 1000;
    benchmark::DoNotOptimize(cli::render_progress_line(s, static_cast<int>(state.range(0)), true));
  }
}
BENCHMARK(BM_ProgressLine)->Arg(80)->Arg(200);

}  // namespace
}  // namespace bidora

BENCHMARK_MAIN();
