#pragma once
// All adapted linears of a model: one LoraLayer per (layer, targeted LinearKind).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "adapters/adapter_config.h"
#include "adapters/lora_layer.h"
#include "model/weights.h"

namespace bidora {

class AdapterSet {
 public:
  // Fresh PEFT initialisation of every targeted linear of `layers` (see LoraLayer).
  AdapterSet(AdapterConfig cfg, const std::vector<LayerWeights>& layers, uint64_t init_seed);

  const AdapterConfig& config() const { return cfg_; }
  int64_t num_layers() const { return num_layers_; }
  LoraLayer* find(int64_t layer, LinearKind k);  // nullptr when this linear is not adapted
  const LoraLayer* find(int64_t layer, LinearKind k) const;
  // Every adapted linear, in (layer, kind) order.
  std::vector<LoraLayer*> all();
  std::vector<const LoraLayer*> all() const;
  int64_t num_parameters() const;  // trainable values: A, B and m

  // Copies the trained values (A, B, m) of `other` into this set in place, so references to
  // these tensors (the optimiser's) stay valid; used to resume from a checkpoint. `other` must
  // adapt the same linears with the same variant, rank, scaling and shapes; Error naming
  // `source` otherwise.
  void assign_values(const AdapterSet& other, const std::string& source);

 private:
  AdapterConfig cfg_;
  int64_t num_layers_ = 0;
  std::vector<std::unique_ptr<LoraLayer>> slots_;  // [layer * kNumLinearKinds + kind]
};

}  // namespace bidora
