#pragma once
// y = x·Wᵀ (+ b) for a few rows of x: the frozen linears of a decode step (one token per step).
// Such a product is bound by memory bandwidth over the weights. linear_forward would first expand
// each weight tile to float32 in memory and then run a GEMM on it, moving three times the bytes
// of a bf16 weight (read 2, write 4, read 4) for 2 flops per weight. Here each thread takes whole
// output rows and multiplies them where they are: bf16 rows are widened to float32 in registers,
// f32 rows are read directly, and NF4 / int8 rows go through FrozenMatrix::rows_f32 a few rows at
// a time into a per-thread buffer that stays in L1 (the same dequantisation as training).
// The dot products run on AVX-512 when the CPU has it, else on portable C++; both accumulate
// each output in float32 (16 partial sums, then a reduction), so results differ from the GEMM
// path by float rounding only.
#include <cstdint>

#include "model/frozen_matrix.h"

namespace bidora {

// Largest number of rows gemv_forward takes: each weight row is read once for all of them.
constexpr int64_t kGemvMaxRows = 4;

enum class GemvKernel {
  Auto,    // AVX-512 when available, else scalar
  Scalar,  // portable C++ (always available)
  Avx512,  // AVX-512F; requesting it on a CPU without it is an error
};
bool gemv_avx512_available();
// Process-wide choice for tests and benchmarks that compare the two paths.
void set_gemv_kernel(GemvKernel k);
GemvKernel gemv_kernel();  // the resolved choice (never Auto)

// x: [n, in], y: [n, out] (overwritten), bias: [out] or nullptr; 1 <= n <= kGemvMaxRows.
void gemv_forward(const float* x, int64_t n, const FrozenMatrix& W, const float* bias, float* y);

}  // namespace bidora
