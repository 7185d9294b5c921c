#pragma once
// Each subcommand lives in its own cmd_<name>.cpp and registers itself here.
// A register function adds the subcommand and its options to `app` and sets its callback.
// Callbacks report failures by throwing bidora::Error; run() turns that into exit code 1.
#include <CLI/CLI.hpp>

namespace bidora::cli {

void register_info(CLI::App& app);
void register_list_models(CLI::App& app);
void register_config(CLI::App& app);
void register_estimate(CLI::App& app);
void register_model_info(CLI::App& app);
void register_data_preview(CLI::App& app);
void register_train(CLI::App& app);
void register_analyze(CLI::App& app);
void register_eval(CLI::App& app);
void register_merge(CLI::App& app);
void register_export_gguf(CLI::App& app);
void register_generate(CLI::App& app);

}  // namespace bidora::cli
