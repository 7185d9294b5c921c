#pragma once
// Shared helpers for the gtest binaries: paths to sources, generated references, temp dirs.
#include <string>

namespace bidora::test {

std::string source_path(const std::string& rel);    // <repo>/rel
std::string reference_dir();                        // where tests/reference/*.py wrote their output
std::string fixture_dir();                          // <repo>/tests/fixtures
std::string make_temp_dir(const std::string& tag);  // fresh, empty directory under the build tree

}  // namespace bidora::test
