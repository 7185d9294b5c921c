// BiDoRA's direction orthogonality regulariser (value + A/B gradients) at Qwen2.5-0.5B shapes
// (hidden 896, intermediate 4864, 2 KV heads of 64, r = 16 on all seven linears): one decoder
// layer, the unit the trainer pays 24 times per optimiser step, and each module alone.
// The machine may be shared: run with OMP_WAIT_POLICY=passive when other jobs are busy (spinning
// OpenMP threads then cost 3-5x), and compare with BM_ReferenceGemm, the bare sgemm rate.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "adapters/adapter_set.h"
#include "adapters/direction_regulariser.h"
#include "core/backend.h"

namespace {

using namespace bidora;

constexpr int64_t kHidden = 896, kInter = 4864, kKv = 128, kRank = 16;

int64_t out_of(LinearKind k) {
  switch (k) {
    case LinearKind::K:
    case LinearKind::V:
      return kKv;
    case LinearKind::Gate:
    case LinearKind::Up:
      return kInter;
    default:
      return kHidden;
  }
}
int64_t in_of(LinearKind k) {
  return k == LinearKind::Down ? kInter : kHidden;
}

struct Model {
  std::vector<LayerWeights> layers;
  std::unique_ptr<AdapterSet> set;
  RegulariserScratch scratch;
};

// Built once per storage type: NF4 quantisation of the 4864-wide matrices takes a moment.
Model& model(WeightStorage storage) {
  static std::map<WeightStorage, std::unique_ptr<Model>> cache;
  auto& m = cache[storage];
  if (m) return *m;
  m = std::make_unique<Model>();
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  m->layers.resize(1);
  for (int k = 0; k < kNumLinearKinds; ++k) {
    const auto kind = static_cast<LinearKind>(k);
    std::vector<float> w(static_cast<size_t>(out_of(kind) * in_of(kind)));
    for (float& e : w) e = nd(rng);
    m->layers[0].linear[k] = FrozenMatrix::from_f32(std::move(w), out_of(kind), in_of(kind), storage);
  }
  AdapterConfig cfg;
  cfg.r = kRank;
  cfg.alpha = 32;
  cfg.targets = {LinearKind::Q,    LinearKind::K,  LinearKind::V,   LinearKind::O,
                 LinearKind::Gate, LinearKind::Up, LinearKind::Down};
  m->set = std::make_unique<AdapterSet>(cfg, m->layers, 1);
  // A trained-looking B (the cost does not depend on the values, but B = 0 would hide nothing).
  std::normal_distribution<float> nb(0.0f, 1e-3f);
  for (LoraLayer* l : m->set->all())
    for (float& b : l->B) b = nb(rng);
  return *m;
}

// What the implementation does: W + sBA and the Gram; for the gradient, with out <= in, the
// low-rank products (D Aᵀ, G·P, G·Q, Zᵀ D), with in < out, D·G and the dA, dB GEMMs.
double multiply_adds(int64_t out, int64_t in, bool grads) {
  const double o = static_cast<double>(out), mn = o * static_cast<double>(in);
  const double value = mn * kRank + mn * static_cast<double>(std::min(out, in));
  if (!grads) return value;
  return value +
         (out <= in ? 3 * mn * kRank + 2 * o * o * kRank : mn * static_cast<double>(in) + 2 * mn * kRank);
}

// Args: storage (0 = bf16, 1 = nf4), gradients (0/1).
void BM_RegulariserLayer(benchmark::State& state) {
  const auto storage = state.range(0) == 0 ? WeightStorage::BF16 : WeightStorage::NF4;
  const bool grads = state.range(1) != 0;
  Model& m = model(storage);
  for (auto _ : state)
    benchmark::DoNotOptimize(direction_regulariser(*m.set, m.layers, 1e-5, grads, m.scratch));
  double flops = 0;
  for (int k = 0; k < kNumLinearKinds; ++k) {
    const auto kind = static_cast<LinearKind>(k);
    flops += 2 * multiply_adds(out_of(kind), in_of(kind), grads);
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(std::string(storage_name(storage)) + (grads ? " value+grad" : " value"));
}

// Arg: LinearKind. Value + gradient over bf16 weights.
void BM_RegulariserModule(benchmark::State& state) {
  const auto kind = static_cast<LinearKind>(state.range(0));
  Model& m = model(WeightStorage::BF16);
  LoraLayer& l = *m.set->find(0, kind);
  for (auto _ : state)
    benchmark::DoNotOptimize(orthogonality_penalty(l, m.layers[0].W(kind), 1e-5 / 7, true, m.scratch));
  state.counters["GFLOP/s"] = benchmark::Counter(
      2 * multiply_adds(out_of(kind), in_of(kind), true) * 1e-9 * double(state.iterations()),
      benchmark::Counter::kIsRate);
  state.SetLabel(linear_name(kind));
}

// The bare GEMM the down_proj Gram costs (D Dᵀ, 896 × 896 over 4864), for comparison with the
// machine's sgemm throughput at the time of the run (the machine is shared).
void BM_ReferenceGemm(benchmark::State& state) {
  std::vector<float> d(static_cast<size_t>(kHidden * kInter), 0.01f),
      g(static_cast<size_t>(kHidden * kHidden));
  for (auto _ : state) {
    sgemm(false, true, kHidden, kHidden, kInter, 1.0f, d.data(), kInter, d.data(), kInter, 0.0f, g.data(),
          kHidden);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * kHidden * kHidden * kInter * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
}

BENCHMARK(BM_RegulariserLayer)
    ->Args({0, 1})
    ->Args({1, 1})
    ->Args({0, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_RegulariserModule)
    ->DenseRange(0, kNumLinearKinds - 1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_ReferenceGemm)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
