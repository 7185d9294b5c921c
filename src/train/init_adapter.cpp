#include "train/init_adapter.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <optional>

#include "adapters/peft_io.h"
#include "core/error.h"
#include "core/files.h"

namespace bidora::train {

TrainConfig resolve_init_adapter(TrainConfig cfg, ConfigOrigins* origins) {
  if (cfg.adapter.init_from.empty()) return cfg;
  const std::string path = (std::filesystem::path(cfg.adapter.init_from) / "adapter_config.json").string();
  BIDORA_CHECK(std::filesystem::exists(path),
               "adapter.init_from: {}: missing (not a PEFT adapter directory?)", path);
  // The number of layers is not known before the model is loaded; the loader checks the
  // targets against every layer later.
  const AdapterConfig a = parse_adapter_config(read_file(path), path);

  // Updated on a copy: a refusal leaves the caller's origins as they were.
  std::optional<ConfigOrigins> updated;
  if (origins) updated = *origins;
  auto set_by_user = [&](const std::string& field) {
    if (!updated) return true;
    auto it = updated->find(field);
    return it != updated->end() && it->second != "default";
  };
  auto origin_of = [&](const std::string& field) {
    if (!updated) return std::string("the configuration");
    return updated->at(field);
  };
  // Takes the adapter's value, or checks that the user's equals it.
  auto take = [&](const std::string& field, const std::string& ours, const std::string& theirs,
                  const std::function<void()>& assign) {
    if (ours == theirs) return;
    BIDORA_CHECK(!set_by_user(field),
                 "{} = {} ({}) but the adapter to continue from has {} ({}): leave {} unset to continue "
                 "with the adapter's value, or train a new adapter without --adapter",
                 field, ours, origin_of(field), theirs, path, field);
    assign();
    if (updated) (*updated)[field] = "--adapter";
  };

  const bool dora = a.method == LoraVariant::DoRA;
  // BiDoRA trains DoRA adapters: it continues a DoRA adapter as it is.
  const char* their_method = !dora ? "lora" : cfg.adapter.method == AdapterMethod::BiDoRA ? "bidora" : "dora";
  take("adapter.method", to_string(cfg.adapter.method), their_method,
       [&] { cfg.adapter.method = dora ? AdapterMethod::DoRA : AdapterMethod::LoRA; });
  take("adapter.r", std::to_string(cfg.adapter.r), std::to_string(a.r), [&] { cfg.adapter.r = a.r; });
  take("adapter.alpha", fmt::format("{}", cfg.adapter.alpha), fmt::format("{}", a.alpha),
       [&] { cfg.adapter.alpha = a.alpha; });
  take("adapter.use_rslora", cfg.adapter.use_rslora ? "true" : "false", a.use_rslora ? "true" : "false",
       [&] { cfg.adapter.use_rslora = a.use_rslora; });
  // Targets as sets, in block order (the order they are listed in does not matter).
  std::vector<std::string> theirs;
  for (const std::string& name : kLinearModules)
    if (a.targets_kind(*linear_kind_from_name(name))) theirs.push_back(name);
  std::vector<std::string> ours;
  for (const std::string& name : kLinearModules)
    if (std::find(cfg.adapter.targets.begin(), cfg.adapter.targets.end(), name) != cfg.adapter.targets.end())
      ours.push_back(name);
  take("adapter.targets", fmt::format("{}", fmt::join(ours, ",")), fmt::format("{}", fmt::join(theirs, ",")),
       [&] { cfg.adapter.targets = theirs; });
  if (origins) *origins = std::move(*updated);
  return cfg;
}

}  // namespace bidora::train
