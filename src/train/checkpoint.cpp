#include "train/checkpoint.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <set>

#include "adapters/peft_io.h"
#include "config/config_fields.h"
#include "core/error.h"
#include "core/fault_injection.h"
#include "core/files.h"
#include "io/json_util.h"
#include "train/optim_state.h"

namespace bidora::train {
namespace fs = std::filesystem;

namespace {

constexpr const char* kStateFile = "trainer_state.json";
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kFormat = "bidora.trainer_state";
constexpr int64_t kVersion = 1;

// Configuration fields that do not change the trained values.
bool affects_trajectory(const std::string& path) {
  static const std::set<std::string> neutral = {
      "model.name_or_path",        "training.logging_steps", "training.eval_steps", "training.save_steps",
      "training.save_total_limit", "data.train_file",        "data.val_file",       "data.skip_bad_lines"};
  return !(path.rfind("output.", 0) == 0 || path.rfind("hardware.", 0) == 0 || neutral.count(path));
}

std::string hex64(uint64_t v) {
  return fmt::format("{:016x}", v);
}

// Parses the digits after "checkpoint-"; nullopt for anything else ("checkpoint-3.tmp.12", ...).
std::optional<int64_t> checkpoint_step(const std::string& name) {
  const std::string prefix = "checkpoint-";
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) return std::nullopt;
  int64_t step = -1;
  const char* b = name.data() + prefix.size();
  const char* e = name.data() + name.size();
  auto [end, ec] = std::from_chars(b, e, step);
  if (ec != std::errc() || end != e || step < 0) return std::nullopt;
  return step;
}

nlohmann::ordered_json state_to_json(const TrainerState& s) {
  nlohmann::ordered_json j;
  j["format"] = kFormat;
  j["version"] = kVersion;
  // HF Trainer's names where the meaning is the same.
  j["global_step"] = s.global_step;
  j["max_steps"] = s.max_steps;
  j["epoch"] = s.epoch;
  j["best_metric"] = s.best_metric ? nlohmann::ordered_json(*s.best_metric) : nlohmann::ordered_json();
  j["log_history"] = s.log_history;
  j["data_position"] = {{"epoch_index", s.epoch_index}, {"next_batch", s.next_batch}};
  j["rng"] = {
      {"seed", s.seed},
      {"note",
       "counter-based: epoch order = f(seed, epoch_index), dropout masks = f(seed, step, micro-batch, "
       "row); no generator state to save"}};
  j["progress"] = {{"tokens_seen", s.tokens_seen},   {"elapsed_seconds", s.elapsed_seconds},
                   {"window_loss", s.window_loss},   {"window_steps", s.window_steps},
                   {"window_upper", s.window_upper}, {"first_loss", s.first_loss}};
  if (!s.phase.empty())
    j["bidora"] = {{"phase", s.phase},
                   {"val_position", {{"epoch_index", s.val_epoch_index}, {"next_batch", s.val_next_batch}}}};
  j["run"] = s.run;
  return j;
}

TrainerState state_from_json(const nlohmann::json& j, const std::string& src) {
  using namespace json_util;
  BIDORA_CHECK(j.is_object(), "{}: expected a JSON object", src);
  BIDORA_CHECK(get_string(j, "format", src) == kFormat, "{}: 'format' is not \"{}\"", src, kFormat);
  const int64_t version = get_int(j, "version", src);
  BIDORA_CHECK(version == kVersion, "{}: version {} (this bidora reads version {})", src, version, kVersion);
  TrainerState s;
  s.global_step = get_int(j, "global_step", src);
  s.max_steps = get_int(j, "max_steps", src);
  s.epoch = get_number(j, "epoch", src);
  s.best_metric = opt_number(j, "best_metric", src);
  const auto& history = require(j, "log_history", src);
  BIDORA_CHECK(history.is_array(), "{}: 'log_history' must be an array", src);
  for (const auto& e : history) {
    BIDORA_CHECK(e.is_object(), "{}: 'log_history' entries must be objects", src);
    s.log_history.push_back(nlohmann::ordered_json::parse(e.dump()));
  }
  const auto& pos = require(j, "data_position", src);
  s.epoch_index = get_int(pos, "epoch_index", src + " data_position");
  s.next_batch = get_int(pos, "next_batch", src + " data_position");
  const int64_t seed = get_int(require(j, "rng", src), "seed", src + " rng");
  BIDORA_CHECK(seed >= 0, "{}: rng.seed {} is negative", src, seed);
  s.seed = static_cast<uint64_t>(seed);
  const auto& p = require(j, "progress", src);
  const std::string psrc = src + " progress";
  s.tokens_seen = get_int(p, "tokens_seen", psrc);
  s.elapsed_seconds = get_number(p, "elapsed_seconds", psrc);
  s.window_loss = get_number(p, "window_loss", psrc);
  s.window_steps = get_int(p, "window_steps", psrc);
  s.first_loss = get_number(p, "first_loss", psrc);
  if (p.contains("window_upper")) {
    BIDORA_CHECK(p["window_upper"].is_null() || p["window_upper"].is_object(),
                 "{}: 'window_upper' must be null or an object", psrc);
    s.window_upper = nlohmann::ordered_json::parse(p["window_upper"].dump());
  }
  BIDORA_CHECK(s.global_step >= 0 && s.epoch_index >= 0 && s.next_batch >= 0 && s.window_steps >= 0 &&
                   s.tokens_seen >= 0,
               "{}: negative step, position or count", src);
  if (j.contains("bidora")) {
    const auto& b = j["bidora"];
    const std::string bsrc = src + " bidora";
    BIDORA_CHECK(b.is_object(), "{}: expected an object", bsrc);
    s.phase = get_string(b, "phase", bsrc);
    BIDORA_CHECK(s.phase == "search" || s.phase == "retrain", "{}: phase '{}' (expected search or retrain)",
                 bsrc, s.phase);
    const auto& vp = require(b, "val_position", bsrc);
    s.val_epoch_index = get_int(vp, "epoch_index", bsrc + " val_position");
    s.val_next_batch = get_int(vp, "next_batch", bsrc + " val_position");
    BIDORA_CHECK(s.val_epoch_index >= 0 && s.val_next_batch >= 0, "{}: negative validation position", bsrc);
  }
  s.run = nlohmann::ordered_json::parse(require(j, "run", src).dump());
  return s;
}

// "training.learning_rate: checkpoint 0.001, now 0.002" for every differing field.
std::vector<std::string> fingerprint_differences(const nlohmann::ordered_json& saved,
                                                 const nlohmann::ordered_json& now) {
  std::vector<std::string> out;
  std::set<std::string> keys;
  for (const auto& [k, v] : saved.items()) keys.insert(k);
  for (const auto& [k, v] : now.items()) keys.insert(k);
  auto show = [](const nlohmann::ordered_json& o, const std::string& k) {
    if (!o.contains(k)) return std::string("(absent)");
    return o[k].is_string() ? o[k].get<std::string>() : o[k].dump();
  };
  for (const std::string& k : keys)
    if (!saved.contains(k) || !now.contains(k) || saved[k] != now[k])
      out.push_back(fmt::format("{}: checkpoint {}, now {}", k, show(saved, k), show(now, k)));
  return out;
}

}  // namespace

uint64_t fnv1a64(const void* data, size_t bytes, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

nlohmann::ordered_json run_fingerprint(const TrainConfig& cfg, WeightStorage storage, uint64_t data_hash) {
  nlohmann::ordered_json j;
  for (const config::FieldInfo& f : config::config_fields())
    if (affects_trajectory(f.path)) j[f.path] = config::format_value(f.get(cfg));
  j["weights.storage"] = storage_name(storage);
  j["data.fingerprint"] = hex64(data_hash);
  return j;
}

std::string checkpoint_dir_name(int64_t step) {
  return fmt::format("checkpoint-{}", step);
}

void save_checkpoint(const std::string& dir, const AdapterSet& adapters, const std::string& base_model,
                     std::span<const OptimizerSlot> optimizers, const TrainerState& state) {
  replace_directory(dir, [&](const std::string& tmp) {
    write_peft_adapter_files(tmp, adapters, base_model);
    fault::kill_if_reached("checkpoint_write");  // test hook: a crash halfway through the save
    for (const OptimizerSlot& o : optimizers)
      save_optimizer_state((fs::path(tmp) / o.file).string(), *o.optimizer, *o.schedule);
    // Last: a directory with trainer_state.json is complete (list_checkpoints relies on it).
    write_file_atomic((fs::path(tmp) / kStateFile).string(), state_to_json(state).dump(2) + "\n");
  });
}

TrainerState load_trainer_state(const std::string& dir, const nlohmann::ordered_json& run) {
  const std::string state_path = (fs::path(dir) / kStateFile).string();
  BIDORA_CHECK(fs::is_directory(dir), "{}: no such checkpoint directory", dir);
  BIDORA_CHECK(fs::exists(state_path), "{}: missing (not a complete bidora checkpoint)", state_path);
  TrainerState state = state_from_json(json_util::parse_file(state_path), state_path);
  if (const auto diff = fingerprint_differences(state.run, run); !diff.empty())
    fail(
        "{}: cannot resume exactly, the run differs from the checkpoint's:\n  {}\nuse the original settings, "
        "or "
        "start a new run with --overwrite",
        state_path, fmt::join(diff, "\n  "));
  return state;
}

void load_checkpoint_values(const std::string& dir, AdapterSet& adapters,
                            const std::vector<LayerWeights>& layers,
                            std::span<const OptimizerSlot> optimizers) {
  const std::string adapter_src = (fs::path(dir) / "adapter_model.safetensors").string();
  adapters.assign_values(read_peft_adapter(dir, layers), adapter_src);
  for (const OptimizerSlot& o : optimizers) {
    const std::string opt_path = (fs::path(dir) / o.file).string();
    BIDORA_CHECK(fs::exists(opt_path), "{}: missing (not a complete bidora checkpoint)", opt_path);
    const int64_t opt_step = load_optimizer_state(opt_path, *o.optimizer, *o.schedule);
    BIDORA_CHECK(opt_step == o.expected_step, "{}: optimiser step {} but {} implies {}", opt_path, opt_step,
                 (fs::path(dir) / kStateFile).string(), o.expected_step);
  }
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& out_dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(out_dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(out_dir, ec)) {
    if (!entry.is_directory()) continue;
    const auto step = checkpoint_step(entry.path().filename().string());
    if (step && fs::exists(entry.path() / kStateFile)) out.emplace_back(*step, entry.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> remove_interrupted_saves(const std::string& out_dir) {
  // What replace_directory and write_file_atomic leave when the process dies mid-save, for the
  // names a run writes in its output directory: "<name>.tmp.<pid>" (the new version being
  // written) and "<name>.old.<pid>" (the version it replaces, moved aside).
  static const std::set<std::string> outputs = {"final_model",   "best_model",  "search_model",
                                                "metrics.jsonl", "config.yaml", "training_plot.svg"};
  struct Debris {
    fs::path path, target;
    bool old = false;
    int64_t pid = 0;
  };
  std::vector<Debris> found;
  std::error_code ec;
  if (!fs::is_directory(out_dir, ec)) return {};
  for (const auto& entry : fs::directory_iterator(out_dir, ec)) {
    const std::string name = entry.path().filename().string();
    Debris d;
    size_t mark = name.rfind(".tmp.");
    if (mark == std::string::npos) {
      mark = name.rfind(".old.");
      d.old = true;
    }
    if (mark == std::string::npos) continue;
    const std::string base = name.substr(0, mark), digits = name.substr(mark + 5);
    const auto [end, perr] = std::from_chars(digits.data(), digits.data() + digits.size(), d.pid);
    if (perr != std::errc() || end != digits.data() + digits.size() || d.pid <= 0) continue;
    if (!outputs.count(base) && !checkpoint_step(base)) continue;
    // A live process may still be writing it (another run in the same directory, or this one).
    if (d.pid == ::getpid() || ::kill(static_cast<pid_t>(d.pid), 0) == 0 || errno != ESRCH) continue;
    d.path = entry.path();
    d.target = entry.path().parent_path() / base;
    found.push_back(std::move(d));
  }
  auto fail_on = [](const fs::path& p, const std::error_code& e) {
    if (e) fail("{}: cannot clean up what an interrupted save left: {}", p.string(), e.message());
  };
  std::vector<std::string> removed;
  // A death between replace_directory's two renames leaves no <name> but a complete new version
  // (the temporary directory is filled before anything is moved) and the previous one: put the
  // new one in place, or the previous one back if the new one is gone.
  for (const Debris& d : found) {
    if (!d.old) continue;
    if (!fs::exists(d.target)) {
      const fs::path tmp = d.target.string() + ".tmp." + std::to_string(d.pid);
      fs::rename(fs::exists(tmp) ? tmp : d.path, d.target, ec);
      fail_on(d.target, ec);
    }
    if (fs::exists(d.path)) {
      fs::remove_all(d.path, ec);
      fail_on(d.path, ec);
      removed.push_back(d.path.string());
    }
  }
  for (const Debris& d : found) {
    if (d.old || !fs::exists(d.path)) continue;  // gone: moved into place above
    fs::remove_all(d.path, ec);
    fail_on(d.path, ec);
    removed.push_back(d.path.string());
  }
  std::sort(removed.begin(), removed.end());
  return removed;
}

void rotate_checkpoints(const std::string& out_dir, int64_t keep) {
  if (keep <= 0) return;
  auto all = list_checkpoints(out_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
    std::error_code ec;
    fs::remove_all(all[i].second, ec);
    if (ec)
      fail("{}: cannot delete an old checkpoint (save_total_limit {}): {}", all[i].second, keep,
           ec.message());
  }
}

}  // namespace bidora::train
