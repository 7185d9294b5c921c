#include "train/optim_optimizer.h"

#include "core/error.h"
#include "train/optim_adamw.h"
#include "train/optim_adamw8bit.h"

namespace bidora::train {

Optimizer::Optimizer(std::vector<ParamRef> params, const AdamWConfig& config)
    : params_(std::move(params)), config_(config) {
  validate_params(params_);
  BIDORA_CHECK(config.beta1 >= 0 && config.beta1 < 1, "optimizer: beta1 = {} (expected 0 <= beta1 < 1)",
               config.beta1);
  BIDORA_CHECK(config.beta2 >= 0 && config.beta2 < 1, "optimizer: beta2 = {} (expected 0 <= beta2 < 1)",
               config.beta2);
  BIDORA_CHECK(config.eps >= 0, "optimizer: eps = {} (expected >= 0)", config.eps);
  BIDORA_CHECK(config.weight_decay >= 0, "optimizer: weight_decay = {} (expected >= 0)", config.weight_decay);
}

void Optimizer::step(double lr) {
  BIDORA_CHECK(lr >= 0, "optimizer: learning rate {} (expected >= 0)", lr);
  ++step_;
  update(lr);
}

std::unique_ptr<Optimizer> make_optimizer(std::string_view kind, std::vector<ParamRef> params,
                                          const AdamWConfig& config) {
  if (kind == "adamw_torch" || kind == "adamw") return std::make_unique<AdamW>(std::move(params), config);
  if (kind == "adamw_bnb_8bit" || kind == "adamw_8bit")
    return std::make_unique<AdamW8bit>(std::move(params), config);
  fail("optimizer: unknown optimizer '{}' (expected adamw_torch or adamw_bnb_8bit)", kind);
}

const TensorView& expect_state_tensor(const SafetensorsFile& f, const std::string& name, DType dtype,
                                      int64_t numel) {
  const TensorView* t = f.find(name);
  BIDORA_CHECK(t, "{}: missing optimizer state tensor '{}'", f.path(), name);
  BIDORA_CHECK(t->dtype == dtype, "{}: optimizer state tensor '{}' has dtype {} (expected {})", f.path(),
               name, dtype_name(t->dtype), dtype_name(dtype));
  BIDORA_CHECK(t->shape.size() == 1 && t->shape[0] == numel,
               "{}: optimizer state tensor '{}' has shape {} (expected [{}])", f.path(), name, t->shape_str(),
               numel);
  return *t;
}

}  // namespace bidora::train
