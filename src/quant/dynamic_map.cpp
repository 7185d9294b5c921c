#include "quant/dynamic_map.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/error.h"

namespace bidora::quant {
namespace {

// torch.linspace(start, end, steps) for float32 as the PyTorch >= 2.1 CPU kernel computes it.
// `start + step * i` is contracted to one FMA by the compiler that builds PyTorch's AVX2/AVX-512
// kernels, hence std::fma (exact product, one rounding).
std::vector<float> torch_linspace_f32(float start, float end, int64_t steps) {
  std::vector<float> out(static_cast<size_t>(steps));
  const float step = (end - start) / static_cast<float>(steps - 1);
  const int64_t halfway = steps / 2;
  for (int64_t i = 0; i < steps; ++i) {
    out[static_cast<size_t>(i)] = i < halfway ? std::fma(step, static_cast<float>(i), start)
                                              : std::fma(-step, static_cast<float>(steps - i - 1), end);
  }
  return out;
}

// Python's 10 ** k for k <= 0 (a double; exactly 1e-6 ... 1), which torch then multiplies with a
// float32 tensor as a float32 scalar.
float decade(int k) {
  static constexpr double kPow10[] = {1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9};
  BIDORA_CHECK(k <= 0 && -k < 10, "create_dynamic_map: exponent 10^{} out of range", k);
  return static_cast<float>(kPow10[-k]);
}

// One linspace(0.1, 1, items) run of bin means times 10^k, appended (and negated if signed).
void append_means(std::vector<double>& data, int64_t items, int k, bool is_signed) {
  const std::vector<float> b = torch_linspace_f32(0.1f, 1.0f, items);
  const float scale = decade(k);
  for (size_t j = 0; j + 1 < b.size(); ++j) {
    const float mean = (b[j] + b[j + 1]) / 2.0f;
    data.push_back(scale * mean);
  }
  if (is_signed) {
    for (size_t j = 0; j + 1 < b.size(); ++j) {
      const float mean = (b[j] + b[j + 1]) / 2.0f;
      data.push_back(-scale * mean);
    }
  }
}

}  // namespace

Code256 create_dynamic_map(bool is_signed, int max_exponent_bits, int total_bits) {
  BIDORA_CHECK(total_bits >= 2 && total_bits <= 8 && max_exponent_bits >= 1 && max_exponent_bits < total_bits,
               "create_dynamic_map: unsupported max_exponent_bits={} total_bits={}", max_exponent_bits,
               total_bits);
  // Same structure as bitsandbytes.functional.create_dynamic_map (values kept as doubles like its
  // Python list; each one is a float32 product, so the final float conversion is exact).
  std::vector<double> data;
  const int non_sign_bits = total_bits - 1;
  const int64_t additional_items = (int64_t{1} << (non_sign_bits - max_exponent_bits)) - 1;
  int i = 0;
  for (i = 0; i < max_exponent_bits; ++i) {
    const int64_t fraction_items = is_signed
                                       ? (int64_t{1} << (i + non_sign_bits - max_exponent_bits)) + 1
                                       : (int64_t{1} << (i + non_sign_bits - max_exponent_bits + 1)) + 1;
    append_means(data, fraction_items, -(max_exponent_bits - 1) + i, is_signed);
  }
  // bitsandbytes reuses the loop variable after the loop, i.e. the last decade.
  if (additional_items > 0)
    append_means(data, additional_items + 1, -(max_exponent_bits - 1) + (i - 1), is_signed);
  data.push_back(0.0);
  data.push_back(1.0);
  BIDORA_CHECK(data.size() == (size_t{1} << total_bits),
               "create_dynamic_map(signed={}, max_exponent_bits={}, total_bits={}) yields {} values, not {} "
               "(bitsandbytes rejects this combination too)",
               is_signed, max_exponent_bits, total_bits, data.size(), size_t{1} << total_bits);
  data.resize(256, 0.0);
  std::sort(data.begin(), data.end());
  Code256 code{};
  for (size_t j = 0; j < 256; ++j) code[j] = static_cast<float>(data[j]);
  return code;
}

const Code256& dynamic_map_signed() {
  static const Code256 code = create_dynamic_map(true);
  return code;
}

const Code256& dynamic_map_unsigned() {
  static const Code256 code = create_dynamic_map(false);
  return code;
}

}  // namespace bidora::quant
