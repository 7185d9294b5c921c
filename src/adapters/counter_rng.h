#pragma once
// Counter-based random numbers: every value is a pure function of a key and an index, so a
// dropout mask recomputed later (backward pass, gradient-checkpointing replay) is bit-identical
// to the one used in the forward pass, and no generator state has to be saved or threaded
// through the layers. The mixer is SplitMix64's finaliser (a bijection on 64 bits with full
// avalanche), applied once per key field and once per element.
#include <cstdint>

namespace bidora {

constexpr uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Folds the fields of a key into one 64-bit stream id.
constexpr uint64_t mix_key(uint64_t a, uint64_t b) {
  return splitmix64(a ^ splitmix64(b));
}

// Uniform in [0, 1) with 24 random bits: exactly representable as float, so comparisons with a
// float threshold behave the same everywhere.
constexpr float counter_uniform(uint64_t stream, uint64_t index) {
  return static_cast<float>(splitmix64(stream ^ splitmix64(index)) >> 40) * (1.0f / 16777216.0f);
}

// Uniform in [0, 1) with 24 random bits, at half counter_uniform's cost: output number `index` of
// the SplitMix64 generator seeded with `stream` (its state after index + 1 steps of the Weyl
// sequence, mixed once). The generator passes BigCrush; streams of different keys are the same
// sequence at offsets about 2^64 apart, so they never overlap in practice. Dropout masks use it:
// their 2 64-bit multiplies per element (4 for counter_uniform) were most of a mask's cost.
constexpr float splitmix_uniform(uint64_t stream, uint64_t index) {
  return static_cast<float>(splitmix64(stream + index * 0x9E3779B97F4A7C15ull) >> 40) * (1.0f / 16777216.0f);
}

}  // namespace bidora
