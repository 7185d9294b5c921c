#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/list_models.h"
#include "cli/table.h"
#include "cli/training_plan.h"
#include "core/hardware.h"

namespace bidora::cli {
namespace {

std::string assumptions(const TrainingShape& s) {
  return fmt::format("LoRA r={} on {} Linear layers per block, {}, batch {} x {} tokens, {}", s.lora_rank,
                     s.targets.size(), s.adam_8bit ? "8-bit AdamW" : "AdamW (f32 states)", s.batch, s.seq_len,
                     s.gradient_checkpointing ? "gradient checkpointing" : "no gradient checkpointing");
}

}  // namespace

std::vector<ModelFit> evaluate_catalog(int64_t available_bytes, const TrainingShape& shape) {
  std::vector<ModelFit> out;
  for (const auto& e : model_catalog()) {
    ModelFit f;
    f.entry = &e;
    f.params = count_parameters(e.config).total();
    for (size_t i = 0; i < kListedStorages.size(); ++i) {
      f.estimate[i] = estimate_training_memory(e.config, kListedStorages[i], shape);
      f.fits[i] = fits(f.estimate[i], available_bytes);
    }
    f.recommended = recommend_storage(e.config, available_bytes, shape);
    out.push_back(std::move(f));
  }
  return out;
}

nlohmann::json list_models_json(const std::vector<ModelFit>& fits, int64_t available_bytes, bool all,
                                const TrainingShape& shape) {
  using nlohmann::json;
  json families = json::array();
  for (const auto& f : supported_families()) {
    families.push_back({{"family", family_name(f.family)},
                        {"architecture", f.architecture},
                        {"model_type", f.model_type},
                        {"examples", f.examples},
                        {"notes", f.notes}});
  }
  json models = json::array();
  for (const auto& f : fits) {
    if (!all && !f.recommended) continue;
    const ModelConfig& c = f.entry->config;
    json memory = json::object();
    for (size_t i = 0; i < kListedStorages.size(); ++i) {
      // The same parts as `bidora estimate --json` (one estimate function for both).
      json m = estimate_json(f.estimate[i]);
      m.erase("trainable_parameters");
      m["fits"] = f.fits[i];
      memory[storage_name(kListedStorages[i])] = std::move(m);
    }
    models.push_back(
        {{"id", f.entry->id},
         {"series", f.entry->series},
         {"family", family_name(c.family)},
         {"parameters", f.params},
         {"trainable_parameters", f.estimate[0].trainable_params},
         {"config",
          {{"hidden_size", c.hidden_size},
           {"intermediate_size", c.intermediate_size},
           {"num_hidden_layers", c.num_layers},
           {"num_attention_heads", c.num_heads},
           {"num_key_value_heads", c.num_kv_heads},
           {"head_dim", c.head_dim},
           {"vocab_size", c.vocab_size},
           {"tie_word_embeddings", c.tie_word_embeddings}}},
         {"memory", memory},
         {"fits", f.recommended.has_value()},
         {"recommended_storage", f.recommended ? json(storage_name(*f.recommended)) : json(nullptr)},
         {"note", f.entry->note}});
  }
  return {{"available_memory_bytes", available_bytes},
          {"fit_margin", kFitMargin},
          {"assumptions",
           {{"lora_rank", shape.lora_rank},
            {"targets", shape.targets},
            {"batch_size", shape.batch},
            {"seq_len", shape.seq_len},
            {"gradient_checkpointing", shape.gradient_checkpointing},
            {"optimizer", shape.adam_8bit ? "adamw_8bit" : "adamw (f32 states)"}}},
          {"families", families},
          {"models", models}};
}

void print_list_models(const std::vector<ModelFit>& fits, int64_t available_bytes, bool all, std::FILE* out,
                       const TrainingShape& shape) {
  Table fam{"Supported families"};
  fam.columns({"Family", "Architecture", "Models", "Notes"});
  for (const auto& f : supported_families())
    fam.row({family_name(f.family), f.architecture, f.examples, f.notes});
  fam.print(out);
  std::fputc('\n', out);

  Table t{fmt::format("Recommended models ({} available for training)", format_bytes(available_bytes))};
  t.columns({"Model",
             "Family",
             {"Params", Align::Right},
             {"bf16", Align::Right},
             {"NF4", Align::Right},
             {"int8", Align::Right},
             "Use",
             "Note"});
  size_t hidden = 0;
  for (const auto& f : fits) {
    if (!all && !f.recommended) {
      ++hidden;
      continue;
    }
    std::vector<Cell> row{f.entry->id, family_name(f.entry->config.family), format_count(f.params)};
    for (size_t i = 0; i < kListedStorages.size(); ++i) {
      row.emplace_back(fmt::format("{} {}", format_bytes(f.estimate[i].total()), check_mark(f.fits[i])),
                       f.fits[i] ? Color::Green : Color::Red);
    }
    row.emplace_back(f.recommended ? storage_name(*f.recommended) : "too large",
                     f.recommended ? Color::Bold : Color::Dim);
    row.emplace_back(f.entry->note);
    t.row(std::move(row));
  }
  t.footer(fmt::format("Memory to fine-tune: {}.", assumptions(shape)));
  t.footer(
      fmt::format("✓ = fits in {:.0f}% of the available RAM. Use = the storage bidora would pick "
                  "(quantization: auto). Instruct variants share these configs.",
                  kFitMargin * 100));
  if (hidden > 0)
    t.footer(fmt::format("{} larger model(s) that do not fit are hidden; --all shows them.", hidden));
  t.print(out);
}

void register_list_models(CLI::App& app) {
  auto* cmd = app.add_subcommand("list-models",
                                 "List supported model families and recommended models with the memory each "
                                 "needs for LoRA fine-tuning, marking what fits this machine");
  auto json_flag = std::make_shared<bool>(false);
  auto all_flag = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json_flag, "Print machine-readable JSON instead of tables");
  cmd->add_flag("--all", *all_flag, "Also list the models that do not fit this machine");
  cmd->callback([json_flag, all_flag] {
    HardwareProbe probe;
    probe.run_nvidia_smi = false;  // only RAM matters: the build is CPU-only
    const HardwareInfo hw = detect_hardware(probe);
    const auto fits = evaluate_catalog(hw.memory.available_bytes);
    if (*json_flag) {
      fmt::print("{}\n", list_models_json(fits, hw.memory.available_bytes, *all_flag).dump(2));
    } else {
      print_list_models(fits, hw.memory.available_bytes, *all_flag, stdout);
    }
  });
}

}  // namespace bidora::cli
