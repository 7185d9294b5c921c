// CPU backend: oneDNN's sgemm (it detects AVX-512 on this machine, where Debian's OpenBLAS
// falls back to SSE3 kernels) with OpenMP threads.
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <sched.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>
#include <tuple>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "core/half.h"

namespace bidora {
namespace {

class CpuBackend final : public ComputeBackend {
 public:
  const char* name() const override { return "cpu (oneDNN)"; }

  void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
             int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) override {
    if (M == 0 || N == 0) return;
    if (K == 0) {
      // An empty product: BLAS defines C = beta·C, but oneDNN returns without touching C.
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
      return;
    }
    dnnl_status_t st =
        dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (st != dnnl_success)
      fail("oneDNN sgemm failed (status {}) for M={} N={} K={}", static_cast<int>(st), M, N, K);
  }

  void gemm_bf16(bool trans_b, int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda,
                 const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) override {
    if (M == 0 || N == 0) return;
    if (K == 0) {
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
      return;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    const Shape key{trans_b, M, N, K, lda, ldb, ldc, beta};
    auto it = matmuls_.find(key);
    if (it == matmuls_.end()) {
      // Every distinct shape JITs a kernel once; the shapes of a run are few (one per projection
      // and batch length), but bound the map for runs whose batch lengths vary a lot.
      if (matmuls_.size() >= kMaxCachedShapes) matmuls_.clear();
      it = matmuls_.emplace(key, make_matmul(key)).first;
    }
    if (!it->second) {  // no bf16 matmul on this CPU: round-trip through float32
      gemm_bf16_via_f32(trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
      return;
    }
    const Matmul& mm = *it->second;
    dnnl::memory a(mm.a, engine_, const_cast<uint16_t*>(A));
    dnnl::memory b(mm.b, engine_, const_cast<uint16_t*>(B));
    dnnl::memory c(mm.c, engine_, C);
    mm.primitive.execute(stream_, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
    stream_.wait();
  }

  bool native_bf16() const override {
    const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
    return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
  }

 private:
  using Shape = std::tuple<bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float>;
  static constexpr size_t kMaxCachedShapes = 256;

  // The matmul primitive for one shape, or nullopt when oneDNN has no bf16 implementation here.
  struct Matmul {
    dnnl::memory::desc a, b, c;
    dnnl::matmul primitive;
  };

  std::optional<Matmul> make_matmul(const Shape& s) {
    const auto [trans_b, M, N, K, lda, ldb, ldc, beta] = s;
    using dt = dnnl::memory::data_type;
    const dnnl::memory::desc a({M, K}, dt::bf16, {lda, 1});
    // B is [N, K] row-major when transposed, i.e. the [K, N] operand has strides (1, ldb).
    const dnnl::memory::desc b({K, N}, dt::bf16,
                               trans_b ? dnnl::memory::dims{1, ldb} : dnnl::memory::dims{ldb, 1});
    const dnnl::memory::desc c({M, N}, dt::f32, {ldc, 1});
    dnnl::primitive_attr attr;
    if (beta != 0.0f) {
      dnnl::post_ops ops;
      ops.append_sum(beta);
      attr.set_post_ops(ops);
    }
    try {
      return Matmul{a, b, c,
                    dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, c), attr, engine_))};
    } catch (const dnnl::error&) {
      return std::nullopt;
    }
  }

  static void gemm_bf16_via_f32(bool trans_b, int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda,
                                const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    std::vector<float> a(static_cast<size_t>(M * K));
    const int64_t b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
    std::vector<float> b(static_cast<size_t>(b_rows * b_cols));
    for (int64_t i = 0; i < M; ++i) bf16_to_f32_n(A + i * lda, a.data() + i * K, static_cast<size_t>(K));
    for (int64_t i = 0; i < b_rows; ++i)
      bf16_to_f32_n(B + i * ldb, b.data() + i * b_cols, static_cast<size_t>(b_cols));
    const dnnl_status_t st =
        dnnl_sgemm('N', trans_b ? 'T' : 'N', M, N, K, 1.0f, a.data(), K, b.data(), b_cols, beta, C, ldc);
    if (st != dnnl_success)
      fail("oneDNN sgemm failed (status {}) for M={} N={} K={}", static_cast<int>(st), M, N, K);
  }

  std::mutex mutex_;
  dnnl::engine engine_{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream_{engine_};
  std::map<Shape, std::optional<Matmul>> matmuls_;
};

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  return omp_get_num_procs();
}

int g_threads = 0;

}  // namespace

ComputeBackend& backend() {
  static CpuBackend cpu;
  return cpu;
}

int num_threads() {
  if (g_threads == 0) g_threads = available_cores();
  return g_threads;
}

void set_num_threads(int n) {
  g_threads = n > 0 ? n : available_cores();
  omp_set_num_threads(g_threads);
  pin_threads_to_cores();
}

int pin_threads_to_cores() {
  // The user's (or the OpenMP runtime's) placement wins over ours.
  if (std::getenv("OMP_PROC_BIND") || std::getenv("OMP_PLACES") || std::getenv("GOMP_CPU_AFFINITY")) return 0;
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return 0;
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  const int threads = num_threads();
  // More threads than CPUs would pile several onto one CPU: leave placement to the scheduler.
  if (threads > static_cast<int>(cpus.size())) return 0;
  int pinned = 0;
  // libgomp keeps its pool threads between parallel regions (oneDNN runs on the same pool), so
  // pinning them once here holds for every later kernel and GEMM. The master thread is pinned
  // too, which is why the process's mask is read (and kept in `cpus`) before this region.
#pragma omp parallel num_threads(threads) reduction(+ : pinned)
  {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpus[omp_get_thread_num()], &one);
    pinned += pthread_setaffinity_np(pthread_self(), sizeof(one), &one) == 0 ? 1 : 0;
  }
  return pinned;
}

}  // namespace bidora
