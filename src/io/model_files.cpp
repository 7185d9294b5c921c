#include "io/model_files.h"

#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "core/files.h"
#include "io/json_util.h"

namespace bidora {

namespace fs = std::filesystem;

std::string hf_hub_cache_dir() {
  if (const char* p = std::getenv("HF_HUB_CACHE"); p && *p) return p;
  if (const char* p = std::getenv("HF_HOME"); p && *p) return (fs::path(p) / "hub").string();
  if (const char* p = std::getenv("XDG_CACHE_HOME"); p && *p)
    return (fs::path(p) / "huggingface" / "hub").string();
  const char* home = std::getenv("HOME");
  return (fs::path(home ? home : "/") / ".cache" / "huggingface" / "hub").string();
}

std::string resolve_model_dir(const std::string& name_or_path) {
  std::error_code ec;
  if (fs::is_directory(name_or_path, ec)) return name_or_path;
  const std::string cache = hf_hub_cache_dir();
  const auto slash = name_or_path.find('/');
  const bool looks_like_id = slash != std::string::npos && slash > 0 && slash + 1 < name_or_path.size() &&
                             name_or_path.find('/', slash + 1) == std::string::npos &&
                             name_or_path.find("..") == std::string::npos;
  if (!looks_like_id)
    fail("model '{}' not found: it is not a directory (and not a Hugging Face id of the form org/name)",
         name_or_path);
  const std::string repo = "models--" + name_or_path.substr(0, slash) + "--" + name_or_path.substr(slash + 1);
  const fs::path base = fs::path(cache) / repo;
  const fs::path snapshots = base / "snapshots";
  if (fs::is_directory(snapshots, ec)) {
    // refs/main names the snapshot the hub client last resolved; otherwise accept a single one.
    if (fs::exists(base / "refs" / "main", ec)) {
      std::string commit = read_file((base / "refs" / "main").string());
      while (!commit.empty() && (commit.back() == '\n' || commit.back() == '\r' || commit.back() == ' '))
        commit.pop_back();
      if (fs::is_directory(snapshots / commit, ec)) return (snapshots / commit).string();
    }
    std::vector<fs::path> snaps;
    for (const auto& e : fs::directory_iterator(snapshots, ec))
      if (e.is_directory()) snaps.push_back(e.path());
    if (snaps.size() == 1) return snaps[0].string();
    if (snaps.size() > 1)
      fail("model '{}': {} has {} snapshots and no usable refs/main; pass the snapshot directory itself",
           name_or_path, snapshots.string(), snaps.size());
  }
  fail(
      "model '{}' not found: not a local directory, and not in the Hugging Face cache (looked for {}). "
      "Download it where there is network access (e.g. `huggingface-cli download {}`), copy the cache here "
      "or set "
      "HF_HOME / HF_HUB_CACHE, or pass a local directory",
      name_or_path, snapshots.string(), name_or_path);
}

CheckpointTensors::CheckpointTensors(const std::string& model_dir) : dir_(model_dir) {
  const fs::path dir(model_dir);
  const fs::path index = dir / "model.safetensors.index.json";
  std::error_code ec;
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name
  if (fs::exists(index, ec)) {
    const auto j = json_util::parse_file(index.string());
    const auto& wm = json_util::require(j, "weight_map", index.string());
    if (!wm.is_object()) fail("{}: field \"weight_map\" must be an object", index.string());
    std::map<std::string, bool> shard_seen;
    for (auto it = wm.begin(); it != wm.end(); ++it) {
      if (!it.value().is_string())
        fail("{}: weight_map[\"{}\"] must be a file name", index.string(), it.key());
      const std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos)
        fail("{}: weight_map[\"{}\"] = \"{}\" must be a file name inside the model directory", index.string(),
             it.key(), shard);
      weight_map[it.key()] = shard;
      if (!shard_seen[shard]) {
        shard_seen[shard] = true;
        paths_.push_back((dir / shard).string());
      }
    }
    if (paths_.empty()) fail("{}: weight_map is empty", index.string());
  } else if (fs::exists(dir / "model.safetensors", ec)) {
    paths_.push_back((dir / "model.safetensors").string());
  } else {
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.path().extension() == ".safetensors" && e.path().filename().string().rfind("adapter_", 0) != 0)
        found.push_back(e.path().string());
    std::sort(found.begin(), found.end());
    if (found.empty()) {
      const bool has_bin =
          fs::exists(dir / "pytorch_model.bin", ec) || fs::exists(dir / "pytorch_model.bin.index.json", ec);
      fail("{}: no model.safetensors, model.safetensors.index.json or *.safetensors file{}", model_dir,
           has_bin ? " (pytorch_model.bin is not supported: convert the checkpoint to safetensors)" : "");
    }
    paths_ = found;
  }
  for (const auto& p : paths_) {
    if (!fs::exists(p, ec)) fail("{}: shard listed in model.safetensors.index.json is missing", p);
    files_.push_back(std::make_unique<SafetensorsFile>(p));
    for (const auto& t : files_.back()->tensors()) {
      auto [it, inserted] = owner_.emplace(t.name, files_.size() - 1);
      if (!inserted) fail("{}: tensor '{}' is also in {}", p, t.name, paths_[it->second]);
    }
  }
  for (const auto& [name, shard] : weight_map) {
    auto it = owner_.find(name);
    if (it == owner_.end())
      fail("{}: tensor '{}' listed in the index is missing", (dir / shard).string(), name);
    if (fs::path(paths_[it->second]).filename() != shard)
      fail("{}: tensor '{}' is in {} but the index says {}", index.string(), name, paths_[it->second], shard);
  }
}

const TensorView* CheckpointTensors::find(const std::string& name) const {
  auto it = owner_.find(name);
  return it == owner_.end() ? nullptr : files_[it->second]->find(name);
}

const TensorView& CheckpointTensors::get(const std::string& name) const {
  const TensorView* t = find(name);
  if (!t) fail("{}: missing tensor '{}' in {}", dir_, name, paths_.size() == 1 ? paths_[0] : "any shard");
  return *t;
}

const std::string& CheckpointTensors::file_of(const std::string& name) const {
  auto it = owner_.find(name);
  if (it == owner_.end()) fail("{}: missing tensor '{}'", dir_, name);
  return paths_[it->second];
}

std::vector<std::string> CheckpointTensors::names() const {
  std::vector<std::string> n;
  for (const auto& [k, v] : owner_) n.push_back(k);
  return n;
}

size_t CheckpointTensors::total_bytes() const {
  size_t total = 0;
  for (const auto& f : files_)
    for (const auto& t : f->tensors()) total += t.nbytes;
  return total;
}

}  // namespace bidora
