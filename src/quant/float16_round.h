#pragma once
// float32 -> nearest float16 value (ties to even), returned as float32. bitsandbytes' LLM.int8
// quantiser runs on float16 weights (Int8Params._quantize casts with .to(torch.float16)), so the
// row-wise int8 path rounds through float16 first to produce the same bytes.
#include <bit>
#include <cmath>
#include <cstdint>

namespace bidora::quant {

inline float round_to_f16(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint32_t sign = u & 0x80000000u;
  const uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) return x;                                         // inf, NaN
  if (a >= 0x477ff000u) return std::bit_cast<float>(sign | 0x7f800000u);  // >= 65520: rounds to inf
  if (a < 0x38800000u) {  // below 2^-14: the float16 subnormal grid, step 2^-24 (scaling is exact)
    const float steps = std::nearbyint(std::bit_cast<float>(a) * 0x1p24f);
    return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(steps * 0x1p-24f));
  }
  // Normal: keep 10 of the 23 mantissa bits, round half to even (a carry may bump the exponent).
  const uint32_t r = (a + 0xfffu + ((a >> 13) & 1u)) & ~0x1fffu;
  return std::bit_cast<float>(sign | r);
}

}  // namespace bidora::quant
