// AVX-512 dequantisation kernels. The functions carry target attributes, so this file builds
// (and the sanitizer build tests it) without -march flags; kernels.h picks it at run time only on
// CPUs with AVX-512F/BW/VL.
#include "quant/kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12 warns about the deliberately undefined source vectors inside its own AVX-512 headers
// when they are inlined into target("avx512...") functions; the pragma must cover the header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>

#define BIDORA_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

namespace bidora::quant::detail {
namespace {

// Output position of the interleaved nibbles: lane 2k takes the high nibble of byte k, lane
// 2k+1 its low nibble (a = bytes 0..7, b = bytes 8..15 of a 16-byte group).
BIDORA_AVX512 inline __m512i interleave_lo() {
  return _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
}
BIDORA_AVX512 inline __m512i interleave_hi() {
  return _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
}

// 16 packed bytes -> 32 floats (code[nibble] * scale) in element order.
BIDORA_AVX512 inline void nf4_expand32(__m128i bytes, __m512 code, __m512 scale, __m512i lo_perm,
                                       __m512i hi_perm, __m512* v0, __m512* v1) {
  const __m512i b32 = _mm512_cvtepu8_epi32(bytes);
  const __m512i hi = _mm512_srli_epi32(b32, 4);
  const __m512i lo = _mm512_and_si512(b32, _mm512_set1_epi32(0xf));
  const __m512i idx0 = _mm512_permutex2var_epi32(hi, lo_perm, lo);
  const __m512i idx1 = _mm512_permutex2var_epi32(hi, hi_perm, lo);
  *v0 = _mm512_mul_ps(_mm512_permutexvar_ps(idx0, code), scale);
  *v1 = _mm512_mul_ps(_mm512_permutexvar_ps(idx1, code), scale);
}

// One block segment [e, e + count) with one scale; e is even.
BIDORA_AVX512 inline void nf4_segment_even(const uint8_t* packed, int64_t e, int64_t count, __m512 code,
                                           __m512 scale, __m512i lo_perm, __m512i hi_perm, float* out) {
  const uint8_t* p = packed + (e >> 1);
  __m512 v0, v1;
  for (; count >= 32; count -= 32, p += 16, out += 32) {
    nf4_expand32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), code, scale, lo_perm, hi_perm, &v0,
                 &v1);
    _mm512_storeu_ps(out, v0);
    _mm512_storeu_ps(out + 16, v1);
  }
  if (count > 0) {  // masked load of the (count + 1) / 2 bytes left, masked stores
    const __mmask16 bytes_mask = static_cast<__mmask16>((1u << ((count + 1) >> 1)) - 1u);
    nf4_expand32(_mm_maskz_loadu_epi8(bytes_mask, p), code, scale, lo_perm, hi_perm, &v0, &v1);
    if (count >= 16) {
      _mm512_storeu_ps(out, v0);
      _mm512_mask_storeu_ps(out + 16, static_cast<__mmask16>((1u << (count - 16)) - 1u), v1);
    } else {
      _mm512_mask_storeu_ps(out, static_cast<__mmask16>((1u << count) - 1u), v0);
    }
  }
}

BIDORA_AVX512 void nf4_range_avx512(const uint8_t* packed, int64_t first, int64_t count, int64_t blocksize,
                                    const float* scales, const float* code16, float* out) {
  const __m512 code = _mm512_loadu_ps(code16);
  const __m512i lo_perm = interleave_lo(), hi_perm = interleave_hi();
  const int64_t end = first + count;
  const int64_t block0 = first / blocksize;
  for (int64_t seg = first; seg < end;) {
    const int64_t b = seg / blocksize;
    const int64_t seg_end = std::min(end, (b + 1) * blocksize);
    const float s = scales[b - block0];
    int64_t e = seg;
    if (e & 1) {  // odd start: the low nibble of its byte, scalar (same single multiply)
      *out++ = code16[packed[e >> 1] & 0xf] * s;
      ++e;
    }
    nf4_segment_even(packed, e, seg_end - e, code, _mm512_set1_ps(s), lo_perm, hi_perm, out);
    out += seg_end - e;
    seg = seg_end;
  }
}

BIDORA_AVX512 void int8_range_avx512(const int8_t* q, int64_t first, int64_t count, int64_t blocksize,
                                     const float* scales, float* out) {
  const __m512 inv127 = _mm512_set1_ps(kInv127);
  const int64_t end = first + count;
  const int64_t block0 = first / blocksize;
  for (int64_t seg = first; seg < end;) {
    const int64_t b = seg / blocksize;
    const int64_t seg_end = std::min(end, (b + 1) * blocksize);
    const __m512 s = _mm512_set1_ps(scales[b - block0]);
    int64_t e = seg;
    for (; e + 16 <= seg_end; e += 16, out += 16) {
      const __m512 v =
          _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + e))));
      _mm512_storeu_ps(out, _mm512_mul_ps(_mm512_mul_ps(v, s), inv127));
    }
    if (e < seg_end) {
      const int64_t left = seg_end - e;
      const __mmask16 m = static_cast<__mmask16>((1u << left) - 1u);
      const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, q + e)));
      _mm512_mask_storeu_ps(out, m, _mm512_mul_ps(_mm512_mul_ps(v, s), inv127));
      out += left;
    }
    seg = seg_end;
  }
}

const KernelTable kAvx512Kernels = {nf4_range_avx512, int8_range_avx512};

}  // namespace

const KernelTable* avx512_kernels() {
  return &kAvx512Kernels;
}

}  // namespace bidora::quant::detail

#else

namespace bidora::quant::detail {
const KernelTable* avx512_kernels() {
  return nullptr;
}
}  // namespace bidora::quant::detail

#endif
