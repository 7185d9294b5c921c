#include "train/trainer_output.h"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/files.h"
#include "train/checkpoint.h"

namespace bidora::train {
namespace fs = std::filesystem;

void copy_tokenizer_files(const std::string& model_dir, const std::string& out_dir) {
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "generation_config.json", "chat_template.jinja"}) {
    const fs::path src = fs::path(model_dir) / name;
    if (fs::exists(src)) write_file_atomic((fs::path(out_dir) / name).string(), read_file(src.string()));
  }
}

void write_model_card(const std::string& dir, const TrainConfig& cfg, const TrainResult& r,
                      const std::string& shown_dir) {
  std::string card = fmt::format(
      "# {} adapter for {}\n\nTrained with bidora.\n\n"
      "- method: {}, r = {}, alpha = {}, dropout = {}, rsLoRA: {}\n- targets: {}\n"
      "- data: {} ({} optimiser steps)\n- learning rate {} ({} schedule, {} warmup steps), batch {} x {} "
      "accumulation\n"
      "- final training loss {:.4f}{}\n\n"
      "Load it with PEFT: `PeftModel.from_pretrained(base_model, \"{}\")`.\n",
      to_string(cfg.adapter.method), cfg.model.name_or_path, to_string(cfg.adapter.method), cfg.adapter.r,
      cfg.adapter.alpha, cfg.adapter.dropout, cfg.adapter.use_rslora ? "yes" : "no",
      fmt::join(cfg.adapter.targets, ", "), cfg.data.train_file, r.steps, cfg.training.learning_rate,
      to_string(cfg.training.lr_scheduler), cfg.training.warmup_steps, cfg.training.batch_size,
      cfg.training.gradient_accumulation_steps, r.last_loss,
      r.best_val_loss ? fmt::format(", best validation loss {:.4f}", *r.best_val_loss) : "", shown_dir);
  if (cfg.adapter.method == AdapterMethod::BiDoRA) {
    const BiDoRASection& b = cfg.training.bidora;
    card += fmt::format(
        "\nBiDoRA (bi-level): magnitudes trained on the validation split by hypergradient ({} direction "
        "step(s) per magnitude step, magnitude LR x {}, fd_alpha {}, orthogonality regulariser {}), then "
        "{} retraining epoch(s) of the directions on train + validation with the magnitudes frozen. The "
        "adapter is a standard PEFT DoRA adapter (use_dora = true).\n",
        b.lower_steps, b.upper_lr_mult, b.fd_alpha, b.orth_reg, b.retrain_epochs);
  }
  write_file_atomic((fs::path(dir) / "README.md").string(), card);
}

std::string prepare_output(const TrainConfig& cfg) {
  const fs::path out(cfg.output.dir);
  const auto checkpoints = list_checkpoints(out.string());
  if (!cfg.output.resume.empty()) {
    if (cfg.output.resume != "latest") return cfg.output.resume;
    if (checkpoints.empty())
      fail("--resume: {} holds no checkpoint-<step> directory to continue from", out.string());
    return checkpoints.back().second;
  }
  const bool finished = fs::exists(out / "final_model" / "adapter_config.json");
  if (!cfg.output.overwrite) {
    if (finished)
      fail(
          "{}: already holds a finished run (final_model/); pass --overwrite to replace it or choose another "
          "--output",
          out.string());
    if (!checkpoints.empty())
      fail(
          "{}: holds checkpoints of an unfinished run (newest: {}); pass --resume to continue it, "
          "--overwrite to "
          "start again, or choose another --output",
          out.string(), fs::path(checkpoints.back().second).filename().string());
    if (fs::exists(out / "best_model"))
      fail(
          "{}: holds best_model/ of an earlier run; pass --overwrite to replace it or choose another "
          "--output",
          out.string());
  }
  // Starting again: results of an earlier run must not mix with this one's.
  std::error_code ec;
  for (const auto& [step, dir] : checkpoints) fs::remove_all(dir, ec);
  for (const char* stale : {"best_model", "search_model", "final_model"}) fs::remove_all(out / stale, ec);
  fs::remove(out / "metrics.jsonl", ec);
  return "";
}

nlohmann::ordered_json log_entry_json(const TrainLog& entry) {
  nlohmann::ordered_json j{{"step", entry.step},
                           {"epoch", entry.epoch},
                           {"loss", entry.loss},
                           {"grad_norm", entry.grad_norm},
                           {"learning_rate", entry.lr},
                           {"tokens_per_second", entry.tokens_per_second},
                           {"elapsed_seconds", entry.elapsed_seconds}};
  if (entry.val_loss) {
    j["eval_loss"] = *entry.val_loss;
    j["eval_perplexity"] = std::exp(*entry.val_loss);
  }
  if (!entry.phase.empty()) {
    j["phase"] = entry.phase;
    j["regulariser"] = entry.regulariser;
  }
  if (entry.upper) {
    j["upper_val_loss"] = entry.upper->val_loss;
    j["hypergrad_norm"] = entry.upper->hypergrad_norm;
    j["hypergrad_direct_norm"] = entry.upper->direct_norm;
    j["hypergrad_implicit_norm"] = entry.upper->implicit_norm;
    j["fd_epsilon"] = entry.upper->eps;
    j["magnitude_learning_rate"] = entry.upper->lr;
  }
  return j;
}

}  // namespace bidora::train
