#include "quant/exact_mean.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/error.h"

namespace bidora::quant {
namespace {

// A 320-bit unsigned fixed-point number counting units of 2^-149 (the smallest float32
// subnormal). Every finite float32 is an integer number of units below 2^277, so up to 2^40 of
// them add up exactly.
struct Wide {
  static constexpr int kLimbs = 5;
  uint64_t w[kLimbs] = {0, 0, 0, 0, 0};

  void add_shifted(uint64_t m, int shift) {  // += m << shift, m < 2^24
    const int limb = shift / 64, bit = shift % 64;
    unsigned __int128 carry = static_cast<unsigned __int128>(m) << bit;
    for (int i = limb; i < kLimbs && carry != 0; ++i) {
      const unsigned __int128 s = static_cast<unsigned __int128>(w[i]) + static_cast<uint64_t>(carry);
      w[i] = static_cast<uint64_t>(s);
      carry = (carry >> 64) + (s >> 64);
    }
  }
  bool less_than(const Wide& o) const {
    for (int i = kLimbs - 1; i >= 0; --i)
      if (w[i] != o.w[i]) return w[i] < o.w[i];
    return false;
  }
  void subtract(const Wide& o) {  // *this -= o, requires *this >= o
    uint64_t borrow = 0;
    for (int i = 0; i < kLimbs; ++i) {
      const uint64_t a = w[i], b = o.w[i];
      const uint64_t d = a - b - borrow;
      borrow = (a < b || (a == b && borrow)) ? 1 : 0;
      w[i] = d;
    }
  }
  uint64_t divide(uint64_t n) {  // *this /= n, returns the remainder
    unsigned __int128 rem = 0;
    for (int i = kLimbs - 1; i >= 0; --i) {
      const unsigned __int128 cur = (rem << 64) | w[i];
      w[i] = static_cast<uint64_t>(cur / n);
      rem = cur % n;
    }
    return static_cast<uint64_t>(rem);
  }
  int bit_length() const {
    for (int i = kLimbs - 1; i >= 0; --i)
      if (w[i] != 0) return 64 * i + 64 - std::countl_zero(w[i]);
    return 0;
  }
  bool bit(int k) const { return (w[k / 64] >> (k % 64)) & 1u; }
  bool any_below(int k) const {  // any of bits [0, k) set
    for (int i = 0; i < k / 64; ++i)
      if (w[i] != 0) return true;
    return k % 64 != 0 && (w[k / 64] & ((uint64_t{1} << (k % 64)) - 1)) != 0;
  }
  uint64_t bits_from(int k) const {  // (this >> k), known to fit in 64 bits
    const int limb = k / 64, bit = k % 64;
    uint64_t lo = w[limb] >> bit;
    if (bit != 0 && limb + 1 < kLimbs) lo |= w[limb + 1] << (64 - bit);
    return lo;
  }
};

}  // namespace

float exact_mean_f32(const float* values, size_t n) {
  BIDORA_CHECK(n > 0, "exact_mean_f32: no values");
  BIDORA_CHECK(n <= (size_t{1} << 40), "exact_mean_f32: {} values exceed the exact range", n);
  Wide pos, neg;
  for (size_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, &values[i], 4);
    const uint32_t exp = (u >> 23) & 0xffu;
    BIDORA_CHECK(exp != 0xffu, "exact_mean_f32: value {} is not finite", i);
    uint64_t mant = u & 0x7fffffu;
    int shift = 0;  // value = mant * 2^(shift - 149)
    if (exp != 0) {
      mant |= 0x800000u;
      shift = static_cast<int>(exp) - 1;
    }
    ((u >> 31) ? neg : pos).add_shifted(mant, shift);
  }
  const bool negative = pos.less_than(neg);
  Wide mag = negative ? neg : pos;
  mag.subtract(negative ? pos : neg);
  const uint64_t rem = mag.divide(n);  // mean = (mag + rem / n) units

  // Round mag + rem/n to the float32 grid: 24 significant bits, never finer than one unit.
  const int len = mag.bit_length();
  const int k = len > 24 ? len - 24 : 0;
  uint64_t hi = mag.bits_from(k);
  int cmp;  // the discarded part against half a grid step: -1 below, 0 tie, 1 above
  if (k == 0) {
    const unsigned __int128 twice = static_cast<unsigned __int128>(rem) * 2;
    cmp = twice < n ? -1 : (twice == n ? 0 : 1);
  } else if (!mag.bit(k - 1)) {
    cmp = -1;
  } else {
    cmp = (mag.any_below(k - 1) || rem != 0) ? 1 : 0;
  }
  if (cmp > 0 || (cmp == 0 && (hi & 1u))) ++hi;
  const double result = std::ldexp(static_cast<double>(hi), k - 149);  // on the float32 grid: exact
  return static_cast<float>(negative ? -result : result);
}

}  // namespace bidora::quant
