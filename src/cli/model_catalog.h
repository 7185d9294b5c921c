#pragma once
// The built-in catalogue behind `bidora list-models`: the supported architecture families and
// recommended checkpoints with their real config.json values, so memory needs can be computed
// without downloading anything.
#include <string>
#include <vector>

#include "model/model_config.h"

namespace bidora::cli {

struct FamilyInfo {
  ModelFamily family;
  const char* architecture;  // config.json architectures[0]
  const char* model_type;    // config.json model_type
  const char* examples;      // model lines that use it
  const char* notes;         // what differs from plain Llama
};
const std::vector<FamilyInfo>& supported_families();

struct CatalogEntry {
  std::string id;      // Hugging Face repo id of the base model
  std::string series;  // "Qwen2.5", "SmolLM2", ...
  ModelConfig config;  // architecture values from the checkpoint's config.json
  std::string note;    // short advice shown in the table
};
// In order of size within each series. Instruct/chat variants share these configs.
const std::vector<CatalogEntry>& model_catalog();

}  // namespace bidora::cli
