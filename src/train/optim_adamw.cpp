#include "train/optim_adamw.h"

#include <cmath>
#include <cstring>

namespace bidora::train {

namespace {
// Below this size a parallel region costs more than the loop (LoRA vectors are often tiny).
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

AdamW::AdamW(std::vector<ParamRef> params, const AdamWConfig& config) : Optimizer(std::move(params), config) {
  for (const ParamRef& p : params_) {
    m_.emplace_back(static_cast<size_t>(p.numel), 0.0f);
    v_.emplace_back(static_cast<size_t>(p.numel), 0.0f);
  }
}

void AdamW::update(double lr) {
  const double t = static_cast<double>(step_);
  const double bias_c1 = 1.0 - std::pow(config_.beta1, t);
  const double bias_c2 = 1.0 - std::pow(config_.beta2, t);
  const float beta1 = static_cast<float>(config_.beta1);
  const float beta2 = static_cast<float>(config_.beta2);
  const float one_minus_beta1 = static_cast<float>(1.0 - config_.beta1);
  const float one_minus_beta2 = static_cast<float>(1.0 - config_.beta2);
  const float neg_step_size = static_cast<float>(-(lr / bias_c1));
  const float bias_c2_sqrt = static_cast<float>(std::sqrt(bias_c2));
  const float eps = static_cast<float>(config_.eps);

  for (size_t i = 0; i < params_.size(); ++i) {
    const ParamRef& p = params_[i];
    const float decay = static_cast<float>(1.0 - lr * (p.decay ? config_.weight_decay : 0.0));
    float* __restrict__ w = p.value;
    const float* __restrict__ g = p.grad;
    float* __restrict__ m = m_[i].data();
    float* __restrict__ v = v_[i].data();
    const int64_t n = p.numel;
#pragma omp parallel for simd if (n >= kParallelMin) schedule(static)
    for (int64_t j = 0; j < n; ++j) {
      const float gj = g[j];
      const float wj = w[j] * decay;
      const float mj = std::fma(gj, one_minus_beta1, m[j] * beta1);
      const float vj = std::fma(one_minus_beta2 * gj, gj, v[j] * beta2);
      const float denom = std::sqrt(vj) / bias_c2_sqrt + eps;
      m[j] = mj;
      v[j] = vj;
      w[j] = wj + neg_step_size * mj / denom;
    }
  }
}

std::vector<std::string> AdamW::state_tensor_names() const {
  std::vector<std::string> names;
  for (const ParamRef& p : params_) {
    names.push_back(p.name + ".exp_avg");
    names.push_back(p.name + ".exp_avg_sq");
  }
  return names;
}

void AdamW::save_state(SafetensorsWriter& w) const {
  for (size_t i = 0; i < params_.size(); ++i) {
    w.add_f32(params_[i].name + ".exp_avg", {params_[i].numel}, m_[i]);
    w.add_f32(params_[i].name + ".exp_avg_sq", {params_[i].numel}, v_[i]);
  }
}

void AdamW::load_state(const SafetensorsFile& f) {
  // Validate everything before changing anything, so a bad file leaves the optimiser intact.
  std::vector<const TensorView*> views;
  for (const ParamRef& p : params_) {
    views.push_back(&expect_state_tensor(f, p.name + ".exp_avg", DType::F32, p.numel));
    views.push_back(&expect_state_tensor(f, p.name + ".exp_avg_sq", DType::F32, p.numel));
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    std::memcpy(m_[i].data(), views[2 * i]->data, views[2 * i]->nbytes);
    std::memcpy(v_[i].data(), views[2 * i + 1]->data, views[2 * i + 1]->nbytes);
  }
}

}  // namespace bidora::train
