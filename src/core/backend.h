#pragma once
// The compute backend interface. Everything that multiplies matrices goes through it, so a
// GPU backend can be added beside the CPU one without touching the model code.
#include <cstdint>

namespace bidora {

class ComputeBackend {
 public:
  virtual ~ComputeBackend() = default;
  virtual const char* name() const = 0;

  // Row-major C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, op(X) = X or Xᵀ.
  // lda/ldb/ldc are the row strides of A, B and C as stored.
  virtual void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                     int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) = 0;

  // Row-major C[M,N] = A[M,K] · op(B)[K,N] + beta · C with bfloat16 A and B (raw bits, as stored
  // in checkpoints) and float32 C; products are summed in float32. op(B) = Bᵀ when trans_b (B
  // stored [N, K]). The frozen-weight products of compute_dtype bf16 (torch.autocast's
  // semantics: matmul inputs rounded to bf16, f32 accumulation and everything else in f32).
  virtual void gemm_bf16(bool trans_b, int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda,
                         const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) = 0;
  // True when gemm_bf16 runs on bf16 dot-product instructions (AVX512_BF16 or AMX), where it is
  // about twice as fast as sgemm; elsewhere it is emulated and slower than sgemm.
  virtual bool native_bf16() const = 0;
};

// The backend in use (the CPU backend unless another was installed).
ComputeBackend& backend();

// Number of worker threads for kernels and GEMM. Defaults to the cores available to the process.
int num_threads();
// Sets the count and pins the worker threads to cores (pin_threads_to_cores).
void set_num_threads(int n);
// Pins OpenMP worker thread i to the i-th CPU this process may run on, so threads do not
// migrate between cores (and lose their caches) mid-GEMM. Does nothing when the user placed
// threads themselves (OMP_PROC_BIND, OMP_PLACES, GOMP_CPU_AFFINITY) or asked for more threads
// than CPUs. Returns the number of threads pinned.
int pin_threads_to_cores();

inline void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  backend().sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

inline void gemm_bf16(bool trans_b, int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda,
                      const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  backend().gemm_bf16(trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace bidora
