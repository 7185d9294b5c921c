#include "adapters/adapter_config.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace bidora {

double AdapterConfig::scaling() const {
  return use_rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}

bool AdapterConfig::targets_kind(LinearKind k) const {
  return std::find(targets.begin(), targets.end(), k) != targets.end();
}

void AdapterConfig::validate(const std::string& source) const {
  BIDORA_CHECK(r >= 1, "{}: r must be a positive integer, got {}", source, r);
  BIDORA_CHECK(std::isfinite(alpha) && alpha > 0, "{}: lora_alpha must be a positive number, got {}", source,
               alpha);
  BIDORA_CHECK(dropout >= 0.0 && dropout < 1.0, "{}: lora_dropout must be in [0, 1), got {}", source,
               dropout);
  BIDORA_CHECK(!targets.empty(), "{}: target_modules must name at least one module", source);
}

const char* method_name(LoraVariant m) {
  return m == LoraVariant::DoRA ? "dora" : "lora";
}

std::optional<LinearKind> linear_kind_from_name(std::string_view name) {
  for (int k = 0; k < kNumLinearKinds; ++k)
    if (name == linear_name(static_cast<LinearKind>(k))) return static_cast<LinearKind>(k);
  return std::nullopt;
}

}  // namespace bidora
