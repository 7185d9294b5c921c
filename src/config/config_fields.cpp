// The schema: enum spellings and the table of every configuration field.
#include "config/config_fields.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"

namespace bidora {
namespace {

// Canonical name first, then accepted spellings (after lower-casing and '-' -> '_').
template <typename E>
struct EnumNames {
  E value;
  std::vector<std::string> names;
};

const std::vector<EnumNames<Quantization>> kQuantization = {
    {Quantization::Auto, {"auto"}},
    {Quantization::None, {"none"}},
    {Quantization::F32, {"f32", "fp32", "float32"}},
    {Quantization::BF16, {"bf16", "bfloat16"}},
    {Quantization::NF4, {"nf4", "4bit"}},  // "4bit"/"8bit" are the Python original's names
    {Quantization::Int8, {"int8", "8bit"}},
};
const std::vector<EnumNames<ComputeDtype>> kComputeDtype = {
    {ComputeDtype::F32, {"f32", "fp32", "float32"}},
    {ComputeDtype::BF16, {"bf16", "bfloat16"}},
};
const std::vector<EnumNames<AdapterMethod>> kMethod = {
    {AdapterMethod::LoRA, {"lora"}},
    {AdapterMethod::DoRA, {"dora"}},
    {AdapterMethod::BiDoRA, {"bidora"}},
};
const std::vector<EnumNames<LoraInit>> kInit = {
    {LoraInit::Default, {"true", "default", "kaiming"}},
    {LoraInit::Gaussian, {"gaussian"}},
};
const std::vector<EnumNames<LrScheduler>> kScheduler = {
    {LrScheduler::Cosine, {"cosine"}},
    {LrScheduler::Linear, {"linear"}},
    {LrScheduler::Constant, {"constant", "constant_with_warmup"}},
};
const std::vector<EnumNames<OptimizerKind>> kOptimizer = {
    {OptimizerKind::AdamW, {"adamw", "adamw_torch"}},
    {OptimizerKind::AdamW8bit, {"adamw_8bit", "adamw8bit"}},
};
const std::vector<EnumNames<DataFormat>> kDataFormat = {
    {DataFormat::Auto, {"auto"}},
    {DataFormat::Alpaca, {"alpaca", "instruction"}},
    {DataFormat::PromptCompletion, {"prompt_completion", "completion"}},
    {DataFormat::Code, {"code"}},
    {DataFormat::Text, {"text"}},
    {DataFormat::Messages, {"messages", "chat"}},
};

template <typename E>
const char* name_of(const std::vector<EnumNames<E>>& table, E v) {
  for (const auto& e : table) {
    if (e.value == v) return e.names.front().c_str();
  }
  return "?";
}

}  // namespace

const char* to_string(Quantization v) {
  return name_of(kQuantization, v);
}
const char* to_string(ComputeDtype v) {
  return name_of(kComputeDtype, v);
}
const char* to_string(AdapterMethod v) {
  return name_of(kMethod, v);
}
const char* to_string(LoraInit v) {
  return name_of(kInit, v);
}
const char* to_string(LrScheduler v) {
  return name_of(kScheduler, v);
}
const char* to_string(OptimizerKind v) {
  return name_of(kOptimizer, v);
}
const char* to_string(DataFormat v) {
  return name_of(kDataFormat, v);
}

namespace config {
namespace {

// ---- field builders ----------------------------------------------------------------------------

#define BIDORA_MEMBER(expr) \
  [](auto& c) -> auto& {    \
    return c.expr;          \
  }

FieldInfo base(std::string path, FieldType type, std::string flags, std::string help,
               std::vector<std::string> aliases) {
  FieldInfo f;
  f.path = std::move(path);
  f.type = type;
  f.flags = std::move(flags);
  f.help = std::move(help);
  f.aliases = std::move(aliases);
  return f;
}

Range closed(double a, double b) {
  return {a, b, false, false};
}
Range open_closed(double a, double b) {
  return {a, b, true, false};
}
Range at_least(double a) {
  return {a, std::nullopt, false, false};
}
Range closed_open(double a, double b) {
  return {a, b, false, true};
}

template <typename Access>
FieldInfo int_field(std::string path, Access acc, Range r, std::string flags, std::string help,
                    std::vector<std::string> aliases = {}) {
  FieldInfo f = base(std::move(path), FieldType::Int, std::move(flags), std::move(help), std::move(aliases));
  f.range = r;
  f.get = [acc](const TrainConfig& c) -> FieldValue { return static_cast<int64_t>(acc(c)); };
  f.set = [acc](TrainConfig& c, const FieldValue& v) { acc(c) = std::get<int64_t>(v); };
  return f;
}

template <typename Access>
FieldInfo float_field(std::string path, Access acc, Range r, std::string flags, std::string help,
                      std::vector<std::string> aliases = {}) {
  FieldInfo f =
      base(std::move(path), FieldType::Float, std::move(flags), std::move(help), std::move(aliases));
  f.range = r;
  f.get = [acc](const TrainConfig& c) -> FieldValue { return static_cast<double>(acc(c)); };
  f.set = [acc](TrainConfig& c, const FieldValue& v) { acc(c) = std::get<double>(v); };
  return f;
}

template <typename Access>
FieldInfo bool_field(std::string path, Access acc, std::string flags, std::string help,
                     std::vector<std::string> aliases = {}) {
  FieldInfo f = base(std::move(path), FieldType::Bool, std::move(flags), std::move(help), std::move(aliases));
  f.get = [acc](const TrainConfig& c) -> FieldValue { return static_cast<bool>(acc(c)); };
  f.set = [acc](TrainConfig& c, const FieldValue& v) { acc(c) = std::get<bool>(v); };
  return f;
}

template <typename Access>
FieldInfo string_field(std::string path, Access acc, std::string flags, std::string help,
                       std::vector<std::string> aliases = {}) {
  FieldInfo f =
      base(std::move(path), FieldType::String, std::move(flags), std::move(help), std::move(aliases));
  f.get = [acc](const TrainConfig& c) -> FieldValue { return std::string(acc(c)); };
  f.set = [acc](TrainConfig& c, const FieldValue& v) { acc(c) = std::get<std::string>(v); };
  return f;
}

template <typename E, typename Access>
FieldInfo enum_field(std::string path, Access acc, const std::vector<EnumNames<E>>& table, std::string flags,
                     std::string help, std::vector<std::string> aliases = {}) {
  std::vector<std::string> choices;
  for (const auto& e : table) choices.push_back(e.names.front());
  FieldInfo f = base(std::move(path), FieldType::Enum, std::move(flags), std::move(help), std::move(aliases));
  f.choices = std::move(choices);
  f.canonical = [&table](const std::string& t) -> std::optional<std::string> {
    for (const auto& e : table) {
      if (std::find(e.names.begin(), e.names.end(), t) != e.names.end()) return e.names.front();
    }
    return std::nullopt;
  };
  f.get = [acc, &table](const TrainConfig& c) -> FieldValue { return std::string(name_of(table, acc(c))); };
  f.set = [acc, &table](TrainConfig& c, const FieldValue& v) {
    const auto& name = std::get<std::string>(v);
    for (const auto& e : table) {
      if (e.names.front() == name) {
        acc(c) = e.value;
        return;
      }
    }
    fail("internal: '{}' is not a canonical value", name);
  };
  return f;
}

template <typename Access>
FieldInfo list_field(std::string path, Access acc, std::vector<std::string> choices, std::string flags,
                     std::string help, std::vector<std::string> aliases = {}) {
  FieldInfo f = base(std::move(path), FieldType::List, std::move(flags), std::move(help), std::move(aliases));
  f.choices = std::move(choices);
  f.get = [acc](const TrainConfig& c) -> FieldValue { return std::vector<std::string>(acc(c)); };
  f.set = [acc](TrainConfig& c, const FieldValue& v) { acc(c) = std::get<std::vector<std::string>>(v); };
  return f;
}

std::vector<FieldInfo> build_fields() {
  std::vector<FieldInfo> f;
  // model
  f.push_back(
      string_field("model.name_or_path", BIDORA_MEMBER(model.name_or_path), "-m,--model",
                   "Model directory (config.json + *.safetensors) or Hugging Face id in the local cache",
                   {"model_name", "name"}));
  f.push_back(enum_field("model.quantization", BIDORA_MEMBER(model.quantization), kQuantization,
                         "-q,--quantization",
                         "Frozen weight storage; auto = best that fits the RAM, none = checkpoint dtype"));
  f.push_back(enum_field("model.compute_dtype", BIDORA_MEMBER(model.compute_dtype), kComputeDtype,
                         "--compute-dtype", "Precision of activations and matmuls"));
  f.push_back(bool_field("model.trust_remote_code", BIDORA_MEMBER(model.trust_remote_code),
                         "--trust-remote-code",
                         "Accepted for compatibility; must stay false (bidora runs no model code)"));
  // adapter
  f.push_back(enum_field("adapter.method", BIDORA_MEMBER(adapter.method), kMethod, "--method",
                         "Adapter: LoRA, DoRA (magnitude + direction) or BiDoRA (bi-level DoRA)"));
  f.push_back(int_field("adapter.r", BIDORA_MEMBER(adapter.r), closed(1, 4096), "-r,--rank", "LoRA rank",
                        {"rank", "lora_r"}));
  f.push_back(float_field(
      "adapter.alpha", BIDORA_MEMBER(adapter.alpha), open_closed(0, 65536), "--alpha,--lora-alpha",
      "LoRA alpha (scaling = alpha/sqrt(r) with rsLoRA, alpha/r without)", {"lora_alpha"}));
  f.push_back(float_field("adapter.dropout", BIDORA_MEMBER(adapter.dropout), closed_open(0, 1),
                          "--dropout,--lora-dropout", "Dropout on the LoRA input", {"lora_dropout"}));
  f.push_back(list_field(
      "adapter.targets", BIDORA_MEMBER(adapter.targets), kLinearModules, "--targets,--target-modules",
      "Linear layers to adapt: q,k,v,o,gate,up,down (or *_proj names) or all-linear", {"target_modules"}));
  f.push_back(bool_field("adapter.use_rslora", BIDORA_MEMBER(adapter.use_rslora), "--rslora",
                         "Rank-stabilised scaling alpha/sqrt(r)"));
  f.push_back(enum_field("adapter.init", BIDORA_MEMBER(adapter.init), kInit, "--lora-init",
                         "LoRA init: true (kaiming-uniform A, B=0, PEFT default) or gaussian",
                         {"init_lora_weights"}));
  f.push_back(string_field("adapter.init_from", BIDORA_MEMBER(adapter.init_from), "-a,--adapter",
                           "Trained adapter directory to start from (its r, alpha, targets, method and "
                           "rsLoRA are used; the optimiser starts fresh). eval: the adapter to evaluate",
                           {"adapter_name_or_path", "init_adapter"}));
  f.push_back(bool_field("adapter.allow_base_mismatch", BIDORA_MEMBER(adapter.allow_base_mismatch),
                         "--allow-base-mismatch",
                         "Use --adapter even if its adapter_config.json names another base model"));
  // training
  f.push_back(float_field("training.learning_rate", BIDORA_MEMBER(training.learning_rate), open_closed(0, 1),
                          "--lr,--learning-rate", "Peak learning rate", {"lr"}));
  f.push_back(int_field("training.epochs", BIDORA_MEMBER(training.epochs), closed(1, 10000), "-e,--epochs",
                        "Passes over the training data", {"num_epochs", "num_train_epochs"}));
  f.push_back(int_field("training.batch_size", BIDORA_MEMBER(training.batch_size), closed(1, 4096),
                        "-b,--batch-size", "Sequences per micro-batch", {"per_device_train_batch_size"}));
  f.push_back(int_field("training.gradient_accumulation_steps",
                        BIDORA_MEMBER(training.gradient_accumulation_steps), closed(1, 65536),
                        "--grad-accum,--gradient-accumulation-steps", "Micro-batches per optimizer step"));
  f.push_back(int_field("training.warmup_steps", BIDORA_MEMBER(training.warmup_steps), at_least(0),
                        "--warmup-steps", "Linear warm-up steps"));
  f.push_back(int_field("training.max_seq_len", BIDORA_MEMBER(training.max_seq_len), closed(2, 1 << 20),
                        "--max-seq-len,--max-seq-length",
                        "Tokens per sequence (longer examples are truncated)", {"max_seq_length"}));
  f.push_back(float_field("training.weight_decay", BIDORA_MEMBER(training.weight_decay), closed(0, 1),
                          "--weight-decay", "AdamW decoupled weight decay"));
  f.push_back(float_field("training.max_grad_norm", BIDORA_MEMBER(training.max_grad_norm), closed(0, 1e6),
                          "--max-grad-norm", "Gradient clipping norm (0 disables)"));
  f.push_back(int_field("training.seed", BIDORA_MEMBER(training.seed), closed(0, 4294967295.0), "--seed",
                        "Seed for shuffling, splitting, dropout and init", {}));
  f.push_back(enum_field("training.lr_scheduler", BIDORA_MEMBER(training.lr_scheduler), kScheduler,
                         "--lr-scheduler", "Learning-rate schedule after warm-up", {"lr_scheduler_type"}));
  f.push_back(enum_field("training.optimizer", BIDORA_MEMBER(training.optimizer), kOptimizer, "--optimizer",
                         "AdamW with f32 or blockwise 8-bit moments", {"optim"}));
  f.push_back(float_field("training.adam_beta1", BIDORA_MEMBER(training.adam_beta1), closed_open(0, 1),
                          "--adam-beta1", "AdamW beta1"));
  f.push_back(float_field("training.adam_beta2", BIDORA_MEMBER(training.adam_beta2), closed_open(0, 1),
                          "--adam-beta2", "AdamW beta2"));
  f.push_back(float_field("training.adam_epsilon", BIDORA_MEMBER(training.adam_epsilon), open_closed(0, 1),
                          "--adam-epsilon", "AdamW epsilon"));
  f.push_back(bool_field("training.gradient_checkpointing", BIDORA_MEMBER(training.gradient_checkpointing),
                         "--gradient-checkpointing", "Recompute activations in backward to save memory"));
  f.push_back(int_field("training.eval_steps", BIDORA_MEMBER(training.eval_steps), at_least(0),
                        "--eval-steps", "Evaluate every N optimizer steps (0 = each epoch)"));
  f.push_back(int_field("training.save_steps", BIDORA_MEMBER(training.save_steps), at_least(0),
                        "--save-steps", "Save a checkpoint every N optimizer steps (0 = only at the end)"));
  f.push_back(int_field("training.logging_steps", BIDORA_MEMBER(training.logging_steps), at_least(1),
                        "--logging-steps", "Log metrics every N optimizer steps"));
  f.push_back(int_field("training.save_total_limit", BIDORA_MEMBER(training.save_total_limit), closed(0, 1e6),
                        "--save-total-limit", "Checkpoints to keep (0 = all)"));
  f.push_back(int_field("training.max_steps", BIDORA_MEMBER(training.max_steps), at_least(-1), "--max-steps",
                        "Stop after N optimizer steps (-1 = run all epochs; BiDoRA: per phase)"));
  f.push_back(int_field("training.bidora.lower_steps", BIDORA_MEMBER(training.bidora.lower_steps),
                        closed(1, 100), "--lower-steps", "BiDoRA: direction steps per magnitude step"));
  f.push_back(float_field("training.bidora.upper_lr_mult", BIDORA_MEMBER(training.bidora.upper_lr_mult),
                          open_closed(0, 1000), "--upper-lr-mult",
                          "BiDoRA: magnitude LR = learning_rate * this", {"upper_lr_multiplier"}));
  f.push_back(float_field("training.bidora.fd_alpha", BIDORA_MEMBER(training.bidora.fd_alpha),
                          open_closed(0, 1), "--fd-alpha",
                          "BiDoRA: finite-difference step, eps = fd_alpha / ||v||", {"darts_alpha"}));
  f.push_back(float_field("training.bidora.orth_reg", BIDORA_MEMBER(training.bidora.orth_reg), closed(0, 1),
                          "--orth-reg", "BiDoRA: weight of the direction orthogonality regulariser",
                          {"reg_loss_d"}));
  f.push_back(int_field("training.bidora.retrain_epochs", BIDORA_MEMBER(training.bidora.retrain_epochs),
                        closed(0, 100), "--retrain-epochs",
                        "BiDoRA: final epochs on train+val with magnitudes frozen (0 = skip)"));
  f.push_back(bool_field("training.bidora.retrain_from_init", BIDORA_MEMBER(training.bidora.retrain_from_init),
                         "--retrain-from-init",
                         "BiDoRA: retrain the directions from their initial values (as the official code) "
                         "instead of continuing from the searched ones"));
  // data
  f.push_back(string_field("data.train_file", BIDORA_MEMBER(data.train_file), "-t,--train-file",
                           "Training data (JSONL)"));
  f.push_back(string_field("data.val_file", BIDORA_MEMBER(data.val_file), "--val-file",
                           "Validation data (JSONL); empty = split off the training data"));
  f.push_back(float_field("data.val_split_ratio", BIDORA_MEMBER(data.val_split_ratio), closed(0, 0.5),
                          "--val-split,--val-split-ratio",
                          "Fraction of the training data held out without val_file"));
  f.push_back(int_field("data.max_samples", BIDORA_MEMBER(data.max_samples), at_least(0), "--max-samples",
                        "Use at most N training examples (0 = all)"));
  f.push_back(enum_field("data.format", BIDORA_MEMBER(data.format), kDataFormat, "--data-format",
                         "JSONL format; auto detects it from the fields of each line"));
  f.push_back(bool_field("data.packing", BIDORA_MEMBER(data.packing), "--packing",
                         "Pack several examples into one sequence"));
  f.push_back(bool_field("data.train_on_prompt", BIDORA_MEMBER(data.train_on_prompt), "--train-on-prompt",
                         "Compute the loss on prompts too, not only on responses"));
  f.push_back(bool_field("data.skip_bad_lines", BIDORA_MEMBER(data.skip_bad_lines), "--skip-bad-lines",
                         "Skip and count malformed lines instead of stopping"));
  // output
  f.push_back(string_field("output.dir", BIDORA_MEMBER(output.dir), "-o,--output,--output-dir",
                           "Directory for checkpoints and the final adapter", {"output_dir"}));
  f.push_back(bool_field("output.overwrite", BIDORA_MEMBER(output.overwrite), "--overwrite",
                         "Allow writing into a non-empty output directory"));
  f.push_back(string_field("output.resume", BIDORA_MEMBER(output.resume), "--resume",
                           "Continue a run: 'latest' (the newest checkpoint-N in the output directory; a "
                           "bare --resume means this) or a checkpoint directory",
                           {"resume_from_checkpoint"}));
  f.back().implicit_value = "latest";
  // hardware
  f.push_back(bool_field("hardware.auto_hardware", BIDORA_MEMBER(hardware.auto_hardware), "--auto-hardware",
                         "Resolve quantization: auto and threads: 0 from the detected hardware"));
  f.push_back(int_field("hardware.threads", BIDORA_MEMBER(hardware.threads), closed(0, 4096), "--threads",
                        "Worker threads (0 = the CPUs available to the process)"));
  return f;
}

#undef BIDORA_MEMBER

}  // namespace

std::string FieldInfo::key() const {
  return path.substr(path.rfind('.') + 1);
}
std::string FieldInfo::parent() const {
  return path.substr(0, path.rfind('.'));
}

const std::vector<FieldInfo>& config_fields() {
  static const std::vector<FieldInfo> fields = build_fields();
  return fields;
}

const FieldInfo* find_field(std::string_view path) {
  for (const auto& f : config_fields()) {
    if (f.path == path) return &f;
  }
  return nullptr;
}

const std::vector<std::string>& config_sections() {
  static const std::vector<std::string> sections = [] {
    std::vector<std::string> s;
    for (const auto& f : config_fields()) {
      if (std::find(s.begin(), s.end(), f.parent()) == s.end()) s.push_back(f.parent());
    }
    return s;
  }();
  return sections;
}

}  // namespace config
}  // namespace bidora
