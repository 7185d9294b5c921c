#pragma once
// Benchmark inputs: a cheap deterministic fill (an LCG), fast enough for the hundreds of
// millions of values an lm_head needs, where the tests' random generators would dominate setup.
#include <cstdint>
#include <vector>

namespace bidora::bench {

// n values uniform in [-scale, scale), the same for the same seed.
inline std::vector<float> filled(size_t n, uint32_t seed, float scale = 1.0f) {
  std::vector<float> v(n);
  uint32_t s = seed * 2654435761u + 1;
  for (float& x : v) {
    s = s * 1664525u + 1013904223u;
    x = scale * (static_cast<float>(s >> 8) * (2.0f / 16777216.0f) - 1.0f);
  }
  return v;
}

}  // namespace bidora::bench
