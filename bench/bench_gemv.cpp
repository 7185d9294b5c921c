// A decode step's products (one token, n = 1) on the Qwen2.5-0.5B shapes: the GEMV path
// (model/gemv.h: bf16 widened in registers, NF4 / int8 dequantised a few rows at a time into L1)
// against the training path (linear_forward: a tile of rows expanded to float32, then sgemm).
// Both are bound by memory bandwidth over the weights; "GB/s" counts the weight bytes as stored.
//
//   build-*/bench_gemv [--benchmark_filter=bf16] [--benchmark_repetitions=5]
#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "bench_fill.h"
#include "model/frozen_matrix.h"
#include "model/gemv.h"
#include "model/linear.h"

namespace bidora {
namespace {

// (rows, cols): q/o [896, 896], k/v [128, 896], gate/up [4864, 896], down [896, 4864], lm_head.
const std::map<std::string, std::pair<int64_t, int64_t>> kShapes = {{"kv", {128, 896}},
                                                                    {"q_o", {896, 896}},
                                                                    {"gate_up", {4864, 896}},
                                                                    {"down", {896, 4864}},
                                                                    {"lm_head", {151936, 896}}};

using bench::filled;

const FrozenMatrix& matrix(const std::string& shape, WeightStorage st) {
  static std::map<std::pair<std::string, int>, std::unique_ptr<FrozenMatrix>> cache;
  auto& m = cache[{shape, static_cast<int>(st)}];
  if (!m) {
    const auto [rows, cols] = kShapes.at(shape);
    m = std::make_unique<FrozenMatrix>(
        FrozenMatrix::from_f32(filled(static_cast<size_t>(rows * cols), 7), rows, cols, st));
  }
  return *m;
}

void run(benchmark::State& state, const std::string& shape, WeightStorage st, bool gemv) {
  const FrozenMatrix& W = matrix(shape, st);
  const std::vector<float> x = filled(static_cast<size_t>(W.cols()), 3);
  std::vector<float> y(static_cast<size_t>(W.rows()));
  WeightTile tile;
  for (auto _ : state) {
    if (gemv) {
      gemv_forward(x.data(), 1, W, nullptr, y.data());
    } else {
      linear_forward(x.data(), 1, W, nullptr, y.data(), tile);
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(W.bytes()) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

const bool registered = [] {
  for (const auto& [shape, dims] : kShapes)
    for (WeightStorage st : {WeightStorage::BF16, WeightStorage::NF4, WeightStorage::INT8})
      for (bool gemv : {true, false}) {
        const std::string name = std::string(gemv ? "Gemv/" : "TileSgemm/") + storage_name(st) + "/" + shape;
        benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) { run(s, shape, st, gemv); })
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime();
      }
  return true;
}();

}  // namespace
}  // namespace bidora

BENCHMARK_MAIN();
