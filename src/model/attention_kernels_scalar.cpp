// Portable attention tile kernels (GCC/Clang vector extensions, lowered to whatever instruction
// set the build targets) and the run-time kernel choice.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "model/attention_kernels.h"

namespace bidora {
namespace attention_detail {
namespace {

// Register blocking with GCC/Clang vector extensions: a kRows × kVecs accumulator of the target's
// native vector width stays in registers (8 of the 16 ymm/xmm, 4 of the 32 zmm), which plain loops
// do not reliably get (GCC vectorises them across the reduction index instead, with gathers), nor
// vectors wider than the target's (split and spilled: 4x slower with AVX2). Column remainders take
// the plain loops. Only CPUs without AVX-512 run this in production.
#if defined(__AVX512F__)
constexpr int kWidth = 16, kVecs = 1;  // measured: 2 zmm per row is slower with GCC 12
#elif defined(__AVX__)
constexpr int kWidth = 8, kVecs = 2;
#else
constexpr int kWidth = 4, kVecs = 2;
#endif
using vfloat = float __attribute__((vector_size(4 * kWidth)));
constexpr int kRows = 4;
constexpr int kCols = kVecs * kWidth;

inline void load(vfloat& v, const float* p) {
  std::memcpy(&v, p, sizeof v);
}

inline void store(float* p, const vfloat& v) {
  std::memcpy(p, &v, sizeof v);
}

// C[R × kCols] (+)= A(R × n) · B[n × kCols], A(i, j) = a[i·a_rs + j·a_cs].
template <int R>
void block(const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb, int n, float* c,
           int64_t ldc, bool accumulate) {
  vfloat acc[R][kVecs];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < kVecs; ++v) {
      acc[r][v] = vfloat{};
      if (accumulate) load(acc[r][v], c + r * ldc + v * kWidth);
    }
  for (int j = 0; j < n; ++j) {
    vfloat bj[kVecs];
    for (int v = 0; v < kVecs; ++v) load(bj[v], b + j * ldb + v * kWidth);
    for (int r = 0; r < R; ++r) {
      const float ar = a[r * a_rs + j * a_cs];
      for (int v = 0; v < kVecs; ++v) acc[r][v] += ar * bj[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < kVecs; ++v) store(c + r * ldc + v * kWidth, acc[r][v]);
}

// Fewer than kCols columns.
void block_narrow(const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb, int m, int n,
                  int width, float* c, int64_t ldc, bool accumulate) {
  for (int i = 0; i < m; ++i) {
    float* ci = c + i * ldc;
    if (!accumulate) std::fill(ci, ci + width, 0.0f);
    for (int j = 0; j < n; ++j) {
      const float aij = a[i * a_rs + j * a_cs];
      const float* bj = b + j * ldb;
      for (int x = 0; x < width; ++x) ci[x] += aij * bj[x];
    }
  }
}

// C[m × width] (+)= A(m × n) · B[n × width].
void product(const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb, int m, int n, int width,
             float* c, int64_t ldc, bool accumulate) {
  int x0 = 0;
  for (; x0 + kCols <= width; x0 += kCols) {
    int i = 0;
    for (; i + kRows <= m; i += kRows)
      block<kRows>(a + i * a_rs, a_rs, a_cs, b + x0, ldb, n, c + i * ldc + x0, ldc, accumulate);
    for (; i < m; ++i) block<1>(a + i * a_rs, a_rs, a_cs, b + x0, ldb, n, c + i * ldc + x0, ldc, accumulate);
  }
  if (x0 < width) block_narrow(a, a_rs, a_cs, b + x0, ldb, m, n, width - x0, c + x0, ldc, accumulate);
}

void scores_scalar(const float* a, int64_t lda, const float* bt, int64_t ldbt, int m, int kd, int n, float* c,
                   int64_t ldc) {
  product(a, lda, 1, bt, ldbt, m, kd, n, c, ldc, false);
}

void accumulate_scalar(const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb, int m, int n,
                       int width, float* c, int64_t ldc) {
  product(a, a_rs, a_cs, b, ldb, m, n, width, c, ldc, true);
}

float max_scalar(const float* x, int n) {
  float m = x[0];
  for (int j = 1; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

float exp_sum_scalar(float* x, int n, float scale, float shift) {
  float sum = 0.0f;
  for (int j = 0; j < n; ++j) {
    x[j] = std::exp(x[j] * scale - shift);
    sum += x[j];
  }
  return sum;
}

std::atomic<AttentionKernel> g_choice{AttentionKernel::Auto};

}  // namespace

const KernelTable kScalarKernels = {scores_scalar, accumulate_scalar, max_scalar, exp_sum_scalar};

const KernelTable& active_kernels() {
  return attention_kernel() == AttentionKernel::Avx512 ? *avx512_kernels() : kScalarKernels;
}

}  // namespace attention_detail

const char* attention_kernel_name(AttentionKernel k) {
  switch (k) {
    case AttentionKernel::Auto:
      return "auto";
    case AttentionKernel::Scalar:
      return "scalar";
    case AttentionKernel::Avx512:
      return "avx512";
  }
  return "?";
}

bool attention_avx512_available() {
  static const bool ok = [] {
    if (attention_detail::avx512_kernels() == nullptr) return false;
#if defined(__x86_64__) || defined(__i386__)
    return static_cast<bool>(__builtin_cpu_supports("avx512f"));
#else
    return false;
#endif
  }();
  return ok;
}

void set_attention_kernel(AttentionKernel k) {
  BIDORA_CHECK(k != AttentionKernel::Avx512 || attention_avx512_available(),
               "AVX-512 attention kernels requested, but this build/CPU does not support AVX-512F");
  attention_detail::g_choice.store(k, std::memory_order_relaxed);
}

AttentionKernel attention_kernel() {
  const AttentionKernel k = attention_detail::g_choice.load(std::memory_order_relaxed);
  if (k != AttentionKernel::Auto) return k;
  return attention_avx512_available() ? AttentionKernel::Avx512 : AttentionKernel::Scalar;
}

}  // namespace bidora
