#pragma once
// 8-bit blockwise quantisation with a 256-entry code (bitsandbytes quantize_blockwise /
// dequantize_blockwise): used for the double-quantised NF4 statistics and, later, for the 8-bit
// AdamW states (blocksize 256; state1 with the signed dynamic map, state2 with the unsigned one).
//
// Quantise, per block of `blocksize` consecutive elements (the last block may be partial):
//   absmax = max |x|                      (float32, stored)
//   y      = x * (1 / absmax)             (float32 reciprocal, then multiply, as kQuantizeBlockwise)
//   q      = nearest code to y            (kernels.cu dQuantize: binary search over the sorted code,
//                                          then a float32 midpoint test; see quantize_to_code)
// Dequantise: x' = code[q] * absmax (float32).
//
// Degenerate blocks (documented choices; bitsandbytes' CUDA kernel would compute 0 * inf = NaN):
//   absmax == 0            -> every element is quantised as y = 0 (the code nearest 0.0);
//   1/absmax overflows     -> (absmax < 2^-128) y = x / absmax instead.
// Inputs should be finite; NaN quantises to code 0 like on the GPU.
#include <cstdint>
#include <span>

#include "quant/dynamic_map.h"

namespace bidora::quant {

// dQuantize<0> of kernels.cu for a value y (normally in [-1, 1]) and a sorted code: the index of
// the nearest code value. Exact midpoints are resolved the way the kernel does it, i.e. towards
// the index the binary search lands on (always even), not always down.
uint8_t quantize_to_code(float y, const Code256& code);

// The reciprocal-multiply normalisation shared by the blockwise quantisers (8-bit, NF4, int8),
// with the degenerate-block rules above.
struct BlockScale {
  float absmax = 0;
  float reciprocal = 0;  // 1/absmax, or 0 for an all-zero block
  bool divide = false;   // 1/absmax overflowed: use x / absmax
  float normalise(float x) const { return divide ? x / absmax : x * reciprocal; }
};
BlockScale block_scale(float absmax);

// Block absmax of n floats (NaN ignored, like fmaxf in the kernel).
float block_absmax(const float* x, int64_t n);

// x.size() elements; q must hold x.size() bytes and absmax ceil(x.size() / blocksize) floats.
// Blocksize: any value >= 1 (bitsandbytes uses 64..4096; 256 for statistics and optimizer states).
void quantize_blockwise(std::span<const float> x, const Code256& code, int64_t blocksize,
                        std::span<uint8_t> q, std::span<float> absmax);
void dequantize_blockwise(std::span<const uint8_t> q, std::span<const float> absmax, const Code256& code,
                          int64_t blocksize, std::span<float> out);

inline int64_t num_blocks(int64_t n, int64_t blocksize) {
  return (n + blocksize - 1) / blocksize;
}

}  // namespace bidora::quant
