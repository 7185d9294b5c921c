// Dequantisation throughput (bytes/s of float32 output) of the frozen-weight formats on a
// Qwen2.5-0.5B MLP matrix (4864 x 896), scalar vs AVX-512 (dequantisation is single-threaded);
// plus the one-off quantisation cost (multi-threaded).
//   ./bench_quant [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "quant/int8.h"
#include "quant/kernels.h"
#include "quant/nf4.h"

namespace {

using namespace bidora;
using namespace bidora::quant;

constexpr int64_t kRows = 4864, kCols = 896;

const std::vector<float>& weights() {
  static const std::vector<float> w = [] {
    std::mt19937 rng(1);
    std::normal_distribution<float> d(0.0f, 0.02f);
    std::vector<float> v(static_cast<size_t>(kRows * kCols));
    for (float& x : v) x = d(rng);
    return v;
  }();
  return w;
}

const Nf4Matrix& nf4() {
  static const Nf4Matrix m = Nf4Matrix::quantize(weights().data(), kRows, kCols);
  return m;
}
const Int8Matrix& int8_rowwise() {
  static const Int8Matrix m = Int8Matrix::quantize(weights().data(), kRows, kCols);
  return m;
}
const Int8Matrix& int8_block64() {
  static const Int8Matrix m =
      Int8Matrix::quantize(weights().data(), kRows, kCols, {Int8Layout::Blockwise, 64});
  return m;
}

// range(0): kernel (0 scalar, 1 avx512); range(1): rows per call.
template <class M>
void run_dequant(benchmark::State& state, const M& m) {
  const Kernel k = state.range(0) == 0 ? Kernel::Scalar : Kernel::Avx512;
  if (k == Kernel::Avx512 && !avx512_available()) {
    state.SkipWithError("no AVX-512");
    return;
  }
  const int64_t rows_per_call = state.range(1);
  std::vector<float> out(static_cast<size_t>(rows_per_call * kCols));
  for (auto _ : state) {
    for (int64_t r0 = 0; r0 < kRows; r0 += rows_per_call) {
      m.dequantize_rows(r0, std::min(rows_per_call, kRows - r0), out.data(), k);
      benchmark::DoNotOptimize(out.data());
    }
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kRows * kCols * static_cast<int64_t>(sizeof(float)));
  state.SetLabel(kernel_name(k));
}

void BM_DequantNf4(benchmark::State& s) {
  run_dequant(s, nf4());
}
void BM_DequantInt8RowWise(benchmark::State& s) {
  run_dequant(s, int8_rowwise());
}
void BM_DequantInt8Block64(benchmark::State& s) {
  run_dequant(s, int8_block64());
}

// Whole matrix in one call (kRows rows) and in GEMM-sized tiles of 256 rows.
#define DEQUANT_ARGS                  \
  ArgsProduct({{0, 1}, {kRows, 256}}) \
      ->ArgNames({"avx512", "rows"})  \
      ->UseRealTime()                 \
      ->Unit(benchmark::kMillisecond)
BENCHMARK(BM_DequantNf4)->DEQUANT_ARGS;
BENCHMARK(BM_DequantInt8RowWise)->DEQUANT_ARGS;
BENCHMARK(BM_DequantInt8Block64)->DEQUANT_ARGS;

void BM_QuantizeNf4DoubleQuant(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(Nf4Matrix::quantize(weights().data(), kRows, kCols));
  state.SetItemsProcessed(state.iterations() * kRows * kCols);
}
BENCHMARK(BM_QuantizeNf4DoubleQuant)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_QuantizeInt8RowWise(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(Int8Matrix::quantize(weights().data(), kRows, kCols));
  state.SetItemsProcessed(state.iterations() * kRows * kCols);
}
BENCHMARK(BM_QuantizeInt8RowWise)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
