#include "train/optim_params.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "core/error.h"

namespace bidora::train {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// True when some dot-separated component of `name` is `norm` or ends with "_norm"
// (transformers' patterns "(?:^|\.)norm(?:$|\.)" and "_norm(?:$|\.)").
bool has_norm_component(const std::string& name) {
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string::npos) end = name.size();
    const std::string_view part(name.data() + start, end - start);
    if (part == "norm" || (part.size() >= 5 && part.substr(part.size() - 5) == "_norm")) return true;
    start = end + 1;
  }
  return false;
}

}  // namespace

bool hf_trainer_decays(const std::string& name) {
  const std::string n = lower(name);
  if (n.find("bias") != std::string::npos) return false;
  if (n.find("layernorm") != std::string::npos || n.find("rmsnorm") != std::string::npos) return false;
  return !has_norm_component(n);
}

void validate_params(std::span<const ParamRef> params) {
  std::set<std::string> seen;
  for (const ParamRef& p : params) {
    BIDORA_CHECK(!p.name.empty(), "optimizer: a parameter has an empty name");
    BIDORA_CHECK(seen.insert(p.name).second, "optimizer: parameter '{}' is registered twice", p.name);
    BIDORA_CHECK(p.numel > 0, "optimizer: parameter '{}' has {} elements (expected > 0)", p.name, p.numel);
    BIDORA_CHECK(p.value && p.grad, "optimizer: parameter '{}' has no value or gradient array", p.name);
  }
}

}  // namespace bidora::train
