#include "cli/training_plan.h"

#include <fmt/format.h>

#include "cli/table.h"
#include "core/error.h"

namespace bidora::cli {
namespace {

bool is_default(const ConfigOrigins& origins, const std::string& path) {
  auto it = origins.find(path);
  return it == origins.end() || it->second == "default";
}

std::string origin_of(const ConfigOrigins& origins, const std::string& path) {
  auto it = origins.find(path);
  return it == origins.end() ? "default" : it->second;
}

// The storages worth trying for this configuration, best first, and why that list.
struct StorageCandidates {
  std::vector<WeightStorage> list;
  std::string why;  // for a single fixed storage: where it comes from
  bool adjustable = false;
};

StorageCandidates storage_candidates(const TrainConfig& cfg, const ConfigOrigins& origins,
                                     const ModelConfig& model) {
  const bool auto_hw = cfg.hardware.auto_hardware;
  const std::string origin = origin_of(origins, "model.quantization");
  const std::vector<WeightStorage> all(kStoragePreference.begin(), kStoragePreference.end());
  switch (cfg.model.quantization) {
    case Quantization::F32:
      return {{WeightStorage::F32}, "model.quantization = f32", false};
    case Quantization::NF4:
      return {{WeightStorage::NF4}, fmt::format("model.quantization = nf4 ({})", origin), false};
    case Quantization::Int8:
      return {{WeightStorage::INT8}, fmt::format("model.quantization = int8 ({})", origin), false};
    case Quantization::BF16:
      // The default storage is a preference, not a user's choice: it gives way when it does not fit.
      if (auto_hw && origin == "default") return {all, "", true};
      return {{WeightStorage::BF16}, fmt::format("model.quantization = bf16 ({})", origin), false};
    case Quantization::None:
      if (model.torch_dtype == "bfloat16")
        return {{WeightStorage::BF16}, "quantization none: the checkpoint is bfloat16", false};
      return {{WeightStorage::F32},
              fmt::format("quantization none: the checkpoint is {}, kept exact in f32",
                          model.torch_dtype.empty() ? "not bf16" : model.torch_dtype),
              false};
    case Quantization::Auto:
      if (!auto_hw)
        return {{WeightStorage::BF16}, "quantization auto with hardware.auto_hardware off", false};
      return {all, "", true};
  }
  return {{WeightStorage::BF16}, "", false};
}

std::string shape_text(const TrainingShape& s) {
  return fmt::format("batch {} x {} tokens", s.batch, s.seq_len);
}

}  // namespace

TrainingShape training_shape(const TrainConfig& cfg) {
  TrainingShape s;
  s.lora_rank = cfg.adapter.r;
  s.targets = cfg.adapter.targets;
  s.dora = cfg.adapter.method != AdapterMethod::LoRA;  // DoRA and BiDoRA train magnitudes
  s.dropout = cfg.adapter.dropout;
  s.adam_8bit = cfg.training.optimizer == OptimizerKind::AdamW8bit;
  s.batch = cfg.training.batch_size;
  s.seq_len = cfg.training.max_seq_len;
  s.gradient_checkpointing = cfg.training.gradient_checkpointing;
  s.saves_optimizer = cfg.training.save_steps > 0;
  s.bilevel = cfg.adapter.method == AdapterMethod::BiDoRA;
  s.orth_regulariser = cfg.training.bidora.orth_reg > 0;
  s.bf16_compute = cfg.model.compute_dtype == ComputeDtype::BF16;
  return s;
}

DeviceMemory host_memory(const HardwareInfo& hw) {
  return {"RAM", hw.memory.available_bytes};
}

int64_t TrainingPlan::usable_bytes() const {
  return static_cast<int64_t>(kFitMargin * static_cast<double>(device.available_bytes));
}

TrainingShape TrainingPlan::shape(const TrainConfig& cfg) const {
  TrainingShape s = training_shape(cfg);
  s.batch = batch_size;
  s.seq_len = max_seq_len;
  return s;
}

TrainConfig TrainingPlan::apply(TrainConfig cfg) const {
  cfg.training.batch_size = batch_size;
  cfg.training.gradient_accumulation_steps = grad_accum;
  cfg.training.max_seq_len = max_seq_len;
  cfg.hardware.threads = threads;
  return cfg;
}

int plan_threads(const TrainConfig& cfg, const HardwareInfo& hw) {
  if (cfg.hardware.threads > 0) return static_cast<int>(cfg.hardware.threads);
  return cfg.hardware.auto_hardware ? hw.usable_physical_cores() : hw.usable_cpus();
}

TrainingPlan plan_training(const TrainConfig& cfg, const ConfigOrigins& origins, const ModelConfig& model,
                           const DeviceMemory& device, const HardwareInfo& hw) {
  TrainingPlan plan;
  plan.device = device;
  plan.batch_size = cfg.training.batch_size;
  plan.grad_accum = cfg.training.gradient_accumulation_steps;
  plan.max_seq_len = cfg.training.max_seq_len;
  plan.threads = plan_threads(cfg, hw);
  const bool auto_hw = cfg.hardware.auto_hardware;
  const bool known = device.available_bytes > 0;
  const StorageCandidates cands = storage_candidates(cfg, origins, model);
  TrainingShape shape = training_shape(cfg);
  auto estimate = [&](WeightStorage s, const TrainingShape& sh) {
    return estimate_training_memory(model, s, sh);
  };
  // Reasons say "the 17.6 GiB usable"; the error also names the RAM it is a share of.
  const std::string usable = fmt::format("{} usable", format_bytes(plan.usable_bytes()));
  const std::string usable_of = fmt::format("{} ({:.0f}% of {} {} available)", usable, kFitMargin * 100,
                                            format_bytes(device.available_bytes), device.name);

  // 1. Storage: the first candidate that fits the configured run, else the last (most compact).
  plan.storage = cands.list.back();
  std::string storage_reason;
  bool found = false;
  if (auto_hw && known) {
    for (WeightStorage s : cands.list) {
      if (fits(estimate(s, shape), device.available_bytes)) {
        plan.storage = s;
        found = true;
        break;
      }
    }
  } else {
    plan.storage = cands.list.front();
  }
  if (!cands.adjustable) {
    storage_reason = cands.why;
  } else if (!known) {
    storage_reason = fmt::format("{} memory unknown: the preferred storage", device.name);
  } else if (plan.storage == cands.list.front()) {
    storage_reason = fmt::format("fits: {} needs {} of the {}", shape_text(shape),
                                 format_bytes(estimate(plan.storage, shape).total()), usable);
  } else {
    storage_reason =
        fmt::format("{} needs {} for {}, more than the {}; {} {}", storage_name(cands.list.front()),
                    format_bytes(estimate(cands.list.front(), shape).total()), shape_text(shape), usable,
                    storage_name(plan.storage),
                    found ? fmt::format("needs {}", format_bytes(estimate(plan.storage, shape).total()))
                          : "is the most compact storage");
  }
  // Changed: not the configured storage (or, for auto and the default, not the preferred one).
  const std::string configured_q = to_string(cfg.model.quantization);
  plan.choices.push_back(
      {"model.quantization", storage_name(plan.storage), plan.storage != cands.list.front(), storage_reason});

  // 2. and 3. Batch, then sequence length, when even that storage does not fit.
  std::string batch_reason = "as configured", seq_reason = "as configured";
  if (auto_hw && known && !found) {
    const bool batch_free = is_default(origins, "training.batch_size") &&
                            is_default(origins, "training.gradient_accumulation_steps");
    const bool seq_free = is_default(origins, "training.max_seq_len");
    const int64_t effective = plan.batch_size * plan.grad_accum;
    const int64_t need_configured = estimate(plan.storage, shape).total();
    // Halve the batch while it does not fit; keep only sizes that divide the effective batch.
    if (batch_free) {
      for (int64_t b = plan.batch_size / 2; b >= 1; b /= 2) {
        if (effective % b != 0) continue;
        shape.batch = b;
        if (fits(estimate(plan.storage, shape), device.available_bytes)) break;
      }
      if (shape.batch != plan.batch_size) {
        batch_reason = fmt::format("batch {} needs {} with {}, more than the {}; effective batch {} kept",
                                   plan.batch_size, format_bytes(need_configured), storage_name(plan.storage),
                                   usable, effective);
        plan.batch_size = shape.batch;
        plan.grad_accum = effective / shape.batch;
      }
    }
    if (!fits(estimate(plan.storage, shape), device.available_bytes) && seq_free) {
      const int64_t need_seq = estimate(plan.storage, shape).total();
      const int64_t configured_seq = shape.seq_len;
      while (shape.seq_len > kMinPlannedSeqLen &&
             !fits(estimate(plan.storage, shape), device.available_bytes))
        shape.seq_len = std::max(kMinPlannedSeqLen, shape.seq_len / 2);
      if (shape.seq_len != configured_seq) {
        seq_reason =
            fmt::format("batch {} x {} tokens needs {}, more than the {}; longer examples are truncated",
                        shape.batch, configured_seq, format_bytes(need_seq), usable);
        plan.max_seq_len = shape.seq_len;
      }
    }
    if (!fits(estimate(plan.storage, shape), device.available_bytes)) {
      // Name what the plan was not allowed to change, or say that nothing is left to change.
      std::vector<std::string> fixed;
      if (!cands.adjustable)
        fixed.push_back(fmt::format("model.quantization = {} ({})", configured_q,
                                    origin_of(origins, "model.quantization")));
      if (!batch_free && shape.batch > 1) {
        for (const char* f : {"training.batch_size", "training.gradient_accumulation_steps"})
          if (!is_default(origins, f))
            fixed.push_back(fmt::format("{} = {} ({})", f,
                                        std::string(f) == "training.batch_size"
                                            ? cfg.training.batch_size
                                            : cfg.training.gradient_accumulation_steps,
                                        origin_of(origins, f)));
      }
      if (!seq_free && shape.seq_len > kMinPlannedSeqLen)
        fixed.push_back(fmt::format("training.max_seq_len = {} ({})", cfg.training.max_seq_len,
                                    origin_of(origins, "training.max_seq_len")));
      const int64_t need = estimate(plan.storage, shape).total();
      const std::string need_text =
          fmt::format("{} with {} needs about {}, more than the {}", shape_text(shape),
                      storage_name(plan.storage), format_bytes(need), usable_of);
      plan.error =
          fixed.empty()
              ? fmt::format("the model does not fit: {} (use a smaller model or adapter.r, or free memory)",
                            need_text)
              : fmt::format(
                    "the run does not fit with the value{} set explicitly — {}: {}; lower {} or "
                    "leave {} to the auto-hardware plan",
                    fixed.size() == 1 ? "" : "s", fmt::join(fixed, ", "), need_text,
                    fixed.size() == 1 ? "it" : "them", fixed.size() == 1 ? "it" : "them");
    }
  } else if (!auto_hw) {
    batch_reason = seq_reason = "as configured (hardware.auto_hardware off)";
  } else if (!known) {
    batch_reason = seq_reason = fmt::format("as configured ({} memory unknown)", device.name);
  }
  plan.choices.push_back({"training.batch_size", std::to_string(plan.batch_size),
                          plan.batch_size != cfg.training.batch_size, batch_reason});
  plan.choices.push_back({"training.gradient_accumulation_steps", std::to_string(plan.grad_accum),
                          plan.grad_accum != cfg.training.gradient_accumulation_steps, batch_reason});
  plan.choices.push_back({"training.max_seq_len", std::to_string(plan.max_seq_len),
                          plan.max_seq_len != cfg.training.max_seq_len, seq_reason});
  std::string threads_reason;
  if (cfg.hardware.threads > 0)
    threads_reason = fmt::format("hardware.threads ({})", origin_of(origins, "hardware.threads"));
  else if (auto_hw)
    threads_reason = fmt::format("physical cores this process may use ({} logical CPUs)", hw.usable_cpus());
  else
    threads_reason = "logical CPUs this process may use (hardware.auto_hardware off)";
  // threads: 0 is "let the plan decide", so resolving it is not a change.
  plan.choices.push_back({"hardware.threads", std::to_string(plan.threads), false, threads_reason});
  // Not chosen for the user (bf16 products change the numbers): said, with what it would do here.
  const bool native_bf16 = hw.isa.avx512_bf16 || hw.isa.amx_bf16;
  std::string compute_reason;
  if (cfg.model.compute_dtype == ComputeDtype::BF16)
    compute_reason = native_bf16 ? "bf16 products with float32 sums on this CPU's AVX512_BF16"
                                 : "this CPU has no AVX512_BF16: bf16 products are emulated, slower than f32";
  else
    compute_reason = native_bf16 ? "exact float32 products; --compute-dtype bf16 runs the frozen products in "
                                   "bf16 on this CPU's AVX512_BF16 (about 1.5x the tokens/s)"
                                 : "exact float32 products (no AVX512_BF16 here for a faster bf16)";
  plan.choices.push_back({"model.compute_dtype", to_string(cfg.model.compute_dtype), false, compute_reason});

  plan.estimate = estimate(plan.storage, shape);
  plan.fits = fits(plan.estimate, device.available_bytes);
  return plan;
}

std::vector<std::string> plan_lines(const TrainingPlan& plan) {
  std::vector<std::string> out;
  for (const auto& c : plan.choices)
    out.push_back(
        fmt::format("Plan: {} = {}{} — {}", c.field, c.value, c.changed ? " (changed)" : "", c.reason));
  return out;
}

nlohmann::json estimate_json(const MemoryEstimate& e) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& p : e.parts()) j[std::string(p.key) + "_bytes"] = p.bytes;
  j["total_bytes"] = e.total();
  j["trainable_parameters"] = e.trainable_params;
  return j;
}

nlohmann::json plan_json(const TrainingPlan& plan) {
  nlohmann::json choices = nlohmann::json::array();
  for (const auto& c : plan.choices)
    choices.push_back({{"field", c.field}, {"value", c.value}, {"changed", c.changed}, {"reason", c.reason}});
  return {{"storage", storage_name(plan.storage)},
          {"batch_size", plan.batch_size},
          {"gradient_accumulation_steps", plan.grad_accum},
          {"max_seq_len", plan.max_seq_len},
          {"threads", plan.threads},
          {"device", plan.device.name},
          {"available_bytes", plan.device.available_bytes},
          {"usable_bytes", plan.usable_bytes()},
          {"fits", plan.fits},
          {"error", plan.error},
          {"choices", choices},
          {"estimate", estimate_json(plan.estimate)}};
}

}  // namespace bidora::cli
