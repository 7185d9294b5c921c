#include "cli/app.h"

#include <fmt/core.h>

#include <exception>

#include "cli/commands.h"
#include "core/build_info.h"
#include "core/error.h"

namespace bidora::cli {

int run(int argc, char** argv) {
  CLI::App app{
      "bidora: fine-tune decoder LLMs with LoRA, rsLoRA, DoRA and BiDoRA adapters, on your own machine"};
  app.set_version_flag("--version", std::string("bidora ") + build::kVersion);
  app.require_subcommand(1);
  app.failure_message(CLI::FailureMessage::help);

  register_info(app);
  register_list_models(app);
  register_config(app);
  register_estimate(app);
  register_model_info(app);
  register_data_preview(app);
  register_train(app);
  register_analyze(app);
  register_eval(app);
  register_merge(app);
  register_export_gguf(app);
  register_generate(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace bidora::cli
