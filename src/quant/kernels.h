#pragma once
// Dequantisation kernels behind Nf4Matrix / Int8Matrix: a portable scalar version and an
// AVX-512 one (src/quant/kernels_avx512.cpp, compiled for AVX-512 with target attributes and
// chosen at run time when the CPU supports it). Both produce bit-identical results: each output is
// one float32 multiply (NF4) or two (int8), with no fusing.
#include <cstdint>

namespace bidora::quant {

enum class Kernel {
  Auto,    // AVX-512 when available, else scalar
  Scalar,  // portable C++ (always available)
  Avx512,  // AVX-512F/BW/VL; requesting it on a CPU without them is an error
};

const char* kernel_name(Kernel k);
bool avx512_available();          // compiled in and supported by this CPU
Kernel resolve_kernel(Kernel k);  // Auto -> the concrete choice; throws for unavailable Avx512

// float32(1/127): bitsandbytes' int8_vectorwise_dequant multiplies by 7.874015718698502e-3.
inline constexpr float kInv127 = 7.874015718698502e-3f;

namespace detail {

// Elements [first, first + count) of a blockwise-quantised flat tensor. Element e belongs to block
// e / blocksize; scales[j] is the scale of block first / blocksize + j.
//
// NF4: element e is the high nibble of packed[e / 2] when e is even, the low one when odd;
//      out[i] = code16[nibble] * scale.
using Nf4RangeFn = void (*)(const uint8_t* packed, int64_t first, int64_t count, int64_t blocksize,
                            const float* scales, const float* code16, float* out);
// int8: out[i] = (float(q[e]) * scale) * kInv127, two float32 roundings.
using Int8RangeFn = void (*)(const int8_t* q, int64_t first, int64_t count, int64_t blocksize,
                             const float* scales, float* out);

struct KernelTable {
  Nf4RangeFn nf4;
  Int8RangeFn int8;
};

const KernelTable& kernel_table(Kernel k);  // k resolved with resolve_kernel

// Implementations (kernels_scalar.cpp / kernels_avx512.cpp).
extern const KernelTable kScalarKernels;
const KernelTable* avx512_kernels();  // nullptr when not compiled in (non-x86 builds)

}  // namespace detail
}  // namespace bidora::quant
