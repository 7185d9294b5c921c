#pragma once
// bitsandbytes' 8-bit AdamW (bnb.optim.AdamW8bit / HF optim "adamw_bnb_8bit"), CPU port of
// kOptimizerStatic8bit2StateBlockwise (bitsandbytes csrc/kernels.cu). Per parameter tensor:
//
// * numel >= 4096 (min_8bit_size): blockwise quantised states, blocksize 256. state1 (m) uses the
//   SIGNED dynamic map, state2 (v) the UNSIGNED map, each block has its own float32 absmax. Both
//   start as code 0 with absmax 0 (bnb's zero-initialised buffers), i.e. dequantise to 0. Per step:
//     s2 = code2[q2] * absmax2;  s2 = s2 * beta2 + (1 - beta2) * g * g
//     s1 = code1[q1] * absmax1;  s1 = s1 * beta1 + (1 - beta1) * g
//     (elements with a non-finite gradient get s1 = s2 = 0 and their parameter is left alone)
//     new absmax = max |s| over the block (before requantisation)
//     p = p + step_size * (s1 / (sqrt(s2) + correction2 * eps))  with the UNquantised s1, s2
//     p = p * (1 - lr * wd)                                       (decay AFTER the update, as bnb)
//     q = quantize_2D(s / new absmax), then the kernel's sign fix for state1: if the code's sign
//         differs from s1's, q1 += 1 when s1 > 0 else q1 -= 1 (8-bit wrap-around as in CUDA).
//   correction1 = 1 - beta1^t, correction2 = sqrt(1 - beta2^t), step_size = -lr * correction2 / correction1.
// * numel < 4096: 32-bit states, kOptimizer32bit2State's Adam:
//     s1 = s1 * beta1 + (1 - beta1) * g;  s2 = s2 * beta2 + (1 - beta2) * (g * g)
//     p = p + step_size * (s1 / (sqrt(s2) + eps * correction2));  then the same decay.
//
// Documented deviations from the CUDA kernel (all below float rounding of one step):
// * The GPU uses __powf / __fdividef (approximate intrinsics) and nvcc contracts a*b+c into FMAs;
//   we evaluate every float operation separately and correctly rounded (beta^t in double, rounded
//   once), so results are reproducible on any CPU and are matched bit-for-bit by the vectorised
//   torch re-implementation in tests/reference/optim_reference.py.
// * A block whose new absmax is 0 (all states exactly 0): the GPU divides 0/0 = NaN; quantize_2D
//   then returns 0 and the sign fix turns q1 into 255, q2 stays 0. We produce those same codes
//   explicitly instead of relying on the sign of a NaN (they dequantise to 0 either way).
// * Gradients are float32 (bnb also accepts fp16/bf16 gradients); gnorm_scale is 1 (bnb's
//   percentile_clipping = 100 default), max_unorm = 0, skip_zeros = false.
#include <cstdint>
#include <vector>

#include "quant/dynamic_map.h"
#include "train/optim_optimizer.h"

namespace bidora::train {

inline constexpr int64_t kAdam8bitBlocksize = 256;
inline constexpr int64_t kAdam8bitMinSize = 4096;  // bnb min_8bit_size

// bitsandbytes' quantize_2D<SIGNED> for an already normalised value x: a 7-step binary search of
// the sorted 256-entry code starting at index 127 followed by a midpoint test against the two
// neighbours it visited (bounded by -1/0 and 1 for the signed/unsigned maps).
uint8_t quantize_2d(float x, const quant::Code256& code, bool is_signed);
// The same function for bitsandbytes' dynamic maps (signed: dynamic_map_signed, else unsigned),
// answered from precomputed thresholds: identical results, several times faster.
uint8_t quantize_2d_dynamic(float x, bool is_signed);

class AdamW8bit final : public Optimizer {
 public:
  AdamW8bit(std::vector<ParamRef> params, const AdamWConfig& config);
  const char* kind() const override { return "adamw_bnb_8bit"; }
  void save_state(SafetensorsWriter& w) const override;
  void load_state(const SafetensorsFile& f) override;
  std::vector<std::string> state_tensor_names() const override;

  bool is_8bit(size_t i) const { return states_[i].quantised; }
  // Dequantised (or 32-bit) first and second moments of parameter i, for tests and diagnostics.
  std::vector<float> exp_avg(size_t i) const;
  std::vector<float> exp_avg_sq(size_t i) const;

 private:
  struct State {
    bool quantised = false;
    std::vector<uint8_t> q1, q2;          // 8-bit codes (quantised)
    std::vector<float> absmax1, absmax2;  // per block of 256 (quantised)
    std::vector<float> s1, s2;            // 32-bit states (small tensors)
  };
  void update(double lr) override;
  void update_8bit(const ParamRef& p, State& s, float step_size, float correction2, float decay) const;
  void update_32bit(const ParamRef& p, State& s, float step_size, float correction2, float decay) const;

  std::vector<State> states_;
  const quant::Code256& code1_;
  const quant::Code256& code2_;
};

}  // namespace bidora::train
