#pragma once
// The typed training configuration. Values are resolved in three layers:
//   defaults (below, as in the Python original) <- a YAML file (--config) <- command-line flags,
// then validated: every error names the field, the value and what is allowed.
//
// Deliberate differences from the Python original (bjoernbethge/bidora):
//   - adapter.method defaults to lora (what PEFT users expect); bidora and dora are opt-in.
//   - model.quantization defaults to bf16 storage (the original's CPU path ran in full precision,
//     and bf16 is exact for bf16 checkpoints); `auto` picks the best storage that fits the RAM.
//   - training.bidora.upper_lr_mult defaults to 1.0: the official BiDoRA scripts use the same LR
//     for both levels (the Python wrapper used 2.0).
//   - trust_remote_code exists only to reject `true` clearly: bidora never runs model code.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace bidora {

// How the frozen base weights are stored. auto: chosen from the model size and available RAM
// (bf16 if it fits, else int8, else nf4). none: keep the checkpoint's own dtype.
enum class Quantization { Auto, None, F32, BF16, NF4, Int8 };
enum class ComputeDtype { F32, BF16 };
enum class AdapterMethod { LoRA, DoRA, BiDoRA };
// PEFT init_lora_weights: true = A kaiming-uniform, B = 0; gaussian = A ~ N(0, 1/r), B = 0.
enum class LoraInit { Default, Gaussian };
enum class LrScheduler { Cosine, Linear, Constant };
enum class OptimizerKind { AdamW, AdamW8bit };
// The names match src/data's record formats; "chat" is accepted for messages.
enum class DataFormat { Auto, Alpaca, PromptCompletion, Code, Text, Messages };

const char* to_string(Quantization v);
const char* to_string(ComputeDtype v);
const char* to_string(AdapterMethod v);
const char* to_string(LoraInit v);
const char* to_string(LrScheduler v);
const char* to_string(OptimizerKind v);
const char* to_string(DataFormat v);

// The Linear layers LoRA can target, in block order.
inline const std::vector<std::string> kLinearModules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                        "gate_proj", "up_proj", "down_proj"};

struct ModelSection {
  std::string name_or_path;  // a directory with config.json + safetensors, or a HF id in the local cache
  Quantization quantization = Quantization::BF16;
  ComputeDtype compute_dtype = ComputeDtype::F32;
  bool trust_remote_code = false;
  bool operator==(const ModelSection&) const = default;
};

struct AdapterSection {
  AdapterMethod method = AdapterMethod::LoRA;
  int64_t r = 8;
  double alpha = 16.0;
  double dropout = 0.05;
  std::vector<std::string> targets = {"q_proj", "k_proj", "v_proj", "o_proj"};  // canonical names
  bool use_rslora = true;  // scaling alpha / sqrt(r) instead of alpha / r
  LoraInit init = LoraInit::Default;
  // A trained adapter directory (PEFT format) the run starts from: its A, B and m, and its r,
  // alpha, targets, method and rsLoRA (resolve_init_adapter); the optimiser starts fresh.
  // `bidora eval` evaluates this adapter.
  std::string init_from;
  // Accept init_from although its base_model_name_or_path names another model.
  bool allow_base_mismatch = false;
  bool operator==(const AdapterSection&) const = default;
};

// BiDoRA's bi-level optimisation (shared/reference/bidora-algorithm.md).
struct BiDoRASection {
  int64_t lower_steps = 1;     // direction (A, B) steps per magnitude step
  double upper_lr_mult = 1.0;  // magnitude LR = learning_rate * this
  double fd_alpha = 0.01;      // finite-difference step: eps = fd_alpha / ||v|| (Betty darts_alpha)
  double orth_reg = 1e-5;      // weight of the direction orthogonality regulariser
  int64_t retrain_epochs = 1;  // final phase on train + val with magnitudes frozen (0 = skip)
  // Where the final phase starts the directions: false = from the searched ones ("further
  // trained", as the paper's reviewers describe it), true = from their initial values (the
  // official code retrains a copy taken before the search).
  bool retrain_from_init = false;
  bool operator==(const BiDoRASection&) const = default;
};

struct TrainingSection {
  double learning_rate = 2e-4;
  int64_t epochs = 3;
  int64_t batch_size = 4;
  int64_t gradient_accumulation_steps = 4;
  int64_t warmup_steps = 100;
  int64_t max_seq_len = 2048;
  double weight_decay = 0.01;
  double max_grad_norm = 1.0;  // 0 disables clipping
  int64_t seed = 42;
  LrScheduler lr_scheduler = LrScheduler::Cosine;
  OptimizerKind optimizer = OptimizerKind::AdamW;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_epsilon = 1e-8;
  bool gradient_checkpointing = true;
  int64_t eval_steps = 0;    // 0 = evaluate at the end of each epoch
  int64_t save_steps = 500;  // 0 = save only at the end
  int64_t logging_steps = 10;
  int64_t save_total_limit = 0;  // 0 = keep every checkpoint
  int64_t max_steps = -1;        // -1 = derived from epochs
  BiDoRASection bidora;
  bool operator==(const TrainingSection&) const = default;
};

struct DataSection {
  std::string train_file;
  std::string val_file;  // empty: split val_split_ratio off the training file
  double val_split_ratio = 0.1;
  int64_t max_samples = 0;  // 0 = all
  DataFormat format = DataFormat::Auto;
  bool packing = false;
  bool train_on_prompt = false;  // loss on the prompt too, not only on responses
  bool skip_bad_lines = false;   // skip (and count) malformed lines instead of stopping
  bool operator==(const DataSection&) const = default;
};

struct OutputSection {
  std::string dir = "./output";
  bool overwrite = false;
  // "" = a fresh run; "latest" = the newest checkpoint-<step> in dir; else a checkpoint directory.
  std::string resume;
  bool operator==(const OutputSection&) const = default;
};

struct HardwareSection {
  bool auto_hardware = true;  // resolve quantization: auto and threads: 0 from the detected hardware
  int64_t threads = 0;        // 0 = the CPUs available to the process
  bool operator==(const HardwareSection&) const = default;
};

struct TrainConfig {
  ModelSection model;
  AdapterSection adapter;
  TrainingSection training;
  DataSection data;
  OutputSection output;
  HardwareSection hardware;
  bool operator==(const TrainConfig&) const = default;
};

// Where each field's value came from: "default", "<file>:<line>" or the flag, keyed by path
// ("training.learning_rate").
using ConfigOrigins = std::map<std::string, std::string>;

// Applies the fields present in YAML `text` on top of `cfg`. `source` names the file in messages.
// Unknown fields, wrong types and YAML syntax errors are all collected and thrown as one Error,
// one line per problem, each with file:line.
void apply_yaml(TrainConfig& cfg, const std::string& text, const std::string& source,
                ConfigOrigins* origins = nullptr);
// Defaults with the file's fields applied.
TrainConfig load_config_file(const std::string& path, ConfigOrigins* origins = nullptr);

// Sets one field from its text form (as given on a command line). `origin` names the flag in
// messages and origins; throws Error on a value of the wrong type.
void set_field(TrainConfig& cfg, const std::string& path, const std::string& text, const std::string& origin,
               ConfigOrigins* origins = nullptr);

// Problems with values, one message per problem naming the field, the value and the allowed range.
std::vector<std::string> validation_errors(const TrainConfig& cfg);
// Throws Error listing every validation error.
void validate(const TrainConfig& cfg);
// What must still be set before training can start (not an error for `bidora config`).
std::vector<std::string> missing_for_training(const TrainConfig& cfg);

// Resolved configuration as YAML (loads back to an equal TrainConfig) and as JSON.
std::string to_yaml(const TrainConfig& cfg);
nlohmann::json to_json(const TrainConfig& cfg);

// LoRA scaling as PEFT computes it: alpha / sqrt(r) with rsLoRA, alpha / r without.
double lora_scaling(const AdapterSection& a);

}  // namespace bidora
