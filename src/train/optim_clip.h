#pragma once
// Global gradient-norm clipping as torch.nn.utils.clip_grad_norm_ (torch 1.13, norm_type 2,
// error_if_nonfinite = False), which HF Trainer applies when max_grad_norm > 0:
//   norm_i = ||grad_i||_2 per tensor, total = ||(norm_1, ..., norm_n)||_2,
//   coef   = max_norm / (total + 1e-6)   (float32), grads *= coef only when coef < 1.
// Sums of squares are accumulated in double over fixed chunks in a fixed order, so the result
// does not depend on the thread count (reproducible runs); each norm is rounded to float like
// torch's float32 norm. A non-finite total gives a NaN/zero coefficient that is applied, as in
// torch (the Trainer then sees a NaN loss/grad-norm).
#include <span>

#include "train/optim_params.h"

namespace bidora::train {

// Returns the total norm BEFORE clipping (what the Trainer logs as grad_norm). max_norm <= 0
// only computes the norm.
double clip_grad_norm(std::span<const ParamRef> params, double max_norm);

// The total L2 norm alone (no clipping).
double grad_norm(std::span<const ParamRef> params);

// grads *= factor (e.g. 1 / number of non-ignored tokens of the whole accumulated step).
void scale_grads(std::span<const ParamRef> params, float factor);

}  // namespace bidora::train
