#pragma once
// A small deterministic random generator with our own bounded-integer and shuffle routines:
// std::uniform_int_distribution and std::shuffle are implementation-defined, so they could give
// a different data order with another standard library. Same seed => same order, everywhere.
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

namespace bidora::data {

class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();                 // xoshiro256** step
  uint64_t below(uint64_t bound);  // uniform in [0, bound), bound > 0 (unbiased: rejection sampling)
  double uniform();                // uniform in [0, 1) with 53 random bits

 private:
  uint64_t s_[4];
};

// A seed for an independent stream (e.g. one per epoch) derived from a base seed.
uint64_t derive_seed(uint64_t seed, uint64_t stream);

// Fisher-Yates shuffle.
template <typename T>
void shuffle(std::vector<T>& v, Rng& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}

// A uniformly random permutation of 0..n-1.
inline std::vector<int64_t> permutation(int64_t n, Rng& rng) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  shuffle(p, rng);
  return p;
}

}  // namespace bidora::data
