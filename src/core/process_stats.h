#pragma once
// This process's memory use, as the kernel accounts it (what an OOM killer or `time -v` sees).
#include <cstdint>

namespace bidora {

struct ProcessMemory {
  int64_t rss_bytes = 0;       // VmRSS: resident now
  int64_t peak_rss_bytes = 0;  // VmHWM: the high-water mark since start
};

ProcessMemory process_memory();

}  // namespace bidora
