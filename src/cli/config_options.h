#pragma once
// Registers the training configuration on a CLI11 command: --config FILE plus one typed option
// per configuration field (generated from config_fields(), so every field has a flag), and
// resolves defaults <- YAML <- the flags actually given. `bidora config` uses it now and
// `bidora train` will reuse it.
#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "config/train_config.h"

namespace bidora::cli {

class ConfigOptions {
 public:
  explicit ConfigOptions(CLI::App& app);
  ~ConfigOptions();
  ConfigOptions(const ConfigOptions&) = delete;
  ConfigOptions& operator=(const ConfigOptions&) = delete;

  // Defaults, then the --config file, then only the flags given on the command line. Not validated.
  // `origins` receives every field's source: "default", "<file>:<line>" or the flag.
  TrainConfig resolve(ConfigOrigins* origins = nullptr) const;
  const std::string& config_file() const { return config_file_; }

 private:
  struct Binding;
  std::string config_file_;
  std::vector<std::unique_ptr<Binding>> bindings_;  // CLI11 writes into them: addresses must stay put
};

}  // namespace bidora::cli
