#pragma once
// `bidora list-models`: the supported families and the catalogue of recommended models, with the
// memory each needs for LoRA fine-tuning in bf16 / NF4 / int8 storage and whether it fits here.
#include <array>
#include <cstdio>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/model_catalog.h"
#include "model/memory_model.h"

namespace bidora::cli {

// The storages shown, in column order.
inline constexpr std::array<WeightStorage, 3> kListedStorages = {WeightStorage::BF16, WeightStorage::NF4,
                                                                 WeightStorage::INT8};

struct ModelFit {
  const CatalogEntry* entry = nullptr;
  int64_t params = 0;
  std::array<MemoryEstimate, 3> estimate;  // per kListedStorages
  std::array<bool, 3> fits{};
  std::optional<WeightStorage> recommended;  // best storage that fits, if any
};

std::vector<ModelFit> evaluate_catalog(int64_t available_bytes, const TrainingShape& shape = {});

// all = false lists only the models that fit in at least one storage.
nlohmann::json list_models_json(const std::vector<ModelFit>& fits, int64_t available_bytes, bool all,
                                const TrainingShape& shape = {});
void print_list_models(const std::vector<ModelFit>& fits, int64_t available_bytes, bool all, std::FILE* out,
                       const TrainingShape& shape = {});

}  // namespace bidora::cli
