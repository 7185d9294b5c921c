// `bidora train`: the resolved configuration (YAML + flags over the defaults), the plan for this
// machine, then the training run with a line per logging step, and where the adapter went.
#include <fmt/format.h>

#include <unistd.h>
#include <atomic>
#include <cmath>
#include <csignal>

#include "cli/commands.h"
#include "cli/config_command.h"
#include "cli/config_options.h"
#include "cli/info.h"
#include "cli/progress_bar.h"
#include "core/error.h"
#include "core/hardware.h"
#include "train/init_adapter.h"
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

// Ctrl-C (SIGINT) or SIGTERM asks the trainer to stop after the current step and save a
// checkpoint; a second signal exits at once (every file bidora writes is replaced atomically, so
// even then nothing is left half-written).
std::atomic<bool> g_stop{false};

extern "C" void on_stop_signal(int sig) {
  if (g_stop.exchange(true)) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  static const char msg[] =
      "\nStopping after the current step and saving a checkpoint (press Ctrl-C again to quit now)...\n";
  (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
}

struct StopSignalGuard {
  StopSignalGuard() {
    g_stop = false;
    prev_int = std::signal(SIGINT, on_stop_signal);
    prev_term = std::signal(SIGTERM, on_stop_signal);
  }
  ~StopSignalGuard() {
    std::signal(SIGINT, prev_int);
    std::signal(SIGTERM, prev_term);
  }
  void (*prev_int)(int);
  void (*prev_term)(int);
};

void run(const ConfigOptions& options) {
  ConfigOrigins origins;
  // With --adapter, r / alpha / targets / method / rsLoRA come from that adapter (before planning,
  // which needs them).
  const TrainConfig configured = train::resolve_init_adapter(options.resolve(&origins), &origins);
  const HardwareInfo hw = detect_hardware();
  const ConfigPlan plan = make_config_plan(configured, origins, hw);
  if (!plan.training) fail("model '{}': {}", configured.model.name_or_path, plan.note);
  system_table(hw).print(stdout);
  std::fputc('\n', stdout);
  // The table shows the configuration as given; its footer lists the plan's choices and reasons.
  print_config_table(configured, origins, plan, stdout);
  std::fflush(stdout);
  if (!plan.training->error.empty()) fail("{}", plan.training->error);
  const TrainConfig cfg = plan.training->apply(configured);

  ProgressBar bar;  // redraws one line on a terminal; only the log lines otherwise
  train::TrainCallbacks callbacks;
  callbacks.on_event = [&](const std::string& text) { bar.print(text); };
  callbacks.stop_requested = &g_stop;
  callbacks.on_step = [&](const train::TrainLog& e) { bar.update(progress_state(e)); };
  callbacks.on_log = [&](const train::TrainLog& e) {
    const double eta = e.step > 0 ? e.elapsed_seconds / e.step * (e.total_steps - e.step) : 0;
    std::string line = fmt::format(
        "step {:>5}/{} | epoch {:5.2f} | loss {:.4f} | lr {:.3e} | grad {:.3f} | {:.0f} tok/s | ETA {}",
        e.step, e.total_steps, e.epoch, e.loss, e.lr, e.grad_norm, e.tokens_per_second, format_duration(eta));
    if (e.val_loss) line += fmt::format(" | eval loss {:.4f} ppl {:.2f}", *e.val_loss, std::exp(*e.val_loss));
    if (!e.phase.empty()) line = fmt::format("{:<7} ", e.phase) + line;
    if (e.upper && e.phase == "search")
      line += fmt::format(" | magnitude: val loss {:.4f} hypergrad {:.3f}", e.upper->val_loss,
                          e.upper->hypergrad_norm);
    bar.print(line, progress_state(e));
  };
  StopSignalGuard signals;
  const auto result = train::run_training(cfg, plan.training->storage, callbacks);
  bar.finish();
  if (result.interrupted) {
    fmt::print("\nStopped at step {}. Checkpoint: {}\nContinue with the same command plus --resume.\n",
               result.steps, result.last_checkpoint);
    throw CLI::RuntimeError(130);  // 128 + SIGINT, as shells report an interrupted job
  }
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
