#include "test_support.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>

namespace bidora::test {

std::string source_path(const std::string& rel) {
  return std::string(BIDORA_SOURCE_DIR) + "/" + rel;
}

std::string reference_dir() {
  if (const char* env = std::getenv("BIDORA_REFERENCE_DIR")) return env;
  return std::string(BIDORA_BINARY_DIR) + "/reference";
}

std::string fixture_dir() {
  return source_path("tests/fixtures");
}

std::string make_temp_dir(const std::string& tag) {
  static std::atomic<int> counter{0};
  namespace fs = std::filesystem;
  fs::path p = fs::path(BIDORA_BINARY_DIR) / "test-tmp" /
               (tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

}  // namespace bidora::test
