// AVX-512 attention tile kernels. The functions carry target attributes, so this file builds
// (and the sanitizer build tests it) without -march flags; attention_kernels.h picks it at run
// time only on CPUs with AVX-512F. Remainders (head_dim or tile widths not a multiple of 16) use
// masked loads and stores, so no buffer needs padding.
#include "model/attention_kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12 warns about the deliberately undefined source vectors (_mm512_undefined_ps) inside its
// own AVX-512 headers when they are inlined into target("avx512...") functions; the pragmas must
// cover the header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <limits>

#define BIDORA_AVX512 __attribute__((target("avx512f,fma")))

namespace bidora::attention_detail {
namespace {

// Register blocking: MR rows × NV vectors of 16 floats are accumulated in registers (4 × 4 = 16
// of the 32 zmm registers, plus NV operands and one broadcast). 64 columns = one key tile.
constexpr int kMr = 4;
constexpr int kNvMax = 4;
constexpr int kCols = 16 * kNvMax;

inline __mmask16 tail_mask(int count) {  // the first count (1..16) lanes
  return static_cast<__mmask16>(count >= 16 ? 0xFFFFu : (1u << count) - 1u);
}

// Keeps a loaded vector in a register: GCC otherwise folds the load into each of the MR FMAs that
// use it, and the kernels become bound by loads (MR·NV + MR per step instead of NV + MR).
BIDORA_AVX512 inline __m512 in_register(__m512 x) {
  asm("" : "+v"(x));
  return x;
}

// exp(x) as Cephes' expf: x = n ln2 + r with |r| ≤ ln2/2 (ln2 split in two for an exact
// reduction), e^r by a degree-7 polynomial (relative error ~1e-7), then scaled by 2^n. The clamp
// maps −inf and anything below the float range to 0 (via scalef's underflow) and keeps NaN out.
BIDORA_AVX512 inline __m512 exp512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(88.7f));
  const __m512 n =
      _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(y, n);
}

// C[MR × NV·16] (+)= A(MR × n) · B[n × NV·16], A(i, j) = a[i·a_rs + j·a_cs]; the last vector of
// each row is masked by `last`. kAccumulate false starts from zero (a score tile: A = Q rows,
// B = Kᵀ, a_cs = 1), true adds to C (P·V and Pᵀ·dO). One kernel for both, as in the scalar file.
template <int MR, int NV, bool kAccumulate>
BIDORA_AVX512 void block(const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb, int n,
                         __mmask16 last, float* c, int64_t ldc) {
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      acc[r][v] = kAccumulate ? _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xFFFF, c + r * ldc + 16 * v)
                              : _mm512_setzero_ps();
  for (int j = 0; j < n; ++j) {
    const float* bj = b + j * ldb;
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      bv[v] = in_register(_mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xFFFF, bj + 16 * v));
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 ar = _mm512_set1_ps(a[r * a_rs + j * a_cs]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(ar, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      _mm512_mask_storeu_ps(c + r * ldc + 16 * v, v == NV - 1 ? last : 0xFFFF, acc[r][v]);
}

// Instantiations for a run-time (rows, vectors) pair: rows 1..kMr, vectors 1..kNvMax.
template <int MR, bool kAccumulate>
BIDORA_AVX512 void block_rows(int nv, const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb,
                              int n, __mmask16 last, float* c, int64_t ldc) {
  switch (nv) {
    case 1:
      return block<MR, 1, kAccumulate>(a, a_rs, a_cs, b, ldb, n, last, c, ldc);
    case 2:
      return block<MR, 2, kAccumulate>(a, a_rs, a_cs, b, ldb, n, last, c, ldc);
    case 3:
      return block<MR, 3, kAccumulate>(a, a_rs, a_cs, b, ldb, n, last, c, ldc);
    default:
      return block<MR, 4, kAccumulate>(a, a_rs, a_cs, b, ldb, n, last, c, ldc);
  }
}

// The last rows % kMr rows of a call: one block of R rows, R chosen at run time.
template <int R, bool kAccumulate>
BIDORA_AVX512 void block_tail(int rows, int nv, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                              int64_t ldb, int n, __mmask16 last, float* c, int64_t ldc) {
  if constexpr (R > 0) {
    if (rows == R) return block_rows<R, kAccumulate>(nv, a, a_rs, a_cs, b, ldb, n, last, c, ldc);
    block_tail<R - 1, kAccumulate>(rows, nv, a, a_rs, a_cs, b, ldb, n, last, c, ldc);
  }
}

// C[m × width] (+)= A(m × n) · B[n × width], in column strips of kCols and row blocks of kMr.
template <bool kAccumulate>
BIDORA_AVX512 void matmul(const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb, int m,
                          int n, int width, float* c, int64_t ldc) {
  for (int x0 = 0; x0 < width; x0 += kCols) {
    const int nx = std::min(kCols, width - x0), nv = (nx + 15) / 16;
    const __mmask16 last = tail_mask(nx - 16 * (nv - 1));
    int i = 0;
    for (; i + kMr <= m; i += kMr)
      block_rows<kMr, kAccumulate>(nv, a + i * a_rs, a_rs, a_cs, b + x0, ldb, n, last, c + i * ldc + x0, ldc);
    block_tail<kMr - 1, kAccumulate>(m - i, nv, a + i * a_rs, a_rs, a_cs, b + x0, ldb, n, last,
                                     c + i * ldc + x0, ldc);
  }
}

BIDORA_AVX512 void scores_avx512(const float* a, int64_t lda, const float* bt, int64_t ldbt, int m, int kd,
                                 int n, float* c, int64_t ldc) {
  matmul<false>(a, lda, 1, bt, ldbt, m, kd, n, c, ldc);
}

BIDORA_AVX512 void accumulate_avx512(const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb,
                                     int m, int n, int width, float* c, int64_t ldc) {
  matmul<true>(a, a_rs, a_cs, b, ldb, m, n, width, c, ldc);
}

BIDORA_AVX512 float max_avx512(const float* x, int n) {
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 m = neg_inf;
  int j = 0;
  for (; j + 16 <= n; j += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + j));
  if (j < n) m = _mm512_max_ps(m, _mm512_mask_loadu_ps(neg_inf, tail_mask(n - j), x + j));
  return _mm512_reduce_max_ps(m);
}

BIDORA_AVX512 float exp_sum_avx512(float* x, int n, float scale, float shift) {
  const __m512 vs = _mm512_set1_ps(scale), vshift = _mm512_set1_ps(shift);
  __m512 sum = _mm512_setzero_ps();
  int j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m512 e = exp512(_mm512_fmsub_ps(_mm512_loadu_ps(x + j), vs, vshift));
    _mm512_storeu_ps(x + j, e);
    sum = _mm512_add_ps(sum, e);
  }
  if (j < n) {
    const __mmask16 mask = tail_mask(n - j);
    const __m512 e = exp512(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(mask, x + j), vs, vshift));
    _mm512_mask_storeu_ps(x + j, mask, e);
    sum = _mm512_mask_add_ps(sum, mask, sum, e);
  }
  return _mm512_reduce_add_ps(sum);
}

const KernelTable kAvx512Kernels = {scores_avx512, accumulate_avx512, max_avx512, exp_sum_avx512};

}  // namespace

const KernelTable* avx512_kernels() {
  return &kAvx512Kernels;
}

}  // namespace bidora::attention_detail

#else

namespace bidora::attention_detail {
const KernelTable* avx512_kernels() {
  return nullptr;
}
}  // namespace bidora::attention_detail

#endif
