#include "cli/training_plan.h"

#include <fmt/format.h>

#include "cli/table.h"
#include "core/error.h"

namespace bidora::cli {

TrainingShape training_shape(const TrainConfig& cfg) {
  TrainingShape s;
  s.lora_rank = cfg.adapter.r;
  s.targets = cfg.adapter.targets;
  s.dora = cfg.adapter.method != AdapterMethod::LoRA;  // DoRA and BiDoRA train magnitudes
  s.lora_dropout = cfg.adapter.dropout > 0;
  s.batch = cfg.training.batch_size;
  s.seq_len = cfg.training.max_seq_len;
  s.gradient_checkpointing = cfg.training.gradient_checkpointing;
  s.bilevel = cfg.adapter.method == AdapterMethod::BiDoRA;
  s.orth_regulariser = cfg.training.bidora.orth_reg > 0;
  return s;
}

StoragePlan plan_storage(const TrainConfig& cfg, const ModelConfig& model, int64_t available_bytes) {
  const TrainingShape shape = training_shape(cfg);
  auto make = [&](WeightStorage s, std::string reason) {
    return StoragePlan{s, estimate_training_memory(model, s, shape), std::move(reason)};
  };
  switch (cfg.model.quantization) {
    case Quantization::F32:
      return make(WeightStorage::F32, "model.quantization = f32");
    case Quantization::BF16:
      return make(WeightStorage::BF16, "model.quantization = bf16");
    case Quantization::NF4:
      return make(WeightStorage::NF4, "model.quantization = nf4");
    case Quantization::Int8:
      return make(WeightStorage::INT8, "model.quantization = int8");
    case Quantization::None:
      if (model.torch_dtype == "bfloat16")
        return make(WeightStorage::BF16, "none: the checkpoint is bfloat16");
      return make(WeightStorage::F32,
                  fmt::format("none: the checkpoint is {}, kept exact in f32",
                              model.torch_dtype.empty() ? "not bf16" : model.torch_dtype));
    case Quantization::Auto:
      break;
  }
  if (!cfg.hardware.auto_hardware)
    return make(WeightStorage::BF16, "auto with hardware.auto_hardware off: bf16");
  if (auto s = recommend_storage(model, available_bytes, shape)) {
    return make(*s, fmt::format("auto: best storage that fits {:.0f}% of {} available", kFitMargin * 100,
                                format_bytes(available_bytes)));
  }
  const MemoryEstimate smallest = estimate_training_memory(model, WeightStorage::NF4, shape);
  fail(
      "model.quantization = auto: the model does not fit even in nf4 (needs about {}, {} available); lower "
      "training.batch_size ({}), training.max_seq_len ({}) or adapter.r ({}), or use a smaller model",
      format_bytes(smallest.total()), format_bytes(available_bytes), cfg.training.batch_size,
      cfg.training.max_seq_len, cfg.adapter.r);
}

int plan_threads(const TrainConfig& cfg, const HardwareInfo& hw) {
  return cfg.hardware.threads > 0 ? static_cast<int>(cfg.hardware.threads) : hw.usable_cpus();
}

}  // namespace bidora::cli
