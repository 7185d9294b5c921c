// Placeholder so the binary links while the command is being written; replaced by its owner.
#include "cli/commands.h"
namespace bidora::cli {
void register_model_info(CLI::App& app) { (void)app; }
}  // namespace bidora::cli
