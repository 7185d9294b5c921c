#pragma once
// Optimiser interface shared by AdamW (fp32 states, torch.optim.AdamW) and AdamW8bit
// (bitsandbytes' blockwise 8-bit AdamW). The trainer calls step(lr) once per optimiser step with
// the scheduled learning rate (lr_schedule.h), after clipping (optim_clip.h).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "io/safetensors.h"
#include "train/optim_params.h"

namespace bidora::train {

// HF TrainingArguments defaults: adam_beta1 0.9, adam_beta2 0.999, adam_epsilon 1e-8, weight_decay 0.
struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // applied only to parameters with ParamRef::decay
};

class Optimizer {
 public:
  Optimizer(std::vector<ParamRef> params, const AdamWConfig& config);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // HF TrainingArguments.optim spelling: "adamw_torch" or "adamw_bnb_8bit".
  virtual const char* kind() const = 0;

  // One update of every parameter from its gradient, with learning rate `lr` (the scheduler's
  // value for this step). Increments step_count() first, like torch's state["step"].
  void step(double lr);
  int64_t step_count() const { return step_; }
  const std::vector<ParamRef>& params() const { return params_; }
  const AdamWConfig& config() const { return config_; }

  // Checkpoint support (optim_state.h writes the file and the step count): every state tensor is
  // added as "<param name>.<field>"; load_state reads them back, checking names, dtypes and shapes.
  virtual void save_state(SafetensorsWriter& w) const = 0;
  virtual void load_state(const SafetensorsFile& f) = 0;
  // The tensor names save_state writes (load_state rejects files with other tensors).
  virtual std::vector<std::string> state_tensor_names() const = 0;
  void set_step_count(int64_t step) { step_ = step; }

 protected:
  virtual void update(double lr) = 0;  // step_ already incremented

  std::vector<ParamRef> params_;
  AdamWConfig config_;
  int64_t step_ = 0;
};

// kind: "adamw_torch" (alias "adamw") or "adamw_bnb_8bit" (alias "adamw_8bit"); Error otherwise.
std::unique_ptr<Optimizer> make_optimizer(std::string_view kind, std::vector<ParamRef> params,
                                          const AdamWConfig& config);

// Helpers shared by the optimisers' load_state: fetch a tensor and check dtype and 1-D shape.
const TensorView& expect_state_tensor(const SafetensorsFile& f, const std::string& name, DType dtype,
                                      int64_t numel);

}  // namespace bidora::train
