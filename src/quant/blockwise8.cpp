#include "quant/blockwise8.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace bidora::quant {

uint8_t quantize_to_code(float y, const Code256& code) {
  // A transcription of dQuantize<STOCHASTIC=0>: seven halving steps from index 127 visit only odd
  // indices and end on an even `pivot` bracketed by lower_pivot/upper_pivot (its neighbours once
  // they have been set); the last comparison picks the nearer neighbour with a float32 midpoint.
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = -1.0f, upper = 1.0f;
  float val = code[pivot];
  for (int i = 64; i > 0; i >>= 1) {
    if (y > val) {
      lower_pivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upper_pivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[static_cast<size_t>(pivot)];
  }
  if (upper_pivot == 255) upper = code[255];
  if (lower_pivot == 0) lower = code[0];
  if (y > val) {
    const float midpoint = (upper + val) * 0.5f;
    return static_cast<uint8_t>(y > midpoint ? upper_pivot : pivot);
  }
  const float midpoint = (lower + val) * 0.5f;
  return static_cast<uint8_t>(y < midpoint ? lower_pivot : pivot);
}

BlockScale block_scale(float absmax) {
  BlockScale s;
  s.absmax = absmax;
  if (absmax == 0.0f) return s;  // reciprocal 0: every element normalises to 0
  s.reciprocal = 1.0f / absmax;
  if (std::isinf(s.reciprocal)) {
    s.reciprocal = 0.0f;
    s.divide = true;
  }
  return s;
}

float block_absmax(const float* x, int64_t n) {
  float m = 0.0f;
  for (int64_t i = 0; i < n; ++i) m = std::fmax(m, std::fabs(x[i]));
  return m;
}

void quantize_blockwise(std::span<const float> x, const Code256& code, int64_t blocksize,
                        std::span<uint8_t> q, std::span<float> absmax) {
  const int64_t n = static_cast<int64_t>(x.size());
  BIDORA_CHECK(blocksize >= 1, "quantize_blockwise: blocksize {} must be positive", blocksize);
  const int64_t nb = num_blocks(n, blocksize);
  BIDORA_CHECK(static_cast<int64_t>(q.size()) == n && static_cast<int64_t>(absmax.size()) == nb,
               "quantize_blockwise: {} values need {} codes and {} absmax, got {} and {}", n, n, nb, q.size(),
               absmax.size());
#pragma omp parallel for schedule(static) if (n >= (int64_t{1} << 16))
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t begin = b * blocksize;
    const int64_t len = std::min(blocksize, n - begin);
    const BlockScale s = block_scale(block_absmax(x.data() + begin, len));
    absmax[static_cast<size_t>(b)] = s.absmax;
    for (int64_t i = begin; i < begin + len; ++i)
      q[static_cast<size_t>(i)] = quantize_to_code(s.normalise(x[static_cast<size_t>(i)]), code);
  }
}

void dequantize_blockwise(std::span<const uint8_t> q, std::span<const float> absmax, const Code256& code,
                          int64_t blocksize, std::span<float> out) {
  const int64_t n = static_cast<int64_t>(q.size());
  BIDORA_CHECK(blocksize >= 1, "dequantize_blockwise: blocksize {} must be positive", blocksize);
  BIDORA_CHECK(static_cast<int64_t>(out.size()) == n &&
                   static_cast<int64_t>(absmax.size()) == num_blocks(n, blocksize),
               "dequantize_blockwise: {} codes need {} absmax and {} outputs, got {} and {}", n,
               num_blocks(n, blocksize), n, absmax.size(), out.size());
  for (int64_t i = 0; i < n; ++i) {
    const size_t k = static_cast<size_t>(i);
    out[k] = code[q[k]] * absmax[static_cast<size_t>(i / blocksize)];
  }
}

}  // namespace bidora::quant
