#pragma once
// `bidora info`: the hardware, what this build can use, and library versions.
// The pieces are separate from the CLI wiring so tests can run them on a known HardwareInfo.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/table.h"
#include "core/hardware.h"

namespace bidora::cli {

nlohmann::json info_json(const HardwareInfo& hw);
// CPU, cores and threads, caches, oneDNN kernels, RAM, GPUs (also shown by `bidora train`).
Table system_table(const HardwareInfo& hw);
void print_info(const HardwareInfo& hw, std::FILE* out);

}  // namespace bidora::cli
