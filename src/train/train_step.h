#pragma once
// One optimiser step as HF Trainer takes it: the gradients of Σ token losses over all
// micro-batches of the step divided by the number of trained (non-ignored, shifted) labels of
// the whole step, global-norm clipping, then the optimiser update at the scheduled learning rate.
#include <cstdint>
#include <span>
#include <vector>

#include "adapters/adapter_runtime.h"
#include "model/decoder.h"
#include "train/lr_schedule.h"
#include "train/optim_optimizer.h"

namespace bidora::train {

// The optimiser's view of every trainable adapter tensor, named with its PEFT key; weight decay
// per HF Trainer's rule.
std::vector<ParamRef> adapter_params(AdapterSet& set);
void zero_adapter_grads(AdapterSet& set);

// Labels that count in the loss of a batch: shifted labels != -100.
int64_t trained_label_count(const TokenBatch& b);

struct StepResult {
  double loss = 0;       // mean token loss of the step (what the Trainer logs)
  int64_t tokens = 0;    // labels it averaged over
  double grad_norm = 0;  // global L2 norm before clipping
  double lr = 0;         // learning rate used for the update
};

struct StepOptions {
  int64_t step = 0;            // 0-based optimiser step (the schedule's position)
  double max_grad_norm = 1.0;  // <= 0 disables clipping
  uint64_t seed = 42;          // dropout masks: keyed by (seed, step · micro-batches + index)
};

StepResult train_step(Decoder& decoder, AdapterRuntime& runtime, std::span<const TokenBatch> micro_batches,
                      Optimizer& optimizer, const LrSchedule& schedule, const StepOptions& opts);

}  // namespace bidora::train
