#include "train/bilevel.h"

#include <cmath>
#include <cstring>
#include <functional>

#include "adapters/peft_io.h"
#include "core/error.h"
#include "train/optim_clip.h"

namespace bidora::train {

namespace {

double squared_norm(const std::vector<ParamRef>& params, bool of_grad) {
  double s = 0;
  for (const ParamRef& p : params) {
    const float* x = of_grad ? p.grad : p.value;
    for (int64_t i = 0; i < p.numel; ++i) s += static_cast<double>(x[i]) * x[i];
  }
  return s;
}

void zero_grads(const std::vector<ParamRef>& params) {
  for (const ParamRef& p : params) std::memset(p.grad, 0, sizeof(float) * p.numel);
}

// Σ over the micro-batches of the token losses, their gradients scaled by 1 / (trained labels
// of all of them), accumulated into whatever `runtime`'s wants select.
double loss_and_grads(Decoder& decoder, AdapterRuntime& runtime, std::span<const TokenBatch> micro,
                      const std::function<AdapterMode(int64_t)>& mode_of, const char* what) {
  int64_t tokens = 0;
  for (const TokenBatch& b : micro) tokens += trained_label_count(b);
  if (tokens == 0) fail("BiDoRA: the {} micro-batches hold no trained labels", what);
  const float scale = 1.0f / static_cast<float>(tokens);
  double sum = 0;
  for (size_t i = 0; i < micro.size(); ++i) {
    runtime.set_mode(mode_of(static_cast<int64_t>(i)));
    sum += decoder.forward_backward(micro[i], scale).sum;
  }
  return sum / static_cast<double>(tokens);
}

}  // namespace

std::vector<ParamRef> direction_params(AdapterSet& set) {
  std::vector<ParamRef> params;
  for (LoraLayer* l : set.all()) {
    params.push_back(adapter_param(*l, AdapterTensor::A));
    params.push_back(adapter_param(*l, AdapterTensor::B));
  }
  return params;
}

std::vector<ParamRef> magnitude_params(AdapterSet& set) {
  std::vector<ParamRef> params;
  for (LoraLayer* l : set.all())
    if (l->dora()) params.push_back(adapter_param(*l, AdapterTensor::Magnitude));
  return params;
}

HypergradientResult magnitude_hypergradient(Decoder& decoder, AdapterRuntime& runtime,
                                            std::span<const TokenBatch> train_micro,
                                            std::span<const TokenBatch> val_micro,
                                            const HypergradientOptions& opts) {
  AdapterSet& set = runtime.set();
  const std::vector<ParamRef> dirs = direction_params(set);
  const std::vector<ParamRef> mags = magnitude_params(set);
  if (mags.empty()) fail("BiDoRA: the adapter has no magnitude vectors (it must be a DoRA adapter)");
  HypergradientResult r;

  // 1. Validation loss: ∂/∂m (the direct term) and v = ∂/∂θ from one backward, no dropout.
  zero_grads(dirs);
  zero_grads(mags);
  runtime.set_wants({.directions = true, .magnitude = true});
  r.val_loss = loss_and_grads(
      decoder, runtime, val_micro, [](int64_t) { return AdapterMode{}; }, "validation");
  std::vector<std::vector<float>> v(dirs.size()), theta(dirs.size());
  for (size_t i = 0; i < dirs.size(); ++i) {
    v[i].assign(dirs[i].grad, dirs[i].grad + dirs[i].numel);
    theta[i].assign(dirs[i].value, dirs[i].value + dirs[i].numel);
  }
  std::vector<std::vector<double>> direct(mags.size()), fd(mags.size());
  for (size_t i = 0; i < mags.size(); ++i) {
    direct[i].assign(mags[i].grad, mags[i].grad + mags[i].numel);
    fd[i].assign(mags[i].numel, 0.0);
  }
  r.v_norm = std::sqrt(squared_norm(dirs, true));
  r.direct_norm = std::sqrt(squared_norm(mags, true));
  if (!std::isfinite(r.val_loss) || !std::isfinite(r.v_norm) || !std::isfinite(r.direct_norm))
    fail("BiDoRA: the validation loss is {} and its gradient norms {} (directions) and {} (magnitudes)",
         r.val_loss, r.v_norm, r.direct_norm);
  r.eps = opts.fd_alpha / (r.v_norm + 1e-15);

  // 2. ∇_m L_tr at θ ± εv on the last lower step's micro-batches with its dropout masks; only dm
  //    is propagated. θ is rebuilt from the saved copy each time, never by adding and
  //    subtracting εv, so it returns bit-exact.
  const int64_t n_train = static_cast<int64_t>(train_micro.size());
  auto train_mode = [&](int64_t i) {
    AdapterMode m;
    m.training = true;
    m.dropout = micro_batch_dropout_key(opts.seed, opts.train_step, n_train, i);
    return m;
  };
  runtime.set_wants({.directions = false, .magnitude = true});
  for (const double sign : {1.0, -1.0}) {
    const float step = static_cast<float>(sign * r.eps);
    for (size_t i = 0; i < dirs.size(); ++i)
      for (int64_t j = 0; j < dirs[i].numel; ++j) dirs[i].value[j] = theta[i][j] + step * v[i][j];
    zero_grads(mags);
    const double loss = loss_and_grads(decoder, runtime, train_micro, train_mode, "training");
    if (!std::isfinite(loss))
      fail("BiDoRA: the training loss at the perturbed directions is {} (fd_alpha {} too large?)", loss,
           opts.fd_alpha);
    for (size_t i = 0; i < mags.size(); ++i)
      for (int64_t j = 0; j < mags[i].numel; ++j) fd[i][j] += sign * mags[i].grad[j];
  }
  runtime.set_wants({});
  for (size_t i = 0; i < dirs.size(); ++i)
    std::memcpy(dirs[i].value, theta[i].data(), sizeof(float) * dirs[i].numel);
  zero_grads(dirs);

  // 3. h = direct − (g⁺ − g⁻) / (2ε), into dm.
  double implicit_sq = 0, h_sq = 0;
  for (size_t i = 0; i < mags.size(); ++i)
    for (int64_t j = 0; j < mags[i].numel; ++j) {
      const double implicit = fd[i][j] / (2.0 * r.eps);
      const double h = direct[i][j] - implicit;
      implicit_sq += implicit * implicit;
      h_sq += h * h;
      mags[i].grad[j] = static_cast<float>(h);
    }
  r.implicit_norm = std::sqrt(implicit_sq);
  r.hypergrad_norm = std::sqrt(h_sq);
  if (!std::isfinite(r.hypergrad_norm))
    fail("BiDoRA: the magnitude hypergradient is not finite (‖direct‖ {}, ‖implicit‖ {})", r.direct_norm,
         r.implicit_norm);
  return r;
}

UpperStepResult upper_step(Decoder& decoder, AdapterRuntime& runtime, std::span<const TokenBatch> train_micro,
                           std::span<const TokenBatch> val_micro, Optimizer& magnitude_optimizer, double lr,
                           double max_grad_norm, const HypergradientOptions& opts) {
  UpperStepResult r;
  r.hyper = magnitude_hypergradient(decoder, runtime, train_micro, val_micro, opts);
  const std::vector<ParamRef>& params = magnitude_optimizer.params();
  r.grad_norm = max_grad_norm > 0 ? clip_grad_norm(params, max_grad_norm) : grad_norm(params);
  r.lr = lr;
  magnitude_optimizer.step(lr);
  return r;
}

}  // namespace bidora::train
