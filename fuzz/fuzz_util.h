#pragma once
// Shared helpers of the libFuzzer targets (fuzz/fuzz_<name>.cpp).
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace bidora::fuzz {

// A per-process temp file for parsers whose entry point takes a path. /dev/shm when it exists, so
// the once-per-input write stays in memory; removed at exit.
inline const std::string& temp_path(const char* name) {
  static const std::string path = [name] {
    const char* dir = std::getenv("TMPDIR");
    std::string d = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (dir && *dir ? dir : "/tmp");
    return d + "/bidora_fuzz_" + name + "." + std::to_string(getpid());
  }();
  static const bool registered = [] {
    std::atexit([] { ::unlink(path.c_str()); });
    return true;
  }();
  (void)registered;
  return path;
}

inline void write_temp(const std::string& path, const uint8_t* data, size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) std::abort();
  while (size > 0) {
    const ssize_t w = ::write(fd, data, size);
    if (w <= 0) std::abort();
    data += w;
    size -= static_cast<size_t>(w);
  }
  ::close(fd);
}

// Splits the input at NUL bytes into at most `n` parts (the last keeps any further NULs): lets one
// input carry a document plus a text to run through it.
inline std::vector<std::string_view> split_nul(const uint8_t* data, size_t size, size_t n) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < n) {
    const size_t z = s.find('\0');
    if (z == std::string_view::npos) break;
    parts.push_back(s.substr(0, z));
    s.remove_prefix(z + 1);
  }
  parts.push_back(s);
  return parts;
}

// Reads every byte so that a view past its buffer is reported by ASan.
inline void touch(const uint8_t* p, size_t n) {
  volatile uint8_t sink = 0;
  for (size_t i = 0; i < n; ++i) sink = sink ^ p[i];
  (void)sink;
}

}  // namespace bidora::fuzz
