#include "adapters/adapter_set.h"

#include <algorithm>
#include <utility>

#include "core/error.h"

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

void AdapterSet::assign_values(const AdapterSet& other, const std::string& source) {
  const AdapterConfig& o = other.config();
  BIDORA_CHECK(o.method == cfg_.method, "{}: a {} adapter, but this run trains {}", source,
               method_name(o.method), method_name(cfg_.method));
  BIDORA_CHECK(o.r == cfg_.r, "{}: rank {}, but this run uses r = {}", source, o.r, cfg_.r);
  BIDORA_CHECK(o.scaling() == cfg_.scaling(), "{}: scaling {} (alpha {}, rsLoRA {}), but this run uses {}",
               source, o.scaling(), o.alpha, o.use_rslora, cfg_.scaling());
  BIDORA_CHECK(other.num_layers_ == num_layers_, "{}: {} layers, but the model has {}", source,
               other.num_layers_, num_layers_);
  for (size_t i = 0; i < slots_.size(); ++i) {
    const LoraLayer* from = other.slots_[i].get();
    LoraLayer* to = slots_[i].get();
    BIDORA_CHECK((from == nullptr) == (to == nullptr), "{}: adapts layer {} {} {}, unlike this run", source,
                 i / kNumLinearKinds, linear_name(static_cast<LinearKind>(i % kNumLinearKinds)),
                 from ? "" : "not");
    if (!to) continue;
    BIDORA_CHECK(
        from->A.size() == to->A.size() && from->B.size() == to->B.size() && from->m.size() == to->m.size(),
        "{}: layer {} {} has other shapes than this model's", source, to->layer(), linear_name(to->kind()));
    std::copy(from->A.begin(), from->A.end(), to->A.begin());  // in place: keeps data() stable
    std::copy(from->B.begin(), from->B.end(), to->B.begin());
    std::copy(from->m.begin(), from->m.end(), to->m.begin());
  }
}

}  // namespace bidora
