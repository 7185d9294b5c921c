#pragma once
// Versions of the libraries this binary was built against (compile time) or runs with (where the
// library reports it at run time: oneDNN, Oniguruma), for `bidora info` and bug reports.
#include <string>
#include <utility>
#include <vector>

namespace bidora::cli {

// (library, version) in a fixed order.
std::vector<std::pair<std::string, std::string>> library_versions();

// (property, value) describing this build: version, compiler, build type, sanitizers, -march=native.
std::vector<std::pair<std::string, std::string>> build_properties();

}  // namespace bidora::cli
