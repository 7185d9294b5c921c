// config.json -> ModelConfig: parse, validate and the derived sizes the memory model uses.
#include <string>

#include "core/error.h"
#include "io/json_util.h"
#include "model/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const nlohmann::json j = bidora::json_util::parse(text, "fuzz/config.json");
    bidora::ModelConfig c = bidora::ModelConfig::from_json(j, "fuzz/config.json");
    c.validate("fuzz/config.json");
    // Only a validated config reaches the model code: its sizes must not overflow.
    (void)c.num_parameters();
    (void)c.num_block_linear_parameters();
    (void)c.q_dim();
    (void)c.kv_dim();
    for (int64_t layer = 0; layer < c.num_layers && layer < 64; ++layer) (void)c.window_for_layer(layer);
  } catch (const bidora::Error&) {
  }
  return 0;
}
