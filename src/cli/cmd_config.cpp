#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/config_command.h"
#include "cli/config_options.h"
#include "cli/table.h"
#include "config/config_fields.h"
#include "core/error.h"
#include "io/model_files.h"

namespace bidora::cli {
namespace {

std::string scaling_formula(const AdapterSection& a) {
  return fmt::format("{} = {:.4g}", a.use_rslora ? "alpha/sqrt(r)" : "alpha/r", lora_scaling(a));
}

int64_t effective_batch(const TrainConfig& c) {
  return c.training.batch_size * c.training.gradient_accumulation_steps;
}

std::string plan_summary(const ConfigPlan& plan) {
  if (!plan.model || !plan.training) return "Model: " + plan.note;
  const TrainingPlan& p = *plan.training;
  return fmt::format(
      "Model {} ({}, {} params): weights as {}; estimated training memory {} of {} available{}.",
      plan.model_dir, family_name(plan.model->family), format_count(plan.model->num_parameters()),
      storage_name(p.storage), format_bytes(p.estimate.total()), format_bytes(plan.available_bytes),
      p.fits ? "" : fmt::format(" (more than the {:.0f}% bidora plans to use)", kFitMargin * 100));
}

}  // namespace

ConfigPlan make_config_plan(const TrainConfig& cfg, const ConfigOrigins& origins, const HardwareInfo& hw) {
  ConfigPlan plan;
  plan.threads = plan_threads(cfg, hw);
  plan.available_bytes = hw.memory.available_bytes;
  if (cfg.model.name_or_path.empty()) {
    plan.note = "not set";
    return plan;
  }
  // The model part is advice: an unreadable model is reported here and becomes an error only
  // when training starts.
  try {
    plan.model_dir = resolve_model_dir(cfg.model.name_or_path);
    plan.model = ModelConfig::from_file(plan.model_dir + "/config.json");
    plan.training = plan_training(cfg, origins, *plan.model, host_memory(hw), hw);
    plan.threads = plan.training->threads;
  } catch (const Error& e) {
    plan.note = e.what();
  }
  return plan;
}

void print_config_table(const TrainConfig& cfg, const ConfigOrigins& origins, const ConfigPlan& plan,
                        std::FILE* out) {
  Table t{"Resolved configuration"};
  t.columns({"Field", "Value", "Source"});
  std::string section;
  for (const auto& f : config::config_fields()) {
    const std::string top = f.path.substr(0, f.path.find('.'));
    if (!section.empty() && top != section) t.separator();
    section = top;
    const std::string value = config::format_value(f.get(cfg));
    auto it = origins.find(f.path);
    const std::string origin = it == origins.end() ? "default" : it->second;
    t.row({f.path, value.empty() ? Cell{"(not set)", Color::Dim} : Cell{value},
           Cell{origin, origin == "default" ? Color::Dim : Color::Yellow}});
  }
  t.footer(fmt::format("Effective batch: {} x {} = {} sequences per optimizer step; LoRA scaling {}.",
                       cfg.training.batch_size, cfg.training.gradient_accumulation_steps,
                       effective_batch(cfg), scaling_formula(cfg.adapter)));
  t.footer(fmt::format("Threads: {}.", plan.threads));
  t.footer(plan_summary(plan));
  if (plan.training) {
    for (const auto& line : plan_lines(*plan.training)) t.footer(line);
    if (!plan.training->error.empty()) t.footer("Plan failed: " + plan.training->error + ".");
  }
  for (const auto& m : missing_for_training(cfg)) t.footer("Needed before training: " + m + ".");
  t.print(out);
}

nlohmann::json config_report_json(const TrainConfig& cfg, const ConfigOrigins& origins,
                                  const ConfigPlan& plan) {
  nlohmann::json sources = nlohmann::json::object();
  for (const auto& f : config::config_fields()) {
    auto it = origins.find(f.path);
    sources[f.path] = it == origins.end() ? "default" : it->second;
  }
  nlohmann::json model = nullptr;
  if (plan.model && plan.training) {
    model = {{"dir", plan.model_dir},
             {"family", family_name(plan.model->family)},
             {"parameters", plan.model->num_parameters()},
             {"storage", storage_name(plan.training->storage)},
             {"storage_reason", plan.training->choices.front().reason},
             {"estimated_memory_bytes", plan.training->estimate.total()},
             {"trainable_parameters", plan.training->estimate.trainable_params},
             {"plan", plan_json(*plan.training)}};
  }
  return {{"config", to_json(cfg)},
          {"sources", sources},
          {"missing_for_training", missing_for_training(cfg)},
          {"derived",
           {{"effective_batch_size", effective_batch(cfg)},
            {"lora_scaling", lora_scaling(cfg.adapter)},
            {"threads", plan.threads},
            {"available_memory_bytes", plan.available_bytes},
            {"model", model},
            {"model_note", plan.note}}}};
}

void register_config(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "config",
      "Print the resolved training configuration (defaults <- --config YAML <- flags) after validation");
  struct State {
    std::unique_ptr<ConfigOptions> options;
    bool json = false, yaml = false;
  };
  auto st = std::make_shared<State>();
  st->options = std::make_unique<ConfigOptions>(*cmd);
  auto* json_flag = cmd->add_flag("--json", st->json, "Print JSON (config, sources, missing fields)");
  auto* yaml_flag = cmd->add_flag("--yaml", st->yaml, "Print the resolved configuration as YAML (loadable)");
  json_flag->excludes(yaml_flag);
  json_flag->group("Output format");
  yaml_flag->group("Output format");
  cmd->callback([st] {
    ConfigOrigins origins;
    const TrainConfig cfg = st->options->resolve(&origins);
    validate(cfg);
    HardwareProbe probe;
    probe.run_nvidia_smi = false;  // only CPUs and RAM matter here
    const ConfigPlan plan = make_config_plan(cfg, origins, detect_hardware(probe));
    if (st->json) {
      fmt::print("{}\n", config_report_json(cfg, origins, plan).dump(2));
    } else if (st->yaml) {
      fmt::print("{}", to_yaml(cfg));
      for (const auto& m : missing_for_training(cfg))
        fmt::print(stderr, "note: needed before training: {}\n", m);
    } else {
      print_config_table(cfg, origins, plan, stdout);
    }
  });
}

}  // namespace bidora::cli
