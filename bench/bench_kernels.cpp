// Baseline timings of the model kernels for a Qwen2.5-0.5B-like layer (H = 896, 14 query heads,
// 2 kv heads, head_dim 64, I = 4864, V = 151936) on T tokens (attention: rows × T). Wall-clock
// time (the kernels are multi-threaded); GFLOP/s counts the useful multiply-adds (causal
// attention counts only the visible half of the score matrix).
//
//   build-*/bench_kernels --benchmark_filter=Attention
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <numeric>
#include <vector>

#include "bench_fill.h"
#include "model/attention.h"
#include "model/attention_kernels.h"
#include "model/frozen_matrix.h"
#include "model/linear.h"
#include "model/lm_loss.h"
#include "model/rmsnorm.h"
#include "model/rope.h"
#include "model/swiglu.h"

namespace bidora {
namespace {

constexpr int64_t kHidden = 896, kHeads = 14, kKvHeads = 2, kHeadDim = 64, kInter = 4864, kVocab = 151936;

using bench::filled;

void set_flops(benchmark::State& state, double flops_per_iter, int64_t tokens) {
  if (flops_per_iter > 0)
    state.counters["GFLOP/s"] =
        benchmark::Counter(flops_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsIterationInvariantRate);
}

// Multiply-adds ×2 of QKᵀ and PV over the visible (causal) half: rows · heads · T(T+1)/2 · hd
// each (the 2·2·T²/2·hd·heads·rows, counting the diagonal).
double attention_flops(int64_t rows, int64_t T) {
  return 2.0 * 2.0 * static_cast<double>(rows) * kHeads * (T * (T + 1) / 2.0) * kHeadDim;
}

struct AttentionData {
  AttentionShape shape;
  std::vector<float> q, k, v, out, lse, dout, dq, dk, dv;
  std::vector<int32_t> key_start;
  float scale;

  AttentionData(int64_t rows, int64_t T)
      : shape{rows, T, kHeads, kKvHeads, kHeadDim},
        q(filled(rows * T * kHeads * kHeadDim, 1)),
        k(filled(rows * T * kKvHeads * kHeadDim, 2)),
        v(filled(rows * T * kKvHeads * kHeadDim, 3)),
        out(q.size()),
        lse(rows * T * kHeads),
        dout(filled(q.size(), 4)),
        dq(q.size()),
        dk(k.size()),
        dv(v.size()),
        scale(1.0f / std::sqrt(static_cast<float>(kHeadDim))) {
    std::vector<int32_t> pos(rows * T);
    for (int64_t b = 0; b < rows; ++b) std::iota(pos.begin() + b * T, pos.begin() + (b + 1) * T, 0);
    key_start = attention_key_start(pos.data(), rows, T, 0);
  }
  void forward() {
    attention_forward(q.data(), k.data(), v.data(), key_start.data(), shape, scale, out.data(), lse.data());
  }
};

// Selects the attention kernels for one benchmark (arg 1 = AVX-512, 0 = portable C++) and
// restores the automatic choice afterwards.
struct KernelChoice {
  explicit KernelChoice(benchmark::State& state) {
    ok = state.range(2) == 0 || attention_avx512_available();
    if (!ok)
      state.SkipWithError("AVX-512 not available");
    else
      set_attention_kernel(state.range(2) ? AttentionKernel::Avx512 : AttentionKernel::Scalar);
  }
  ~KernelChoice() { set_attention_kernel(AttentionKernel::Auto); }
  bool ok;
};

// Args: rows, tokens per row, AVX-512 kernels (1) or portable ones (0). {4, 512} is a
// Qwen2.5-0.5B training micro-batch.
//
// Measured on the 2-core AMD EPYC (AVX-512) CI machine, min of 5 runs, GFLOP/s as counted above:
//                              2 threads              1 thread
//   forward  rows 4, T 512     9.6 ms  (196 GFLOP/s)  11.1 ms (169)
//   backward rows 4, T 512    15.8 ms  (298)          24.9 ms (189)
//   forward  rows 1, T 2048   28.6 ms  (263)          38.0 ms (198)
//   backward rows 1, T 2048   46.2 ms  (407)          89.3 ms (210)
//   portable kernels, 4 × 512: forward 21.4 ms / backward 27.4 ms (2 threads); built for AVX2
//   only (-march=x86-64-v3), 1 thread: 40.7 ms / 67.1 ms.
// The previous per-query scalar kernels (two-pass softmax, one (row, kv head) task per thread
// in the backward): forward 84 ms (22 GFLOP/s) and backward 624 ms (7.5) at rows 4, T 512 on
// 2 threads; 162 ms / 574 ms on 1 thread.
void BM_AttentionForward(benchmark::State& state) {
  const KernelChoice kernels(state);
  if (!kernels.ok) return;
  AttentionData d(state.range(0), state.range(1));
  for (auto _ : state) {
    d.forward();
    benchmark::DoNotOptimize(d.out.data());
  }
  set_flops(state, attention_flops(state.range(0), state.range(1)), state.range(0) * state.range(1));
}
BENCHMARK(BM_AttentionForward)
    ->ArgNames({"rows", "T", "avx512"})
    ->Args({4, 512, 1})
    ->Args({4, 512, 0})
    ->Args({1, 2048, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_AttentionBackward(benchmark::State& state) {
  const KernelChoice kernels(state);
  if (!kernels.ok) return;
  AttentionData d(state.range(0), state.range(1));
  d.forward();
  for (auto _ : state) {
    attention_backward(d.q.data(), d.k.data(), d.v.data(), d.out.data(), d.dout.data(), d.lse.data(),
                       d.key_start.data(), d.shape, d.scale, d.dq.data(), d.dk.data(), d.dv.data());
    benchmark::DoNotOptimize(d.dq.data());
  }
  // Recomputed QKᵀ, dout·Vᵀ, and the three products into dq, dk, dv: 5 of the forward's 2.
  set_flops(state, attention_flops(state.range(0), state.range(1)) * 5 / 2, state.range(0) * state.range(1));
}
BENCHMARK(BM_AttentionBackward)
    ->ArgNames({"rows", "T", "avx512"})
    ->Args({4, 512, 1})
    ->Args({4, 512, 0})
    ->Args({1, 2048, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The tied lm_head [V, H] is shared by the lm_loss benchmarks (545 MB in f32), built once.
const FrozenMatrix& lm_head(WeightStorage st) {
  static std::map<WeightStorage, std::unique_ptr<FrozenMatrix>> cache;
  auto& m = cache[st];
  if (!m)
    m = std::make_unique<FrozenMatrix>(
        FrozenMatrix::from_f32(filled(kVocab * kHidden, 5, 0.05f), kVocab, kHidden, st));
  return *m;
}

// Args: tokens, storage (0 = f32, 1 = bf16), with gradient (0/1).
void BM_LmLoss(benchmark::State& state) {
  const int64_t T = state.range(0);
  const WeightStorage st = state.range(1) ? WeightStorage::BF16 : WeightStorage::F32;
  const bool grad = state.range(2) != 0;
  const FrozenMatrix& W = lm_head(st);
  const auto hidden = filled(T * kHidden, 6);
  std::vector<int32_t> targets(T);
  for (int64_t i = 0; i < T; ++i) targets[i] = static_cast<int32_t>((i * 7919) % kVocab);
  std::vector<float> dhidden(grad ? T * kHidden : 0);
  LmLossWorkspace ws;
  for (auto _ : state) {
    const LossSums s =
        lm_head_cross_entropy(hidden.data(), T, W, targets.data(), grad ? dhidden.data() : nullptr,
                              1.0f / static_cast<float>(T), ws);
    benchmark::DoNotOptimize(s.sum);
  }
  // Logits GEMM once (forward) or twice plus the dhidden GEMM (with gradient).
  const double gemm = 2.0 * T * kHidden * kVocab;
  set_flops(state, grad ? 3 * gemm : gemm, T);
}
BENCHMARK(BM_LmLoss)
    ->ArgNames({"T", "bf16", "grad"})
    ->Args({512, 0, 0})
    ->Args({512, 0, 1})
    ->Args({512, 1, 0})
    ->Args({512, 1, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Args: out features, storage (0 = f32, 1 = bf16). T = 512 tokens of width H.
void BM_LinearForward(benchmark::State& state) {
  const int64_t T = 512, out = state.range(0);
  const FrozenMatrix W = FrozenMatrix::from_f32(filled(out * kHidden, 7, 0.05f), out, kHidden,
                                                state.range(1) ? WeightStorage::BF16 : WeightStorage::F32);
  const auto x = filled(T * kHidden, 8);
  std::vector<float> y(T * out);
  WeightTile tile;
  for (auto _ : state) {
    linear_forward(x.data(), T, W, nullptr, y.data(), tile);
    benchmark::DoNotOptimize(y.data());
  }
  set_flops(state, 2.0 * T * out * kHidden, T);
}
BENCHMARK(BM_LinearForward)
    ->ArgNames({"out", "bf16"})
    ->Args({kHidden, 0})
    ->Args({kHidden, 1})
    ->Args({kInter, 0})
    ->Args({kInter, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_LinearBackwardInput(benchmark::State& state) {
  const int64_t T = 512, out = state.range(0);
  const FrozenMatrix W = FrozenMatrix::from_f32(filled(out * kHidden, 9, 0.05f), out, kHidden,
                                                state.range(1) ? WeightStorage::BF16 : WeightStorage::F32);
  const auto dy = filled(T * out, 10);
  std::vector<float> dx(T * kHidden);
  WeightTile tile;
  for (auto _ : state) {
    linear_backward_input(dy.data(), T, W, dx.data(), 0.0f, tile);
    benchmark::DoNotOptimize(dx.data());
  }
  set_flops(state, 2.0 * T * out * kHidden, T);
}
BENCHMARK(BM_LinearBackwardInput)
    ->ArgNames({"out", "bf16"})
    ->Args({kInter, 0})
    ->Args({kInter, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The element-wise kernels of one layer at T = 512.
void BM_RmsNormForwardBackward(benchmark::State& state) {
  const int64_t T = 512;
  const auto x = filled(T * kHidden, 11), w = filled(kHidden, 12), dy = filled(T * kHidden, 13);
  std::vector<float> y(x.size()), inv(T), dx(x.size());
  for (auto _ : state) {
    rmsnorm_forward(x.data(), w.data(), T, kHidden, 1e-6f, y.data(), inv.data());
    rmsnorm_backward(x.data(), w.data(), inv.data(), dy.data(), T, kHidden, dx.data());
    benchmark::DoNotOptimize(dx.data());
  }
  set_flops(state, 0, T);
}
BENCHMARK(BM_RmsNormForwardBackward)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_SwiGluForwardBackward(benchmark::State& state) {
  const int64_t n = 512 * kInter;
  const auto g = filled(n, 14, 4.0f), u = filled(n, 15), d = filled(n, 16);
  std::vector<float> act(n), dg(n), du(n);
  for (auto _ : state) {
    swiglu_forward(g.data(), u.data(), n, act.data());
    swiglu_backward(g.data(), u.data(), d.data(), n, dg.data(), du.data());
    benchmark::DoNotOptimize(dg.data());
  }
  set_flops(state, 0, 512);
}
BENCHMARK(BM_SwiGluForwardBackward)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_RopeQK(benchmark::State& state) {
  const int64_t T = 512;
  ModelConfig c;
  c.head_dim = kHeadDim;
  c.rope_theta = 1e6;
  const RopeTable rope(c, T);
  std::vector<int32_t> pos(T);
  std::iota(pos.begin(), pos.end(), 0);
  auto q = filled(T * kHeads * kHeadDim, 17), k = filled(T * kKvHeads * kHeadDim, 18);
  for (auto _ : state) {
    rope_forward(q.data(), pos.data(), T, kHeads, kHeadDim, rope);
    rope_forward(k.data(), pos.data(), T, kKvHeads, kHeadDim, rope);
    benchmark::DoNotOptimize(q.data());
  }
  set_flops(state, 0, T);
}
BENCHMARK(BM_RopeQK)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
}  // namespace bidora

BENCHMARK_MAIN();
