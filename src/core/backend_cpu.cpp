// CPU backend: oneDNN's sgemm (it detects AVX-512 on this machine, where Debian's OpenBLAS
// falls back to SSE3 kernels) with OpenMP threads.
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <sched.h>

#include <cstdlib>
#include <vector>

#include "core/backend.h"
#include "core/error.h"

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
