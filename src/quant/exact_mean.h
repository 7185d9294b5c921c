#pragma once
// The mean of float32 values, rounded once (to nearest, ties to even) to float32.
//
// Double quantisation subtracts mean(absmax) before quantising the statistics. bitsandbytes uses
// torch's float32 mean, whose summation order (and so its last bits) depends on the device, the
// SIMD width and the number of threads, so there is no single value to reproduce. We define the
// offset as the exactly rounded mean instead: deterministic, order independent, and never further
// than half an ulp from the true mean (torch's float32 mean agrees to within a few ulp).
#include <cstddef>

namespace bidora::quant {

// values must be finite; n > 0. Exact for any n up to 2^40.
float exact_mean_f32(const float* values, size_t n);

}  // namespace bidora::quant
