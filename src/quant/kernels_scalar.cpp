// Portable dequantisation kernels: the reference the AVX-512 kernels are tested against.
#include <algorithm>

#include "core/error.h"
#include "quant/kernels.h"

namespace bidora::quant {
namespace detail {
namespace {

void nf4_range_scalar(const uint8_t* packed, int64_t first, int64_t count, int64_t blocksize,
                      const float* scales, const float* code16, float* out) {
  const int64_t end = first + count;
  const int64_t block0 = first / blocksize;
  for (int64_t seg = first; seg < end;) {
    const int64_t b = seg / blocksize;
    const int64_t seg_end = std::min(end, (b + 1) * blocksize);
    const float s = scales[b - block0];
    int64_t e = seg;
    if (e & 1) {  // odd start: the low nibble of its byte
      *out++ = code16[packed[e >> 1] & 0xf] * s;
      ++e;
    }
    for (; e + 1 < seg_end; e += 2) {
      const uint8_t byte = packed[e >> 1];
      out[0] = code16[byte >> 4] * s;
      out[1] = code16[byte & 0xf] * s;
      out += 2;
    }
    if (e < seg_end) *out++ = code16[packed[e >> 1] >> 4] * s;  // odd end: a high nibble
    seg = seg_end;
  }
}

void int8_range_scalar(const int8_t* q, int64_t first, int64_t count, int64_t blocksize, const float* scales,
                       float* out) {
  const int64_t end = first + count;
  const int64_t block0 = first / blocksize;
  for (int64_t seg = first; seg < end;) {
    const int64_t b = seg / blocksize;
    const int64_t seg_end = std::min(end, (b + 1) * blocksize);
    const float s = scales[b - block0];
    for (int64_t e = seg; e < seg_end; ++e) *out++ = (static_cast<float>(q[e]) * s) * kInv127;
    seg = seg_end;
  }
}

}  // namespace

const KernelTable kScalarKernels = {nf4_range_scalar, int8_range_scalar};

const KernelTable& kernel_table(Kernel k) {
  if (resolve_kernel(k) == Kernel::Avx512) return *avx512_kernels();
  return kScalarKernels;
}

}  // namespace detail

const char* kernel_name(Kernel k) {
  switch (k) {
    case Kernel::Auto:
      return "auto";
    case Kernel::Scalar:
      return "scalar";
    case Kernel::Avx512:
      return "avx512";
  }
  return "?";
}

bool avx512_available() {
  static const bool ok = [] {
    if (detail::avx512_kernels() == nullptr) return false;
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
#else
    return false;
#endif
  }();
  return ok;
}

Kernel resolve_kernel(Kernel k) {
  if (k == Kernel::Auto) return avx512_available() ? Kernel::Avx512 : Kernel::Scalar;
  BIDORA_CHECK(
      k != Kernel::Avx512 || avx512_available(),
      "AVX-512 dequantisation kernels requested, but this build/CPU does not support AVX-512F/BW/VL");
  return k;
}

}  // namespace bidora::quant
