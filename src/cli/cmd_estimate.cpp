// `bidora estimate`: the memory a training run would need, part by part (memory_model.h), against
// the memory available, the alternatives per weight storage, and the auto-hardware plan with its
// reasons (training_plan.h). Takes the same configuration as `train` (YAML + flags) but reads
// only the model's config.json: no weights and no data files.
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/config_options.h"
#include "cli/table.h"
#include "cli/training_plan.h"
#include "core/error.h"
#include "core/hardware.h"
#include "io/model_files.h"

namespace bidora::cli {
namespace {

std::string run_text(const TrainConfig& cfg, const TrainingPlan& plan) {
  const TrainingShape s = plan.shape(cfg);
  return fmt::format(
      "{} r={} on {} Linear layer(s) per block, {}, batch {} x {} tokens (x {} accumulation), {}, {}",
      to_string(cfg.adapter.method), s.lora_rank, s.targets.size(), storage_name(plan.storage), s.batch,
      s.seq_len, plan.grad_accum,
      s.gradient_checkpointing ? "gradient checkpointing" : "no gradient checkpointing",
      to_string(cfg.training.optimizer));
}

nlohmann::json estimate_report_json(const TrainConfig& cfg, const std::string& model_dir,
                                    const ModelConfig& model, const TrainingPlan& plan) {
  const TrainingShape s = plan.shape(cfg);
  nlohmann::json storages = nlohmann::json::object();
  for (WeightStorage st : kStoragePreference) {
    const MemoryEstimate e = estimate_training_memory(model, st, s);
    storages[storage_name(st)] = {{"weights_bytes", e.weights},
                                  {"total_bytes", e.total()},
                                  {"fits", fits(e, plan.device.available_bytes)}};
  }
  nlohmann::json parts = nlohmann::json::array();
  for (const auto& p : plan.estimate.parts())
    parts.push_back({{"part", p.key}, {"bytes", p.bytes}, {"what", p.what}});
  return {{"model",
           {{"dir", model_dir},
            {"family", family_name(model.family)},
            {"parameters", model.num_parameters()},
            {"trainable_parameters", plan.estimate.trainable_params}}},
          {"run",
           {{"method", to_string(cfg.adapter.method)},
            {"rank", s.lora_rank},
            {"targets", s.targets},
            {"dropout", s.dropout},
            {"storage", storage_name(plan.storage)},
            {"batch_size", s.batch},
            {"gradient_accumulation_steps", plan.grad_accum},
            {"max_seq_len", s.seq_len},
            {"gradient_checkpointing", s.gradient_checkpointing},
            {"optimizer", to_string(cfg.training.optimizer)}}},
          {"estimate", estimate_json(plan.estimate)},
          {"parts", parts},
          {"available_memory_bytes", plan.device.available_bytes},
          {"usable_memory_bytes", plan.usable_bytes()},
          {"fit_margin", kFitMargin},
          {"fits", plan.fits},
          {"storages", storages},
          {"plan", plan_json(plan)}};
}

void print_estimate(const TrainConfig& cfg, const std::string& model_dir, const ModelConfig& model,
                    const TrainingPlan& plan, std::FILE* out) {
  const MemoryEstimate& e = plan.estimate;
  Table t{fmt::format("Memory estimate: {} ({}, {} params)", model_dir, family_name(model.family),
                      format_count(model.num_parameters()))};
  t.columns({"Part", {"Bytes", Align::Right}, {"Share", Align::Right}, "What"});
  for (const auto& p : e.parts()) {
    t.row({p.key, format_bytes(p.bytes),
           fmt::format("{:.1f}%", 100.0 * static_cast<double>(p.bytes) / static_cast<double>(e.total())),
           p.what});
  }
  t.separator();
  t.row({Cell{"total", Color::Bold}, Cell{format_bytes(e.total()), Color::Bold}, "100.0%",
         fmt::format("{} {} available, {} usable ({:.0f}%)", format_bytes(plan.device.available_bytes),
                     plan.device.name, format_bytes(plan.usable_bytes()), kFitMargin * 100)});
  t.footer(fmt::format("Run: {}; {} trainable parameters.", run_text(cfg, plan),
                       format_count(e.trainable_params)));
  t.footer(plan.fits ? fmt::format("{} fits.", check_mark(true))
                     : fmt::format("{} does not fit in {:.0f}% of the available {}.", check_mark(false),
                                   kFitMargin * 100, plan.device.name));
  t.print(out);
  std::fputc('\n', out);

  const TrainingShape s = plan.shape(cfg);
  Table st{fmt::format("Per weight storage (batch {} x {} tokens)", s.batch, s.seq_len)};
  st.columns({"Storage", {"Weights", Align::Right}, {"Total", Align::Right}, "Fits"});
  for (WeightStorage w : kStoragePreference) {
    const MemoryEstimate we = estimate_training_memory(model, w, s);
    const bool ok = fits(we, plan.device.available_bytes);
    st.row({Cell{storage_name(w), w == plan.storage ? Color::Bold : Color::None}, format_bytes(we.weights),
            format_bytes(we.total()), Cell{check_mark(ok), ok ? Color::Green : Color::Red}});
  }
  st.print(out);
  std::fputc('\n', out);

  Table pt{cfg.hardware.auto_hardware ? "Auto-hardware plan" : "Plan (hardware.auto_hardware off)"};
  pt.columns({"Field", {"Value", Align::Right}, "Why"});
  for (const auto& c : plan.choices)
    pt.row({c.field, Cell{c.value, c.changed ? Color::Yellow : Color::None}, c.reason});
  if (!plan.error.empty()) pt.footer("Plan failed: " + plan.error + ".");
  pt.print(out);
}

}  // namespace

void register_estimate(CLI::App& app) {
  auto* cmd = app.add_subcommand("estimate",
                                 "Estimate the memory a training run needs (part by part, per weight "
                                 "storage) and show the auto-hardware "
                                 "plan; reads the model's config.json only, no weights or data");
  struct State {
    std::unique_ptr<ConfigOptions> options;
    bool json = false;
  };
  auto st = std::make_shared<State>();
  st->options = std::make_unique<ConfigOptions>(*cmd);
  cmd->add_flag("--json", st->json, "Print JSON instead of tables")->group("Output format");
  cmd->callback([st] {
    ConfigOrigins origins;
    const TrainConfig cfg = st->options->resolve(&origins);
    validate(cfg);
    if (cfg.model.name_or_path.empty())
      fail("model.name_or_path is not set: pass --model (a directory or a HF id)");
    const std::string dir = resolve_model_dir(cfg.model.name_or_path);
    const ModelConfig model = ModelConfig::from_file(dir + "/config.json");
    HardwareProbe probe;
    probe.run_nvidia_smi = false;  // CPU-only build: the plan is for host RAM
    const HardwareInfo hw = detect_hardware(probe);
    const TrainingPlan plan = plan_training(cfg, origins, model, host_memory(hw), hw);
    if (st->json) {
      fmt::print("{}\n", estimate_report_json(cfg, dir, model, plan).dump(2));
    } else {
      print_estimate(cfg, dir, model, plan, stdout);
    }
  });
}

}  // namespace bidora::cli
