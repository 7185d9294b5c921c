#include "train/train_step.h"

#include <cmath>

#include "adapters/peft_io.h"
#include "core/error.h"
#include "core/fault_injection.h"
#include "train/optim_clip.h"

namespace bidora::train {

ParamRef adapter_param(LoraLayer& l, AdapterTensor which) {
  std::vector<float>& value = which == AdapterTensor::A ? l.A : which == AdapterTensor::B ? l.B : l.m;
  std::vector<float>& grad = which == AdapterTensor::A ? l.dA : which == AdapterTensor::B ? l.dB : l.dm;
  ParamRef p;
  p.name = peft_tensor_key(l.layer(), l.kind(), which);
  p.value = value.data();
  p.grad = grad.data();
  p.numel = static_cast<int64_t>(value.size());
  p.decay = hf_trainer_decays(p.name);
  return p;
}

std::vector<ParamRef> adapter_params(AdapterSet& set) {
  std::vector<ParamRef> params;
  for (LoraLayer* l : set.all()) {
    params.push_back(adapter_param(*l, AdapterTensor::A));
    params.push_back(adapter_param(*l, AdapterTensor::B));
    if (l->dora()) params.push_back(adapter_param(*l, AdapterTensor::Magnitude));
  }
  return params;
}

void zero_adapter_grads(AdapterSet& set) {
  for (LoraLayer* l : set.all()) l->zero_grad();
}

DropoutKey micro_batch_dropout_key(uint64_t seed, int64_t step, int64_t micro_batches, int64_t index) {
  DropoutKey key;
  key.seed = seed;
  key.step =
      static_cast<uint64_t>(step) * static_cast<uint64_t>(micro_batches) + static_cast<uint64_t>(index);
  return key;
}

int64_t trained_label_count(const TokenBatch& b) {
  int64_t n = 0;
  if (b.labels.empty()) return 0;
  for (int64_t r = 0; r < b.rows; ++r)
    for (int64_t t = 1; t < b.seq_len; ++t) n += b.labels[r * b.seq_len + t] != kIgnoreIndex;
  return n;
}

StepResult train_step(Decoder& decoder, AdapterRuntime& runtime, std::span<const TokenBatch> micro_batches,
                      Optimizer& optimizer, const LrSchedule& schedule, const StepOptions& opts) {
  StepResult r;
  for (const TokenBatch& b : micro_batches) r.tokens += trained_label_count(b);
  if (r.tokens == 0)
    fail("training step {}: no trained labels in its {} micro-batches", opts.step, micro_batches.size());

  zero_adapter_grads(runtime.set());
  runtime.set_wants(opts.wants);
  const float scale = 1.0f / static_cast<float>(r.tokens);
  double loss_sum = 0;
  for (size_t i = 0; i < micro_batches.size(); ++i) {
    AdapterMode mode;
    mode.training = true;
    mode.dropout =
        micro_batch_dropout_key(opts.seed, opts.step, static_cast<int64_t>(micro_batches.size()), i);
    runtime.set_mode(mode);
    double micro_loss = decoder.forward_backward(micro_batches[i], scale).sum;
    // Test hook (fault_injection.h): a diverged loss in the step's last micro-batch.
    if (i + 1 == micro_batches.size() && fault::reached("nan_loss")) micro_loss = std::nan("");
    // Stop at the micro-batch that diverged, naming it (its rows are reproducible from the step).
    if (!std::isfinite(micro_loss)) {
      runtime.set_wants({});
      fail(
          "training step {}, micro-batch {} of {} ({} rows x {} tokens): the loss is {}; stopped before "
          "updating the adapter (try a lower learning rate, or f32 compute)",
          opts.step + 1, i + 1, micro_batches.size(), micro_batches[i].rows, micro_batches[i].seq_len,
          micro_loss);
    }
    loss_sum += micro_loss;
  }
  runtime.set_wants({});
  r.loss = loss_sum / static_cast<double>(r.tokens);
  if (opts.regulariser) {
    r.regulariser = opts.regulariser();
    r.loss += r.regulariser;
  }
  const std::vector<ParamRef>& params = optimizer.params();
  r.grad_norm = opts.max_grad_norm > 0 ? clip_grad_norm(params, opts.max_grad_norm) : grad_norm(params);
  // A non-finite loss or gradient would poison every parameter and optimiser moment: stop before
  // the update, so the adapter and the last checkpoint stay good.
  if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm))
    fail(
        "training step {}: the loss is {} and the gradient norm {}; stopped before updating the adapter "
        "(try a lower learning rate, or f32 compute)",
        opts.step + 1, r.loss, r.grad_norm);
  fault::kill_if_reached("step");  // test hook: a crash between the backward passes and the update
  r.lr = schedule.lr(opts.step);
  optimizer.step(r.lr);
  return r;
}

}  // namespace bidora::train
