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
};

// The backend in use (the CPU backend unless another was installed).
ComputeBackend& backend();

// Number of worker threads for kernels and GEMM. Defaults to the cores available to the process.
int num_threads();
void set_num_threads(int n);

inline void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  backend().sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace bidora
