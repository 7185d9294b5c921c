// bidora's sgemm throughput (src/core/backend.h, i.e. oneDNN) on the GEMMs of one training step
// of a model: tokens × the seven projection shapes of a decoder layer, in the two layouts a
// frozen Linear uses, forward Y = X·Wᵀ (NT) and the input gradient dX = dY·W (NN). It is the
// denominator of bench/vs_pytorch.sh's model-FLOPs utilisation, so it is measured in the same run
// and with the same threads (all cores, num_threads()) as the training it is compared with.
//
//   build/bench_sgemm_peak --model DIR_OR_CONFIG_JSON [--tokens 2048] [--reps 10] [--json]
//
// Every shape is run once untimed (oneDNN picks its kernel and the pages are touched), then
// `reps` times; a shape's figure is its fastest run (the machine's capability: on a shared
// machine other processes only ever slow a run down). The headline figure is flop-weighted:
// the flops of all shapes over the sum of their fastest times, i.e. what a step made of exactly
// these GEMMs would sustain. The per-shape median is printed too, as a noise gauge.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "model/model_config.h"

namespace bidora {
namespace {

struct Shape {
  std::string name;
  int64_t out = 0, in = 0;
};

struct Timing {
  std::string name, layout;
  int64_t M = 0, N = 0, K = 0;
  double flops = 0, best_s = 0, median_s = 0;
};

// Deterministic values in [-1, 1): the timing does not depend on them, but NaN/denormal inputs
// could (denormals slow some kernels down), so fill real numbers.
void fill(std::vector<float>& v, uint32_t seed) {
  uint32_t s = seed * 2654435761u + 1;
  for (float& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<float>(s >> 8) * (2.0f / 16777216.0f) - 1.0f;
  }
}

// One GEMM layout, timed: C[M,N] = op(A)·op(B) with A row-major [M,K] and B = W [out,in].
Timing time_gemm(const std::string& name, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                 const float* B, float* C, int reps) {
  const int64_t ldb = trans_b ? K : N;  // W is [out, in] row-major either way
  auto run = [&] { sgemm(false, trans_b, M, N, K, 1.0f, A, K, B, ldb, 0.0f, C, N); };
  run();
  std::vector<double> secs;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(secs.begin(), secs.end());
  return {name, trans_b ? "NT" : "NN", M, N, K, 2.0 * M * N * K, secs.front(), secs[secs.size() / 2]};
}

int run(int argc, char** argv) {
  CLI::App app{"bidora's sgemm GFLOP/s on the projection GEMMs of one training step"};
  std::string model;
  int64_t tokens = 2048;
  int reps = 10;
  bool json = false;
  app.add_option("-m,--model", model, "Model directory (its config.json) or a config.json file")->required();
  app.add_option("--tokens", tokens, "Tokens per step (M of every GEMM): batch × sequence length")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--reps", reps, "Timed runs per shape (after one untimed run)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_flag("--json", json, "Print one JSON object instead of the table");
  CLI11_PARSE(app, argc, argv);

  namespace fs = std::filesystem;
  const std::string config_path =
      fs::is_directory(model) ? (fs::path(model) / "config.json").string() : model;
  BIDORA_CHECK(fs::is_regular_file(config_path),
               "{}: no such file (give a model directory or its config.json)", config_path);
  const ModelConfig cfg = ModelConfig::from_file(config_path);
  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size;
  const std::vector<Shape> shapes = {{"q_proj", cfg.q_dim(), H},  {"k_proj", cfg.kv_dim(), H},
                                     {"v_proj", cfg.kv_dim(), H}, {"o_proj", H, cfg.q_dim()},
                                     {"gate_proj", I, H},         {"up_proj", I, H},
                                     {"down_proj", H, I}};
  set_num_threads(num_threads());  // all cores, and OpenMP told so, as `bidora train` runs

  int64_t max_in = 0, max_out = 0, max_w = 0;
  for (const Shape& s : shapes) {
    max_in = std::max(max_in, s.in);
    max_out = std::max(max_out, s.out);
    max_w = std::max(max_w, s.in * s.out);
  }
  // X / dY share one buffer and Y / dX another: each is big enough for either role.
  const int64_t max_dim = std::max(max_in, max_out);
  std::vector<float> a(static_cast<size_t>(tokens * max_dim)), w(static_cast<size_t>(max_w)),
      c(static_cast<size_t>(tokens * max_dim));
  fill(a, 1);
  fill(w, 2);

  std::vector<Timing> timings;
  for (const Shape& s : shapes) {
    // forward: Y[T,out] = X[T,in] · W[out,in]ᵀ
    timings.push_back(time_gemm(s.name, true, tokens, s.out, s.in, a.data(), w.data(), c.data(), reps));
    // backward, input gradient: dX[T,in] = dY[T,out] · W[out,in]
    timings.push_back(time_gemm(s.name, false, tokens, s.in, s.out, a.data(), w.data(), c.data(), reps));
  }
  double flops = 0, best_s = 0, median_s = 0;
  for (const Timing& t : timings) {
    flops += t.flops;
    best_s += t.best_s;
    median_s += t.median_s;
  }
  const double gflops = flops / best_s * 1e-9, gflops_median = flops / median_s * 1e-9;

  if (json) {
    nlohmann::ordered_json shapes_json = nlohmann::ordered_json::array();
    for (const Timing& t : timings)
      shapes_json.push_back({{"name", t.name},
                             {"layout", t.layout},
                             {"M", t.M},
                             {"N", t.N},
                             {"K", t.K},
                             {"gflops", t.flops / t.best_s * 1e-9},
                             {"gflops_median", t.flops / t.median_s * 1e-9}});
    const nlohmann::ordered_json j = {{"config", config_path},
                                      {"backend", backend().name()},
                                      {"threads", num_threads()},
                                      {"tokens", tokens},
                                      {"reps", reps},
                                      {"gflops", gflops},
                                      {"gflops_median", gflops_median},
                                      {"shapes", shapes_json}};
    fmt::print("{}\n", j.dump());
    return 0;
  }
  fmt::print("sgemm ({}, {} threads) on the projection GEMMs of {} tokens, {}\n", backend().name(),
             num_threads(), tokens, config_path);
  fmt::print("{:<10} {:<6} {:>6} {:>6} {:>6} {:>10} {:>14}\n", "linear", "layout", "M", "N", "K", "GFLOP/s",
             "median GFLOP/s");
  for (const Timing& t : timings)
    fmt::print("{:<10} {:<6} {:>6} {:>6} {:>6} {:>10.1f} {:>14.1f}\n", t.name, t.layout, t.M, t.N, t.K,
               t.flops / t.best_s * 1e-9, t.flops / t.median_s * 1e-9);
  fmt::print("flop-weighted: {:.1f} GFLOP/s (fastest runs), {:.1f} GFLOP/s (medians)\n", gflops,
             gflops_median);
  return 0;
}

}  // namespace
}  // namespace bidora

int main(int argc, char** argv) {
  try {
    return bidora::run(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_sgemm_peak: {}\n", e.what());
    return 1;
  }
}
