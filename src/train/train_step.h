#pragma once
// One optimiser step as HF Trainer takes it: the gradients of Σ token losses over all
// micro-batches of the step divided by the number of trained (non-ignored, shifted) labels of
// the whole step, global-norm clipping, then the optimiser update at the scheduled learning rate.
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "adapters/adapter_runtime.h"
#include "adapters/peft_io.h"
#include "model/decoder.h"
#include "train/lr_schedule.h"
#include "train/optim_optimizer.h"

namespace bidora::train {

// The optimiser's view of every trainable adapter tensor, named with its PEFT key; weight decay
// per HF Trainer's rule.
std::vector<ParamRef> adapter_params(AdapterSet& set);
ParamRef adapter_param(LoraLayer& layer, AdapterTensor which);
void zero_adapter_grads(AdapterSet& set);

// The dropout key of micro-batch `index` of optimiser step `step`, so every pass over that
// micro-batch (forward, replay, BiDoRA's finite-difference passes) sees the same masks.
DropoutKey micro_batch_dropout_key(uint64_t seed, int64_t step, int64_t micro_batches, int64_t index);

// Labels that count in the loss of a batch: shifted labels != -100.
int64_t trained_label_count(const TokenBatch& b);

struct StepResult {
  double loss = 0;         // mean token loss of the step (+ the regulariser; what the Trainer logs)
  double regulariser = 0;  // the regulariser's part of `loss`
  int64_t tokens = 0;      // labels it averaged over
  double grad_norm = 0;    // global L2 norm before clipping
  double lr = 0;           // learning rate used for the update
};

struct StepOptions {
  int64_t step = 0;            // 0-based optimiser step (the schedule's position)
  double max_grad_norm = 1.0;  // <= 0 disables clipping
  uint64_t seed = 42;          // dropout masks: keyed by (seed, step · micro-batches + index)
  // Which adapter gradients the backward passes compute (BiDoRA's lower level: directions only).
  BackwardWants wants;
  // A penalty on the parameters alone (BiDoRA's direction regulariser), called once per step
  // after the micro-batches: adds its gradient to the adapter grads and returns its value,
  // which is added to the step's loss.
  std::function<double()> regulariser;
};

StepResult train_step(Decoder& decoder, AdapterRuntime& runtime, std::span<const TokenBatch> micro_batches,
                      Optimizer& optimizer, const LrSchedule& schedule, const StepOptions& opts);

}  // namespace bidora::train
