// YAML training config -> TrainConfig: apply over the defaults, validate, and check that a valid
// config survives the round trip through to_yaml (the header's contract) and to_json.
#include <nlohmann/json.hpp>
#include <string>

#include "config/train_config.h"
#include "core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    bidora::TrainConfig cfg;
    bidora::ConfigOrigins origins;
    bidora::apply_yaml(cfg, text, "fuzz.yaml", &origins);
    (void)bidora::missing_for_training(cfg);
    if (!bidora::validation_errors(cfg).empty()) return 0;
    bidora::validate(cfg);
    (void)bidora::lora_scaling(cfg.adapter);
    const std::string yaml = bidora::to_yaml(cfg);
    bidora::TrainConfig back;
    bidora::apply_yaml(back, yaml, "fuzz.yaml (to_yaml)");
    if (!(back == cfg)) __builtin_trap();  // to_yaml must load back to an equal config
    try {
      (void)bidora::to_json(cfg).dump();
    } catch (const nlohmann::json::type_error&) {
      // dump() refuses invalid UTF-8 in a string field; apply_yaml should not have accepted it.
      __builtin_trap();
    }
  } catch (const bidora::Error&) {
  }
  return 0;
}
