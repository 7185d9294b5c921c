#include <fmt/format.h>

#include <string>

#include "cli/commands.h"
#include "cli/info.h"
#include "cli/library_versions.h"
#include "cli/table.h"

namespace bidora::cli {
namespace {

template <typename T>
nlohmann::json opt(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

std::string cache_summary(const HardwareInfo& hw) {
  std::string s;
  for (const auto& c : hw.caches) {
    const char* kind = c.type == "Data" ? "d" : c.type == "Instruction" ? "i" : "";
    if (!s.empty()) s += ", ";
    s += fmt::format("L{}{} {}", c.level, kind, format_bytes(c.size_bytes));
  }
  return s.empty() ? "unknown" : s;
}

}  // namespace

nlohmann::json info_json(const HardwareInfo& hw) {
  using nlohmann::json;
  json isa = json::object();
  for (const auto& f : hw.isa.list()) isa[f.key] = f.usable;
  json caches = json::array();
  for (const auto& c : hw.caches)
    caches.push_back({{"level", c.level}, {"type", c.type}, {"size_bytes", c.size_bytes}});
  json gpus = json::array();
  for (const auto& g : hw.gpus) {
    gpus.push_back(
        {{"name", g.name},
         {"memory_total_bytes", g.memory_total_bytes >= 0 ? json(g.memory_total_bytes) : json(nullptr)},
         {"memory_used_bytes", g.memory_used_bytes >= 0 ? json(g.memory_used_bytes) : json(nullptr)},
         {"source", g.source},
         {"usable", HardwareInfo::kGpuBackendAvailable}});
  }
  json build = json::object();
  for (const auto& [k, v] : build_properties()) build[k] = v;
  json libs = json::object();
  for (const auto& [k, v] : library_versions()) libs[k] = v;

  return {
      {"cpu",
       {{"model", hw.cpu_model},
        {"vendor", hw.cpu_vendor},
        {"logical_cpus", hw.logical_cpus},
        {"physical_cores", hw.physical_cores},
        {"available_cpus", hw.available_cpus},
        {"cpu_quota", opt(hw.cpu_quota)},
        {"usable_cpus", hw.usable_cpus()},
        {"isa", isa},
        {"xcr0", fmt::format("{:#x}", hw.isa.xcr0)},
        {"caches", caches},
        {"onednn_isa", hw.onednn_isa}}},
      {"memory",
       {{"total_bytes", hw.memory.total_bytes},
        {"available_bytes", hw.memory.available_bytes},
        {"host_total_bytes", hw.memory.host_total_bytes},
        {"host_available_bytes", hw.memory.host_available_bytes},
        {"cgroup_limit_bytes", opt(hw.memory.cgroup_limit_bytes)},
        {"cgroup_usage_bytes", opt(hw.memory.cgroup_usage_bytes)}}},
      {"gpus", gpus},
      {"gpu_backend",
       {{"available", HardwareInfo::kGpuBackendAvailable}, {"note", HardwareInfo::kGpuBackendNote}}},
      {"build", build},
      {"libraries", libs},
  };
}

Table system_table(const HardwareInfo& hw) {
  Table sys{"System"};
  sys.columns({"Property", "Value"});
  sys.row({"CPU", hw.cpu_model});
  sys.row({"Vendor", hw.cpu_vendor.empty() ? "unknown" : hw.cpu_vendor});
  sys.row({"Cores", fmt::format("{} physical, {} logical", hw.physical_cores, hw.logical_cpus)});
  std::string avail = fmt::format("{}", hw.available_cpus);
  if (hw.cpu_quota) avail += fmt::format(" (cgroup quota {:.2f} CPUs)", *hw.cpu_quota);
  sys.row({"CPUs for this process", avail});
  sys.row({"Threads bidora uses", fmt::format("{}", hw.usable_cpus())});
  sys.row({"Caches", cache_summary(hw)});
  sys.row({"oneDNN kernels", hw.onednn_isa});
  sys.separator();
  sys.row({"RAM total", format_bytes(hw.memory.total_bytes)});
  sys.row({"RAM available", format_bytes(hw.memory.available_bytes)});
  if (hw.memory.cgroup_limit_bytes) {
    sys.row(
        {"cgroup memory limit", fmt::format("{} (in use: {})", format_bytes(*hw.memory.cgroup_limit_bytes),
                                            format_bytes(hw.memory.cgroup_usage_bytes.value_or(-1)))});
  }
  sys.separator();
  if (hw.gpus.empty()) {
    sys.row({"GPUs", "none visible"});
  } else {
    for (const auto& g : hw.gpus) {
      std::string mem = g.memory_total_bytes >= 0
                            ? fmt::format(", {} ({} used)", format_bytes(g.memory_total_bytes),
                                          format_bytes(g.memory_used_bytes))
                            : "";
      sys.row({"GPU", fmt::format("{}{} [{}]", g.name, mem, g.source)});
    }
  }
  sys.row({"GPU usable by this build", Cell{HardwareInfo::kGpuBackendNote, Color::Yellow}});
  return sys;
}

void print_info(const HardwareInfo& hw, std::FILE* out) {
  system_table(hw).print(out);
  std::fputc('\n', out);

  Table isa{"Instruction sets (CPU and OS support)"};
  isa.columns({"Extension", {"Usable", Align::Center}, "Extension", {"Usable", Align::Center}});
  const auto flags = hw.isa.list();
  for (size_t i = 0; i < flags.size(); i += 2) {
    std::vector<Cell> row;
    for (size_t j = i; j < std::min(i + 2, flags.size()); ++j) {
      row.emplace_back(flags[j].name);
      row.emplace_back(check_mark(flags[j].usable), flags[j].usable ? Color::Green : Color::Red);
    }
    isa.row(std::move(row));
  }
  isa.print(out);
  std::fputc('\n', out);

  Table lib{"Build and libraries"};
  lib.columns({"Component", "Version"});
  for (const auto& [k, v] : build_properties()) lib.row({k, v});
  lib.separator();
  for (const auto& [k, v] : library_versions()) lib.row({k, v});
  lib.print(out);
}

void register_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show the CPU, instruction sets, memory, GPUs and library versions");
  auto json_flag = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json_flag, "Print machine-readable JSON instead of tables");
  cmd->callback([json_flag] {
    const HardwareInfo hw = detect_hardware();
    if (*json_flag) {
      fmt::print("{}\n", info_json(hw).dump(2));
    } else {
      print_info(hw, stdout);
    }
  });
}

}  // namespace bidora::cli
