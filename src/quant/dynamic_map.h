#pragma once
// bitsandbytes' "dynamic" 8-bit data type (create_dynamic_map): the code table used for the
// double-quantised NF4 statistics and for the 8-bit optimizer states.
#include <array>

namespace bidora::quant {

using Code256 = std::array<float, 256>;

// create_dynamic_map(signed, max_exponent_bits, total_bits), bit-identical to bitsandbytes running
// on PyTorch >= 2.1 (x86/ARM). bitsandbytes computes the fraction boundaries with float32
// torch.linspace; that kernel evaluates start + step*i (first half) and end - step*(steps-1-i)
// (second half) with a fused multiply-add, which we reproduce with std::fma. (PyTorch <= 2.0 used
// a vectorised variant that rounds ~40 of the 256 entries differently; the maps stored in real
// bitsandbytes checkpoints match the form used here.) The 256 values are sorted; for fewer than
// 8 total bits the unused entries are zeros, as in bitsandbytes. Throws bidora::Error for
// parameter combinations whose value count is not 2^total_bits (bitsandbytes asserts).
Code256 create_dynamic_map(bool is_signed, int max_exponent_bits = 7, int total_bits = 8);

// The two maps in use, built once: signed (double quantisation, Adam's first moment) and
// unsigned (Adam's second moment).
const Code256& dynamic_map_signed();
const Code256& dynamic_map_unsigned();

}  // namespace bidora::quant
