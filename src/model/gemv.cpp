#include "model/gemv.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "core/error.h"
#include "core/half.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BIDORA_GEMV_AVX512 1
// GCC 12 warns about the deliberately undefined source vectors inside its own AVX-512 headers
// when they are inlined into target("avx512...") functions (as in attention_kernels_avx512.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#define BIDORA_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
#endif

namespace bidora {
namespace {

// y[t·ldy + r] = Σ_j w[r·in + j] · x[t·in + j] for r < rows, t < n (weights as stored).
using DotF32 = void (*)(const float* w, int64_t in, int rows, const float* x, int n, float* y, int64_t ldy);
using DotBf16 = void (*)(const uint16_t* w, int64_t in, int rows, const float* x, int n, float* y,
                         int64_t ldy);
struct Kernels {
  DotF32 f32;
  DotBf16 bf16;
};

inline float widen(float v) {
  return v;
}
inline float widen(uint16_t v) {
  return bf16_to_f32(v);
}

// 16 partial sums per output, like one AVX-512 register, so the compiler can vectorise it.
template <typename T>
void dot_scalar(const T* w, int64_t in, int rows, const float* x, int n, float* y, int64_t ldy) {
  constexpr int kLanes = 16;
  for (int r = 0; r < rows; ++r) {
    const T* wr = w + r * in;
    for (int t = 0; t < n; ++t) {
      const float* xt = x + t * in;
      float acc[kLanes] = {};
      int64_t j = 0;
      for (; j + kLanes <= in; j += kLanes)
        for (int l = 0; l < kLanes; ++l) acc[l] += widen(wr[j + l]) * xt[j + l];
      for (int l = 0; j + l < in; ++l) acc[l] += widen(wr[j + l]) * xt[j + l];
      float s = 0.0f;
      for (float a : acc) s += a;
      y[t * ldy + r] = s;
    }
  }
}

constexpr Kernels kScalar = {dot_scalar<float>, dot_scalar<uint16_t>};

#ifdef BIDORA_GEMV_AVX512

BIDORA_AVX512 inline __m512 load16(const float* w) {
  return _mm512_loadu_ps(w);
}
BIDORA_AVX512 inline __m512 load16(const uint16_t* w) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
BIDORA_AVX512 inline __m512 load16(const float* w, __mmask16 m) {
  return _mm512_maskz_loadu_ps(m, w);
}
BIDORA_AVX512 inline __m512 load16(const uint16_t* w, __mmask16 m) {
  const __m256i h = _mm256_maskz_loadu_epi16(m, w);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// One weight row against N input rows: two accumulators per input row hide the FMA latency;
// the weights are loaded once per 32 columns and reused for every input row.
template <int N, typename T>
BIDORA_AVX512 void dot_rows_avx512(const T* w, int64_t in, int rows, const float* x, float* y, int64_t ldy) {
  for (int r = 0; r < rows; ++r) {
    const T* wr = w + r * in;
    __m512 a0[N], a1[N];
    for (int t = 0; t < N; ++t) a0[t] = a1[t] = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 32 <= in; j += 32) {
      const __m512 w0 = load16(wr + j), w1 = load16(wr + j + 16);
      for (int t = 0; t < N; ++t) {
        a0[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + t * in + j), a0[t]);
        a1[t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + t * in + j + 16), a1[t]);
      }
    }
    for (; j < in; j += 16) {
      const int64_t left = std::min<int64_t>(16, in - j);
      const __mmask16 m = static_cast<__mmask16>(left >= 16 ? 0xFFFFu : (1u << left) - 1u);
      const __m512 w0 = load16(wr + j, m);
      for (int t = 0; t < N; ++t)
        a0[t] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, x + t * in + j), a0[t]);
    }
    for (int t = 0; t < N; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(_mm512_add_ps(a0[t], a1[t]));
  }
}

template <typename T>
BIDORA_AVX512 void dot_avx512(const T* w, int64_t in, int rows, const float* x, int n, float* y,
                              int64_t ldy) {
  switch (n) {
    case 1:
      return dot_rows_avx512<1>(w, in, rows, x, y, ldy);
    case 2:
      return dot_rows_avx512<2>(w, in, rows, x, y, ldy);
    case 3:
      return dot_rows_avx512<3>(w, in, rows, x, y, ldy);
    default:
      return dot_rows_avx512<4>(w, in, rows, x, y, ldy);
  }
}

constexpr Kernels kAvx512 = {dot_avx512<float>, dot_avx512<uint16_t>};

#endif

std::atomic<GemvKernel> g_choice{GemvKernel::Auto};

const Kernels& active_kernels() {
#ifdef BIDORA_GEMV_AVX512
  if (gemv_kernel() == GemvKernel::Avx512) return kAvx512;
#endif
  return kScalar;
}

// Output rows per parallel task for weights read in place: enough to amortise the scheduling,
// few enough that both threads get work on the smallest projections (k/v of small models).
constexpr int64_t kRowsPerTask = 16;
// Dequantised rows per task for NF4 / int8: the per-thread buffer stays within L1.
constexpr int64_t kBufferFloats = 8192;

template <typename T, typename Dot>
void rows_in_place(const T* w, const float* x, int64_t n, int64_t out, int64_t in, Dot dot, float* y) {
  const int64_t tasks = (out + kRowsPerTask - 1) / kRowsPerTask;
#pragma omp parallel for schedule(static)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t r0 = task * kRowsPerTask, rows = std::min(kRowsPerTask, out - r0);
    dot(w + r0 * in, in, static_cast<int>(rows), x, static_cast<int>(n), y + r0, out);
  }
}

}  // namespace

bool gemv_avx512_available() {
#ifdef BIDORA_GEMV_AVX512
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl");
  return ok;
#else
  return false;
#endif
}

void set_gemv_kernel(GemvKernel k) {
  BIDORA_CHECK(k != GemvKernel::Avx512 || gemv_avx512_available(),
               "AVX-512 GEMV kernels requested, but this build/CPU does not support AVX-512F/BW/VL");
  g_choice.store(k, std::memory_order_relaxed);
}

GemvKernel gemv_kernel() {
  const GemvKernel k = g_choice.load(std::memory_order_relaxed);
  if (k != GemvKernel::Auto) return k;
  return gemv_avx512_available() ? GemvKernel::Avx512 : GemvKernel::Scalar;
}

void gemv_forward(const float* x, int64_t n, const FrozenMatrix& W, const float* bias, float* y) {
  BIDORA_CHECK(n >= 1 && n <= kGemvMaxRows, "gemv_forward: {} rows (expected 1..{})", n, kGemvMaxRows);
  const Kernels& k = active_kernels();
  const int64_t out = W.rows(), in = W.cols();
  if (const float* w = W.f32_data()) {
    rows_in_place(w, x, n, out, in, k.f32, y);
  } else if (const uint16_t* w = W.bf16_data()) {
    rows_in_place(w, x, n, out, in, k.bf16, y);
  } else {
    const int64_t step = std::max<int64_t>(1, kBufferFloats / std::max<int64_t>(in, 1));
    const int64_t tasks = (out + step - 1) / step;
#pragma omp parallel
    {
      std::vector<float> buf(static_cast<size_t>(step * in));
#pragma omp for schedule(static)
      for (int64_t task = 0; task < tasks; ++task) {
        const int64_t r0 = task * step, rows = std::min(step, out - r0);
        W.rows_f32(r0, rows, buf.data());
        k.f32(buf.data(), in, static_cast<int>(rows), x, static_cast<int>(n), y + r0, out);
      }
    }
  }
  if (bias)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t o = 0; o < out; ++o) y[t * out + o] += bias[o];
}

}  // namespace bidora
