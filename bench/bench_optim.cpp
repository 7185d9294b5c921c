// Optimiser step time for 10M trainable parameters (a large LoRA set): fp32 AdamW vs 8-bit
// blockwise AdamW, plus the global grad-norm clip that precedes every step.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <random>
#include <vector>

#include "train/optim_clip.h"
#include "train/optim_optimizer.h"

namespace {

constexpr int64_t kParams = 10'000'000;

struct Fixture {
  std::vector<float> value, grad;
  std::vector<bidora::train::ParamRef> refs;
  Fixture() : value(kParams), grad(kParams) {
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    for (auto& v : value) v = nd(rng);
    for (auto& g : grad) g = nd(rng);
    // 40 tensors of 250k, like the LoRA factors of a small model.
    const int64_t per = kParams / 40;
    for (int64_t i = 0; i < 40; ++i)
      refs.push_back({fmt::format("p{}", i), value.data() + i * per, grad.data() + i * per, per, true});
  }
};

void BM_OptimizerStep(benchmark::State& state, const char* kind) {
  Fixture f;
  bidora::train::AdamWConfig cfg;
  cfg.weight_decay = 0.01;
  auto opt = bidora::train::make_optimizer(kind, f.refs, cfg);
  for (auto _ : state) {
    opt->step(1e-4);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kParams);
}

void BM_ClipGradNorm(benchmark::State& state) {
  Fixture f;
  for (auto _ : state) benchmark::DoNotOptimize(bidora::train::clip_grad_norm(f.refs, 1e9));
  state.SetItemsProcessed(state.iterations() * kParams);
}

BENCHMARK_CAPTURE(BM_OptimizerStep, adamw_torch, "adamw_torch")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_OptimizerStep, adamw_bnb_8bit, "adamw_bnb_8bit")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_ClipGradNorm)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
