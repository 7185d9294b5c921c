#pragma once
// The adapter hyper-parameters, with PEFT's meaning (shared/reference/formats.md §2.1, §2.3).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/weights.h"

namespace bidora {

enum class LoraVariant { LoRA, DoRA };
// PEFT init_lora_weights: true (kaiming-uniform A, B = 0) or "gaussian" (A ~ N(0, 1/r²), B = 0).
enum class AdapterInit { KaimingUniform, Gaussian };

struct AdapterConfig {
  LoraVariant method = LoraVariant::LoRA;
  int64_t r = 8;
  double alpha = 16;
  double dropout = 0.0;
  bool use_rslora = false;
  AdapterInit init = AdapterInit::KaimingUniform;
  std::vector<LinearKind> targets = {LinearKind::Q, LinearKind::V};  // PEFT's default for llama/qwen/mistral

  // alpha / r, or alpha / sqrt(r) with rsLoRA.
  double scaling() const;
  bool targets_kind(LinearKind k) const;
  // Throws Error naming `source` and the offending field.
  void validate(const std::string& source = "adapter config") const;
};

const char* method_name(LoraVariant m);                                  // "lora", "dora"
std::optional<LinearKind> linear_kind_from_name(std::string_view name);  // "q_proj" -> Q

}  // namespace bidora
