#pragma once
// The parameter registry the optimisers work on. The adapter code owns the memory (LoRA A/B and
// DoRA magnitude vectors are float32 arrays with gradient arrays of the same size); the optimiser
// only keeps the pointers, so the registry must outlive it and the arrays must not move.
#include <cstdint>
#include <span>
#include <string>

namespace bidora::train {

struct ParamRef {
  std::string name;  // PEFT key, e.g. "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
  float* value = nullptr;
  float* grad = nullptr;
  int64_t numel = 0;
  bool decay = true;  // whether weight decay applies (see hf_trainer_decays)
};

// HF Trainer's rule (Trainer.get_decay_parameter_names): every trainable parameter is decayed
// except those inside LayerNorm/RMSNorm modules and those whose name contains "bias". PEFT's
// DoRA magnitudes ("lora_magnitude_vector") are neither, so they ARE decayed under the default
// Trainer, exactly like lora_A / lora_B. We decide from the name alone: a norm module is
// recognised by the name patterns transformers uses (layernorm, rmsnorm, a ".norm." / "_norm."
// component).
bool hf_trainer_decays(const std::string& name);

// Throws bidora::Error for an empty or duplicated name, null pointers or a non-positive size.
void validate_params(std::span<const ParamRef> params);

}  // namespace bidora::train
