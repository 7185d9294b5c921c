#pragma once
// The tile primitives of the attention kernels (src/model/attention.cpp): a portable C++ version
// (attention_kernels_scalar.cpp) and an AVX-512 one (attention_kernels_avx512.cpp, compiled with
// target attributes so it builds, and is sanitizer-tested, without -march flags; chosen at run
// time when the CPU has AVX-512F). The two agree to float rounding, not bit for bit (the AVX-512
// exp is a polynomial, the scalar one std::exp).
#include <cstdint>

namespace bidora {

enum class AttentionKernel {
  Auto,    // AVX-512 when available, else scalar
  Scalar,  // portable C++ (always available)
  Avx512,  // AVX-512F; requesting it on a CPU without it is an error
};

const char* attention_kernel_name(AttentionKernel k);
bool attention_avx512_available();  // compiled in and supported by this CPU

// The kernels attention_forward / attention_backward use, process-wide (Auto by default). For
// tests and benchmarks that compare the two paths; not meant to change while attention runs.
void set_attention_kernel(AttentionKernel k);  // throws for Avx512 when unavailable
AttentionKernel attention_kernel();            // the resolved choice (never Auto)

namespace attention_detail {

struct KernelTable {
  // C[i][j] = Σ_c A[i][c] · Bt[c][j] for i < m, j < n, c < kd: a score tile S = Q Kᵀ from query
  // rows A (row stride lda) and keys packed transposed, Bt[c][j] = K[j][c] (row stride ldbt).
  void (*scores)(const float* a, int64_t lda, const float* bt, int64_t ldbt, int m, int kd, int n, float* c,
                 int64_t ldc);
  // C[i][x] += Σ_j A(i, j) · B[j][x] for i < m, j < n, x < width, with A(i, j) = a[i·a_rs + j·a_cs]:
  // both P·V (A row-major) and Pᵀ·dO (A transposed) without materialising a transpose.
  void (*accumulate)(const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb, int m, int n,
                     int width, float* c, int64_t ldc);
  // max_j x[j] over n ≥ 1 values.
  float (*max)(const float* x, int n);
  // x[j] = exp(x[j]·scale − shift) in place; returns Σ_j of the new x[j].
  float (*exp_sum)(float* x, int n, float scale, float shift);
};

extern const KernelTable kScalarKernels;
const KernelTable* avx512_kernels();  // nullptr when not compiled in (non-x86 builds)
const KernelTable& active_kernels();  // the table set_attention_kernel selected

}  // namespace attention_detail
}  // namespace bidora
