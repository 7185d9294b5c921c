#pragma once
namespace bidora::cli {
// Parses argv, runs the chosen subcommand, prints errors as "error: ..." and returns the exit code.
int run(int argc, char** argv);
}  // namespace bidora::cli
