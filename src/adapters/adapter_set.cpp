#include "adapters/adapter_set.h"

#include <utility>

namespace bidora {

AdapterSet::AdapterSet(AdapterConfig cfg, const std::vector<LayerWeights>& layers, uint64_t init_seed)
    : cfg_(std::move(cfg)), num_layers_(static_cast<int64_t>(layers.size())) {
  cfg_.validate();
  slots_.resize(layers.size() * kNumLinearKinds);
  WeightTile tile;
  for (int64_t l = 0; l < num_layers_; ++l)
    for (int k = 0; k < kNumLinearKinds; ++k) {
      const auto kind = static_cast<LinearKind>(k);
      if (!cfg_.targets_kind(kind)) continue;
      slots_[l * kNumLinearKinds + k] =
          std::make_unique<LoraLayer>(cfg_, layers[l].W(kind), l, kind, init_seed, tile);
    }
}

LoraLayer* AdapterSet::find(int64_t layer, LinearKind k) {
  if (layer < 0 || layer >= num_layers_) return nullptr;
  return slots_[layer * kNumLinearKinds + static_cast<int>(k)].get();
}

const LoraLayer* AdapterSet::find(int64_t layer, LinearKind k) const {
  return const_cast<AdapterSet*>(this)->find(layer, k);
}

std::vector<LoraLayer*> AdapterSet::all() {
  std::vector<LoraLayer*> v;
  for (auto& s : slots_)
    if (s) v.push_back(s.get());
  return v;
}

std::vector<const LoraLayer*> AdapterSet::all() const {
  std::vector<const LoraLayer*> v;
  for (const auto& s : slots_)
    if (s) v.push_back(s.get());
  return v;
}

int64_t AdapterSet::num_parameters() const {
  int64_t total = 0;
  for (const LoraLayer* l : all()) total += static_cast<int64_t>(l->A.size() + l->B.size() + l->m.size());
  return total;
}

}  // namespace bidora
