// `bidora train`: the resolved configuration (YAML + flags over the defaults), the plan for this
// machine, then the training run with a line per logging step, and where the adapter went.
#include <fmt/format.h>

#include <cmath>

#include "cli/commands.h"
#include "cli/config_command.h"
#include "cli/config_options.h"
#include "core/error.h"
#include "core/hardware.h"
#include "train/trainer.h"

namespace bidora::cli {
namespace {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

void run(const ConfigOptions& options) {
  ConfigOrigins origins;
  TrainConfig cfg = options.resolve(&origins);
  const HardwareInfo hw = detect_hardware();
  ConfigPlan plan = make_config_plan(cfg, hw);
  if (!plan.storage) fail("model '{}': {}", cfg.model.name_or_path, plan.note);
  cfg.hardware.threads = plan.threads;
  print_config_table(cfg, origins, plan, stdout);
  std::fflush(stdout);

  const auto result = train::run_training(cfg, plan.storage->storage, [](const train::TrainLog& e) {
    const double eta = e.step > 0 ? e.elapsed_seconds / e.step * (e.total_steps - e.step) : 0;
    std::string line = fmt::format(
        "step {:>5}/{} | epoch {:5.2f} | loss {:.4f} | lr {:.3e} | grad {:.3f} | {:.0f} tok/s | ETA {}",
        e.step, e.total_steps, e.epoch, e.loss, e.lr, e.grad_norm, e.tokens_per_second, format_duration(eta));
    if (e.val_loss) line += fmt::format(" | eval loss {:.4f} ppl {:.2f}", *e.val_loss, std::exp(*e.val_loss));
    fmt::print("{}\n", line);
    std::fflush(stdout);
  });
  fmt::print("\nTrained {} steps ({:.0f} tokens/s): loss {:.4f} → {:.4f}{}.\nAdapter (PEFT format): {}\n",
             result.steps, result.tokens_per_second, result.first_loss, result.last_loss,
             result.best_val_loss ? fmt::format(", best eval loss {:.4f}", *result.best_val_loss) : "",
             result.final_adapter_dir);
}

}  // namespace

void register_train(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("train", "Fine-tune an adapter (LoRA, rsLoRA, DoRA) and save it in PEFT format");
  auto options = std::make_shared<ConfigOptions>(*cmd);
  cmd->callback([options] { run(*options); });
}

}  // namespace bidora::cli
