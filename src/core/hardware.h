#pragma once
// What this machine offers for training: the CPU (model, cores, instruction sets the CPU AND the OS
// support), memory (respecting container/cgroup limits, since that is what an OOM kill enforces)
// and any NVIDIA GPUs that are visible. Used by `bidora info`, by `list-models` to mark what fits,
// and to resolve `quantization: auto` and `threads: 0`.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace bidora {

// Each flag means "usable": the CPU reports it (cpuid) AND the OS saves the register state it
// needs (xgetbv/XCR0). A hypervisor or kernel may disable AVX-512 or AMX state even on a CPU
// that has them; code that used them anyway would fault.
struct CpuFeatures {
  bool sse4_2 = false;
  bool avx = false;
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512_vnni = false;
  bool avx512_bf16 = false;
  bool amx_tile = false;
  bool amx_bf16 = false;
  bool amx_int8 = false;
  uint64_t xcr0 = 0;  // raw XCR0 (0 when xgetbv is unavailable)

  struct Flag {
    const char* key;   // JSON key, e.g. "avx512_bf16"
    const char* name;  // display name, e.g. "AVX512_BF16"
    bool usable;
  };
  // Every flag above in a fixed order, for tables and JSON.
  std::vector<Flag> list() const;
};

struct CacheInfo {
  int level = 0;
  std::string type;  // "Data", "Instruction", "Unified"
  int64_t size_bytes = 0;
};

struct GpuInfo {
  std::string name;
  int64_t memory_total_bytes = -1;  // -1 when unknown (e.g. found only in /proc)
  int64_t memory_used_bytes = -1;
  std::string source;  // "nvidia-smi" or "/proc/driver/nvidia"
};

struct MemoryInfo {
  int64_t host_total_bytes = 0;               // /proc/meminfo MemTotal
  int64_t host_available_bytes = 0;           // /proc/meminfo MemAvailable
  std::optional<int64_t> cgroup_limit_bytes;  // tightest memory limit of this cgroup and its ancestors
  std::optional<int64_t> cgroup_usage_bytes;  // usage of the cgroup that sets that limit
  int64_t total_bytes = 0;                    // min(host total, cgroup limit)
  int64_t available_bytes = 0;                // min(host available, cgroup limit - usage)
};

struct HardwareInfo {
  std::string cpu_model;             // "model name" from /proc/cpuinfo, else the cpuid brand string
  std::string cpu_vendor;            // "GenuineIntel", "AuthenticAMD", ...
  int logical_cpus = 0;              // logical CPUs listed by the machine
  int physical_cores = 0;            // distinct (physical id, core id) pairs; logical_cpus when not listed
  int available_cpus = 0;            // CPUs in this process's affinity mask (taskset, cpuset)
  int available_physical_cores = 0;  // distinct physical cores among them; 0 when not known
  std::optional<double> cpu_quota;   // cgroup CPU bandwidth limit in CPUs (e.g. 1.5), if any
  CpuFeatures isa;
  std::vector<CacheInfo> caches;  // of CPU 0
  MemoryInfo memory;
  std::vector<GpuInfo> gpus;
  std::string onednn_isa;  // the ISA oneDNN's kernels dispatch to, e.g. "avx512_core_bf16"

  // This build has only the CPU backend: GPUs are reported but never used.
  static constexpr bool kGpuBackendAvailable = false;
  static constexpr const char* kGpuBackendNote = "no (CPU-only build; GPU backend is future work)";

  // Threads worth running: the affinity mask, capped by the cgroup CPU quota (rounded up).
  int usable_cpus() const;
  // Physical cores this process may use (SMT siblings count once), capped like usable_cpus():
  // the auto-hardware thread count, since the GEMMs gain little from a core's second thread.
  int usable_physical_cores() const;
};

// Where detection looks. Tests point fs_root at a fake tree holding proc/... and sys/... files.
struct HardwareProbe {
  std::string fs_root;         // prefix for /proc and /sys paths; "" = the real ones
  bool run_nvidia_smi = true;  // run nvidia-smi when it is on PATH
  bool query_affinity = true;  // sched_getaffinity (false in tests: use the fake cpuinfo)
};

// Never throws for missing files: what cannot be read stays at its default (0, empty, nullopt).
HardwareInfo detect_hardware(const HardwareProbe& probe = {});

// The pieces, exposed for tests with known inputs.
namespace hw_detail {
struct MemInfo {
  int64_t total_bytes = 0, available_bytes = 0;
};
MemInfo parse_meminfo(const std::string& text);  // values are in kB
struct CpuInfo {
  std::string model, vendor;
  int logical = 0, physical_cores = 0;
  // "physical id:core id" of each listed processor, by its "processor" number (empty when the
  // file lists no core ids).
  std::vector<std::pair<int, std::string>> processor_core;
};
CpuInfo parse_cpuinfo(const std::string& text);
// "max" -> nullopt; a byte count otherwise. v1's "unlimited" (>= 2^62) -> nullopt.
std::optional<int64_t> parse_memory_limit(const std::string& text);
// cgroup v2 cpu.max: "max 100000" -> nullopt, "150000 100000" -> 1.5.
std::optional<double> parse_cpu_max(const std::string& text);
// Output of nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader,nounits (MiB).
std::vector<GpuInfo> parse_nvidia_smi(const std::string& text);
// /proc/driver/nvidia/gpus/<bus>/information: the "Model:" line.
std::optional<std::string> parse_nvidia_proc_model(const std::string& text);
CpuFeatures decode_cpu_features(uint32_t leaf1_ecx, uint32_t leaf7_ebx, uint32_t leaf7_ecx,
                                uint32_t leaf7_edx, uint32_t leaf7_1_eax, uint64_t xcr0);
}  // namespace hw_detail

}  // namespace bidora
