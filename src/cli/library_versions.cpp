#include "cli/library_versions.h"

#include <fmt/format.h>
#include <oneapi/dnnl/dnnl.h>
#include <oniguruma.h>
#include <CLI/Version.hpp>

#include <nlohmann/json.hpp>

#include "core/build_info.h"

namespace bidora::cli {
namespace {

std::string openmp_version() {
#ifdef _OPENMP
  // _OPENMP is the release date of the supported specification.
  const int date = _OPENMP;
  const char* spec = date >= 202111   ? "5.2"
                     : date >= 202011 ? "5.1"
                     : date >= 201811 ? "5.0"
                     : date >= 201511 ? "4.5"
                     : date >= 201307 ? "4.0"
                     : date >= 201107 ? "3.1"
                                      : "3.0 or older";
  return fmt::format("{} ({})", spec, date);
#else
  return "not enabled";
#endif
}

std::string oneDNN_version(const dnnl_version_t& d) {
  std::string v = fmt::format("{}.{}.{}", d.major, d.minor, d.patch);
  // Distribution builds report the git hash as "N/A".
  if (d.hash && *d.hash && std::string(d.hash) != "N/A") v += fmt::format(" ({})", d.hash);
  return v;
}

std::string on_off(const std::string& cmake_bool) {
  return cmake_bool == "ON" || cmake_bool == "1" || cmake_bool == "TRUE" ? "on" : "off";
}

}  // namespace

std::vector<std::pair<std::string, std::string>> library_versions() {
  const dnnl_version_t* d = dnnl_version();
  return {
      {"oneDNN", oneDNN_version(*d)},
      {"fmt", fmt::format("{}.{}.{}", FMT_VERSION / 10000, FMT_VERSION / 100 % 100, FMT_VERSION % 100)},
      {"nlohmann_json", fmt::format("{}.{}.{}", NLOHMANN_JSON_VERSION_MAJOR, NLOHMANN_JSON_VERSION_MINOR,
                                    NLOHMANN_JSON_VERSION_PATCH)},
      {"yaml-cpp", build::kYamlCppVersion},
      {"CLI11", CLI11_VERSION},
      {"Oniguruma", onig_version()},
      {"OpenMP", openmp_version()},
  };
}

std::vector<std::pair<std::string, std::string>> build_properties() {
  const bool sanitized = on_off(build::kSanitize) == "on";
  return {
      {"bidora", build::kVersion},
      {"compiler", build::kCompiler},
      {"build type", build::kBuildType},
      {"sanitizers", sanitized ? "address, undefined" : "off"},
      {"-march=native", sanitized ? "off (sanitizer build)" : on_off(build::kNative)},
      {"compute backend", "CPU (oneDNN sgemm, OpenMP)"},
  };
}

}  // namespace bidora::cli
