#pragma once
// The NF4 data type of bitsandbytes (QLoRA): the 16 code values and the quantisation decision.
// Facts from shared/reference/formats.md §3.1-3.2 and bitsandbytes csrc/kernels.cu.
#include <array>
#include <cstdint>

namespace bidora::quant {

// get_4bit_type("nf4"): normal-distribution quantiles normalised to [-1, 1], index = 4-bit code.
inline constexpr std::array<float, 16> kNf4Code = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

// The float literals dQuantizeNF4 compares against. They are the shortest decimal forms of the
// midpoints between neighbouring codes (computed in double) with an `f` suffix, so the compiler
// rounds the decimal text once to float; for 4 of them (indices 0, 8, 12, 14) that is one ulp away
// from (float)midpoint, which is what a float32 torch comparison against the double would use.
// kNf4Threshold[i] separates code i from code i + 1.
inline constexpr std::array<float, 15> kNf4Threshold = {
    -0.8480964004993439f,  -0.6106329262256622f,  -0.4599952697753906f,   -0.33967943489551544f,
    -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
    0.1202552504837513f,   0.2035212516784668f,   0.2920137718319893f,    0.3893125355243683f,
    0.5016634166240692f,   0.6427869200706482f,   0.8614784181118011f,
};

// dQuantizeNF4: the same tree of strict `>` comparisons as the CUDA kernel, so a value exactly on
// a midpoint gets the lower code, and NaN falls through to code 0 like on the GPU.
inline uint8_t nf4_quantize_value(float x) {
  if (x > 0.03979014977812767f) {
    if (x > 0.3893125355243683f) {
      if (x > 0.6427869200706482f) return x > 0.8614784181118011f ? 0b1111 : 0b1110;
      return x > 0.5016634166240692f ? 0b1101 : 0b1100;
    }
    if (x > 0.2035212516784668f) return x > 0.2920137718319893f ? 0b1011 : 0b1010;
    return x > 0.1202552504837513f ? 0b1001 : 0b1000;
  }
  if (x > -0.33967943489551544f) {
    if (x > -0.13791173323988914f) return x > -0.045525018125772476f ? 0b0111 : 0b0110;
    return x > -0.23460740596055984f ? 0b0101 : 0b0100;
  }
  if (x > -0.6106329262256622f) return x > -0.4599952697753906f ? 0b0011 : 0b0010;
  return x > -0.8480964004993439f ? 0b0001 : 0b0000;
}

}  // namespace bidora::quant
