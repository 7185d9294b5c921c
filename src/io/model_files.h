#pragma once
// Finding a model's files: a local directory or a Hugging Face id in the local HF cache, and
// its weights as one safetensors file or a sharded set with model.safetensors.index.json.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace bidora {

// The hub cache directory: $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub,
// else ~/.cache/huggingface/hub.
std::string hf_hub_cache_dir();

// `name_or_path` is a directory, or an id "org/name" looked up as
// <cache>/models--org--name/snapshots/<refs/main or the only snapshot>. Throws Error explaining
// where it looked when neither exists.
std::string resolve_model_dir(const std::string& name_or_path);

// All tensors of a checkpoint, across shards. Files stay mapped for the object's lifetime.
class CheckpointTensors {
 public:
  explicit CheckpointTensors(const std::string& model_dir);
  const TensorView* find(const std::string& name) const;
  const TensorView& get(const std::string& name) const;  // Error naming the file and tensor when absent
  const std::string& file_of(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::vector<std::string>& files() const { return paths_; }
  size_t total_bytes() const;

 private:
  std::vector<std::string> paths_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> owner_;  // tensor name -> index in files_
  std::string dir_;
};

}  // namespace bidora
