// One adapted Linear's forward + checkpoint replay + backward, LoRA against DoRA, on the
// Qwen2.5-0.5B shapes that dominate a step (gate/up: 896 → 4864, down: 4864 → 896) with
// T = 2048 tokens (4 × 512), r = 16, dropout 0.05, bf16 weights: the DoRA / LoRA ratio of a
// training step is the ratio of these times. The pieces DoRA adds are timed on their own too.
//
//   build/bench_dora [--benchmark_filter=Layer]
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "adapters/dropout.h"
#include "adapters/dropped_product.h"
#include "adapters/lora_layer.h"
#include "bench_fill.h"
#include "model/frozen_matrix.h"
#include "model/linear.h"

namespace bidora {
namespace {

constexpr int64_t kTokens = 2048, kRank = 16;
constexpr float kDropout = 0.05f;

using bench::filled;

struct LayerCase {
  int64_t in, out;
  WeightTile tile;  // before `layer`, whose constructor uses it
  FrozenMatrix W;
  LoraLayer layer;
  std::vector<float> x, y, dy, dx;
  LoraSaved saved;
  AdapterScratch scratch;

  static AdapterConfig config(bool dora) {
    AdapterConfig cfg;
    cfg.method = dora ? LoraVariant::DoRA : LoraVariant::LoRA;
    cfg.r = kRank;
    cfg.alpha = 32;
    cfg.use_rslora = true;
    cfg.dropout = kDropout;
    return cfg;
  }
  LayerCase(int64_t in_, int64_t out_, bool dora, bool bf16_compute)
      : in(in_),
        out(out_),
        tile(),
        W(FrozenMatrix::from_f32(filled(out_ * in_, 3, 0.05f), out_, in_, WeightStorage::BF16)),
        layer(config(dora), W, 0, LinearKind::Up, 7, tile),
        x(filled(kTokens * in_, 4)),
        y(kTokens * out_),
        dy(filled(kTokens * out_, 5, 0.01f)),
        dx(kTokens * in_) {
    tile.set_bf16_compute(bf16_compute);
    layer.B = filled(layer.B.size(), 6, 0.01f);  // a trained adapter, not the identity
  }
  // Forward, the checkpoint replay's forward, backward: what one layer costs in a step.
  void step() {
    AdapterMode mode{true, DropoutKey{42, 1, 0}};
    for (int pass = 0; pass < 2; ++pass) {
      linear_forward(x.data(), kTokens, W, nullptr, y.data(), tile);
      layer.forward(x.data(), kTokens, W, y.data(), mode, saved, scratch, tile);
    }
    layer.backward(x.data(), dy.data(), kTokens, W, saved, dx.data(), BackwardWants{}, scratch, tile);
  }
};

// Args: in, out, dora, bf16 compute.
void BM_LayerStep(benchmark::State& state) {
  LayerCase c(state.range(0), state.range(1), state.range(2) != 0, state.range(3) != 0);
  for (auto _ : state) {
    c.step();
    benchmark::DoNotOptimize(c.dx.data());
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(kTokens), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_LayerStep)
    ->ArgNames({"in", "out", "dora", "bf16c"})
    ->Args({896, 4864, 0, 1})
    ->Args({896, 4864, 1, 1})
    ->Args({4864, 896, 0, 1})
    ->Args({4864, 896, 1, 1})
    ->Args({896, 4864, 0, 0})
    ->Args({896, 4864, 1, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// DoRA's pieces on their own. Args: in, out (and for the products: bf16 compute, whose inputs are
// rounded to bf16 and multiplied by AVX512_BF16 dot products where built).
struct Pieces {
  int64_t in, out;
  FrozenMatrix W;
  std::vector<float> x, c, dy, scale;
  DroppedSet set;
  PanelScratch transposed;
  std::vector<float> acc;
  WeightTile tile;
  uint64_t stream = dropout_stream(DropoutKey{42, 1, 0}, 0, LinearKind::Up);
  Pieces(int64_t in_, int64_t out_)
      : in(in_),
        out(out_),
        W(FrozenMatrix::from_f32(filled(out_ * in_, 3, 0.05f), out_, in_, WeightStorage::BF16)),
        x(filled(kTokens * in_, 4)),
        c(kTokens * out_),
        dy(filled(kTokens * out_, 5)),
        scale(filled(out_, 6)) {
    find_dropped(kTokens, in, kDropout, stream, 0, set);
  }
};

void BM_FindDropped(benchmark::State& state) {
  Pieces p(state.range(0), state.range(1));
  for (auto _ : state) {
    p.set.valid = false;  // evaluate the mask again (a set of the same key is kept otherwise)
    find_dropped(kTokens, p.in, kDropout, p.stream, 0, p.set);
  }
}
void BM_DroppedTimesWt(benchmark::State& state) {
  Pieces p(state.range(0), state.range(1));
  p.tile.set_bf16_compute(state.range(2) != 0);
  for (auto _ : state) dropped_times_wt(p.x.data(), p.set, p.W, p.tile, p.transposed, p.c.data(), p.out);
  state.counters["GFLOP/s"] = benchmark::Counter(2e-9 * static_cast<double>(p.set.nnz()) * p.out,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}
void BM_SampledDyTimesW(benchmark::State& state) {
  Pieces p(state.range(0), state.range(1));
  p.tile.set_bf16_compute(state.range(2) != 0);
  for (auto _ : state)
    sampled_dy_times_w(p.dy.data(), p.scale.data(), p.set, p.W, p.tile, p.transposed, p.acc);
  state.counters["GFLOP/s"] = benchmark::Counter(2e-9 * static_cast<double>(p.set.nnz()) * p.out,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}
void BM_DenseBf16Gemm(benchmark::State& state) {  // the frozen product the pieces compare with
  Pieces p(state.range(0), state.range(1));
  WeightTile tile;
  tile.set_bf16_compute(true);
  for (auto _ : state) linear_forward(p.x.data(), kTokens, p.W, nullptr, p.c.data(), tile);
  state.counters["GFLOP/s"] =
      benchmark::Counter(2e-9 * kTokens * p.in * p.out, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_FindDropped)->Args({896, 4864})->Args({4864, 896})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DroppedTimesWt)
    ->ArgsProduct({{896}, {4864}, {0, 1}})
    ->ArgsProduct({{4864}, {896}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_SampledDyTimesW)
    ->ArgsProduct({{896}, {4864}, {0, 1}})
    ->ArgsProduct({{4864}, {896}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_DenseBf16Gemm)
    ->Args({896, 4864})
    ->Args({4864, 896})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace bidora

BENCHMARK_MAIN();
