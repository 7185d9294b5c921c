// Hardware detection from cpuid/xgetbv, /proc and /sys. Everything is best effort: a missing or
// odd file leaves a field at its default instead of failing, because `bidora info` must work in
// any container, and nothing here is needed for correctness of training.
#include "core/hardware.h"

#include <oneapi/dnnl/dnnl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define BIDORA_X86 1
#endif

namespace bidora {

std::vector<CpuFeatures::Flag> CpuFeatures::list() const {
  return {{"sse4_2", "SSE4.2", sse4_2},
          {"avx", "AVX", avx},
          {"avx2", "AVX2", avx2},
          {"fma", "FMA", fma},
          {"f16c", "F16C", f16c},
          {"avx512f", "AVX-512F", avx512f},
          {"avx512bw", "AVX-512BW", avx512bw},
          {"avx512vl", "AVX-512VL", avx512vl},
          {"avx512_vnni", "AVX-512 VNNI", avx512_vnni},
          {"avx512_bf16", "AVX512_BF16", avx512_bf16},
          {"amx_tile", "AMX-TILE", amx_tile},
          {"amx_bf16", "AMX-BF16", amx_bf16},
          {"amx_int8", "AMX-INT8", amx_int8}};
}

int HardwareInfo::usable_cpus() const {
  int n = available_cpus > 0 ? available_cpus : std::max(logical_cpus, 1);
  if (cpu_quota && *cpu_quota > 0) n = std::min(n, std::max(1, static_cast<int>(std::ceil(*cpu_quota))));
  return n;
}

int HardwareInfo::usable_physical_cores() const {
  int n = available_physical_cores > 0 ? available_physical_cores
                                       : (physical_cores > 0 ? std::min(physical_cores, usable_cpus()) : 0);
  if (n <= 0) return usable_cpus();
  if (cpu_quota && *cpu_quota > 0) n = std::min(n, std::max(1, static_cast<int>(std::ceil(*cpu_quota))));
  return n;
}

namespace {

std::optional<std::string> try_read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return ss.str();
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::optional<int64_t> parse_int(std::string_view s) {
  std::string t = trim(s);
  int64_t v = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || p != t.data() + t.size() || t.empty()) return std::nullopt;
  return v;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    out.emplace_back(s.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return out;
}

// "48K", "1024K", "32M" (sysfs cache sizes).
int64_t parse_size_suffix(const std::string& text) {
  std::string t = trim(text);
  if (t.empty()) return 0;
  int64_t mult = 1;
  char last = t.back();
  if (last == 'K' || last == 'k') mult = 1024;
  if (last == 'M' || last == 'm') mult = 1024 * 1024;
  if (last == 'G' || last == 'g') mult = int64_t{1024} * 1024 * 1024;
  if (mult != 1) t.pop_back();
  auto v = parse_int(t);
  return v ? *v * mult : 0;
}

// ---- cpuid ----------------------------------------------------------------------------------

CpuFeatures detect_cpu_features(std::string& vendor, std::string& brand) {
#ifdef BIDORA_X86
  unsigned a = 0, b = 0, c = 0, d = 0;
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf == 0) return {};
  __cpuid(0, a, b, c, d);
  char v[13] = {};
  std::memcpy(v, &b, 4);
  std::memcpy(v + 4, &d, 4);
  std::memcpy(v + 8, &c, 4);
  vendor = v;

  unsigned l1c = 0, l7b = 0, l7c = 0, l7d = 0, l71a = 0;
  __cpuid(1, a, b, c, d);
  l1c = c;
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    l7b = b, l7c = c, l7d = d;
    const unsigned max_sub = a;
    if (max_sub >= 1) {
      __cpuid_count(7, 1, a, b, c, d);
      l71a = a;
    }
  }
  uint64_t xcr0 = 0;
  const bool osxsave = (l1c >> 27) & 1u;
  if (osxsave) {
    uint32_t lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (static_cast<uint64_t>(hi) << 32) | lo;
  }

  // The cast: GCC's cpuid.h returns unsigned, clang's int.
  if (static_cast<unsigned>(__get_cpuid_max(0x80000000u, nullptr)) >= 0x80000004u) {
    unsigned regs[12];
    for (unsigned i = 0; i < 3; ++i)
      __cpuid(0x80000002u + i, regs[4 * i], regs[4 * i + 1], regs[4 * i + 2], regs[4 * i + 3]);
    char s[49] = {};
    std::memcpy(s, regs, 48);
    brand = trim(s);
  }
  return hw_detail::decode_cpu_features(l1c, l7b, l7c, l7d, l71a, xcr0);
#else
  (void)vendor;
  (void)brand;
  return {};
#endif
}

const char* onednn_isa_name(dnnl_cpu_isa_t isa) {
  switch (isa) {
    case dnnl_cpu_isa_all:
      return "all";
    case dnnl_cpu_isa_sse41:
      return "sse41";
    case dnnl_cpu_isa_avx:
      return "avx";
    case dnnl_cpu_isa_avx2:
      return "avx2";
    case dnnl_cpu_isa_avx2_vnni:
      return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic:
      return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops:
      return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core:
      return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx:
      return "avx512_core_amx";
    default:
      return "unknown";
  }
}

// ---- cgroups --------------------------------------------------------------------------------

struct Mount {
  std::string root, point, fstype, super_options;
};

std::vector<Mount> parse_mountinfo(const std::string& text) {
  std::vector<Mount> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    // id parent major:minor root mountpoint options [optional fields...] - fstype source super_options
    std::istringstream ls(line);
    std::vector<std::string> f;
    std::string w;
    while (ls >> w) f.push_back(w);
    auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 5 || dash == f.end() || dash + 3 > f.end()) continue;
    Mount m;
    m.root = f[3];
    m.point = f[4];
    m.fstype = *(dash + 1);
    m.super_options = dash + 3 < f.end() ? *(dash + 3) : "";
    out.push_back(std::move(m));
  }
  return out;
}

bool has_item(const std::string& comma_list, const std::string& item) {
  for (const auto& s : split(comma_list, ',')) {
    if (s == item) return true;
  }
  return false;
}

// The directories of this process's cgroup and its ancestors (leaf first) for one hierarchy.
std::vector<std::string> cgroup_dirs(const std::string& fs_root, const Mount& m, const std::string& path) {
  std::string rel = path;
  // Inside a cgroup namespace the mount root is "/" and the path is relative to it; on the host the
  // mount may expose a sub-tree (root != "/"): strip that prefix.
  if (m.root != "/" && rel.rfind(m.root, 0) == 0) rel = rel.substr(m.root.size());
  std::vector<std::string> dirs;
  std::filesystem::path p = rel.empty() ? "/" : rel;
  while (true) {
    std::string sub = p.string();
    if (sub == "/") sub.clear();
    dirs.push_back(fs_root + m.point + sub);
    if (!p.has_relative_path() || p == p.root_path()) break;
    p = p.parent_path();
  }
  return dirs;
}

struct CgroupLimits {
  std::optional<int64_t> mem_limit, mem_usage, mem_headroom;
  std::optional<double> cpu_quota;
};

// Working-set usage: what the kernel cannot simply drop. Page cache counts towards memory.current
// but inactive file pages are reclaimed before an OOM kill (docker/kubelet use the same figure).
int64_t working_set(int64_t usage, const std::optional<std::string>& stat, const char* inactive_key) {
  if (!stat) return usage;
  std::istringstream in(*stat);
  std::string key;
  int64_t value = 0;
  while (in >> key >> value) {
    if (key == inactive_key) return std::max<int64_t>(0, usage - value);
  }
  return usage;
}

void apply_level(CgroupLimits& out, std::optional<int64_t> limit, std::optional<int64_t> usage) {
  if (!limit) return;
  const int64_t headroom = std::max<int64_t>(0, *limit - usage.value_or(0));
  if (!out.mem_limit || *limit < *out.mem_limit) {
    out.mem_limit = limit;
    out.mem_usage = usage;
  }
  if (!out.mem_headroom || headroom < *out.mem_headroom) out.mem_headroom = headroom;
}

void apply_cpu(CgroupLimits& out, std::optional<double> quota) {
  if (quota && (!out.cpu_quota || *quota < *out.cpu_quota)) out.cpu_quota = quota;
}

CgroupLimits detect_cgroup_limits(const std::string& fs_root) {
  CgroupLimits out;
  auto cg = try_read(fs_root + "/proc/self/cgroup");
  auto mi = try_read(fs_root + "/proc/self/mountinfo");
  if (!cg || !mi) return out;
  const auto mounts = parse_mountinfo(*mi);

  std::istringstream in(*cg);
  std::string line;
  while (std::getline(in, line)) {
    // "hierarchy-id:controller-list:path"
    const size_t c1 = line.find(':');
    const size_t c2 = c1 == std::string::npos ? c1 : line.find(':', c1 + 1);
    if (c2 == std::string::npos) continue;
    const std::string controllers = line.substr(c1 + 1, c2 - c1 - 1);
    const std::string path = line.substr(c2 + 1);
    if (controllers.empty()) {  // cgroup v2 unified hierarchy
      for (const auto& m : mounts) {
        if (m.fstype != "cgroup2") continue;
        for (const auto& dir : cgroup_dirs(fs_root, m, path)) {
          auto lim = try_read(dir + "/memory.max");
          if (lim) {
            auto cur = try_read(dir + "/memory.current");
            std::optional<int64_t> usage;
            if (cur && parse_int(*cur))
              usage = working_set(*parse_int(*cur), try_read(dir + "/memory.stat"), "inactive_file");
            apply_level(out, hw_detail::parse_memory_limit(*lim), usage);
          }
          if (auto cpu = try_read(dir + "/cpu.max")) apply_cpu(out, hw_detail::parse_cpu_max(*cpu));
        }
        break;
      }
      continue;
    }
    const bool memory = has_item(controllers, "memory");
    const bool cpu = has_item(controllers, "cpu");
    if (!memory && !cpu) continue;
    for (const auto& m : mounts) {
      if (m.fstype != "cgroup") continue;
      if (memory && has_item(m.super_options, "memory")) {
        for (const auto& dir : cgroup_dirs(fs_root, m, path)) {
          auto lim = try_read(dir + "/memory.limit_in_bytes");
          if (!lim) continue;
          auto cur = try_read(dir + "/memory.usage_in_bytes");
          std::optional<int64_t> usage;
          if (cur && parse_int(*cur))
            usage = working_set(*parse_int(*cur), try_read(dir + "/memory.stat"), "total_inactive_file");
          apply_level(out, hw_detail::parse_memory_limit(*lim), usage);
        }
      }
      if (cpu && has_item(m.super_options, "cpu")) {
        for (const auto& dir : cgroup_dirs(fs_root, m, path)) {
          auto q = try_read(dir + "/cpu.cfs_quota_us");
          auto p = try_read(dir + "/cpu.cfs_period_us");
          if (!q || !p) continue;
          auto qv = parse_int(*q), pv = parse_int(*p);
          if (qv && pv && *qv > 0 && *pv > 0)
            apply_cpu(out, static_cast<double>(*qv) / static_cast<double>(*pv));
        }
      }
    }
  }
  return out;
}

// ---- GPUs -----------------------------------------------------------------------------------

std::optional<std::string> find_on_path(const std::string& exe) {
  const char* path = std::getenv("PATH");
  if (!path) return std::nullopt;
  for (const auto& dir : split(path, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + exe;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

std::vector<GpuInfo> query_nvidia_smi() {
  auto exe = find_on_path("nvidia-smi");
  if (!exe || exe->find('\'') != std::string::npos) return {};
  const std::string cmd =
      "'" + *exe + "' --query-gpu=name,memory.total,memory.used --format=csv,noheader,nounits 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return {};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  if (status != 0) return {};  // no driver / no device: nvidia-smi fails, which is not an error for us
  return hw_detail::parse_nvidia_smi(out);
}

std::vector<GpuInfo> nvidia_from_proc(const std::string& fs_root) {
  std::vector<GpuInfo> out;
  std::error_code ec;
  const std::filesystem::path dir = fs_root + "/proc/driver/nvidia/gpus";
  std::vector<std::filesystem::path> entries;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) entries.push_back(e.path());
  std::sort(entries.begin(), entries.end());  // bus order, stable output
  for (const auto& p : entries) {
    auto text = try_read((p / "information").string());
    if (!text) continue;
    GpuInfo g;
    g.name = hw_detail::parse_nvidia_proc_model(*text).value_or("NVIDIA GPU");
    g.source = "/proc/driver/nvidia";
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace

namespace hw_detail {

MemInfo parse_meminfo(const std::string& text) {
  MemInfo m;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, colon);
    std::istringstream vs(line.substr(colon + 1));
    int64_t kb = 0;
    if (!(vs >> kb)) continue;
    if (key == "MemTotal") m.total_bytes = kb * 1024;
    if (key == "MemAvailable") m.available_bytes = kb * 1024;
  }
  return m;
}

CpuInfo parse_cpuinfo(const std::string& text) {
  CpuInfo c;
  std::set<std::pair<std::string, std::string>> cores;  // (physical id, core id)
  std::string physical_id, core_id;
  int processor = -1;
  auto flush = [&] {
    if (!core_id.empty()) {
      cores.emplace(physical_id, core_id);
      if (processor >= 0) c.processor_core.emplace_back(processor, physical_id + ":" + core_id);
    }
    physical_id.clear();
    core_id.clear();
    processor = -1;
  };
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) {
      if (trim(line).empty()) flush();  // a blank line ends one processor's block
      continue;
    }
    const std::string key = trim(line.substr(0, colon));
    const std::string value = trim(line.substr(colon + 1));
    if (key == "processor") {
      ++c.logical;
      processor = static_cast<int>(parse_int(value).value_or(-1));
    }
    if (key == "model name" && c.model.empty()) c.model = value;
    if (key == "vendor_id" && c.vendor.empty()) c.vendor = value;
    if (key == "physical id") physical_id = value;
    if (key == "core id") core_id = value;
  }
  flush();
  c.physical_cores = cores.empty() ? c.logical : static_cast<int>(cores.size());
  return c;
}

std::optional<int64_t> parse_memory_limit(const std::string& text) {
  const std::string t = trim(text);
  if (t == "max") return std::nullopt;
  auto v = parse_int(t);
  // cgroup v1 reports "no limit" as a page-aligned LONG_MAX.
  if (!v || *v <= 0 || *v >= (int64_t{1} << 62)) return std::nullopt;
  return v;
}

std::optional<double> parse_cpu_max(const std::string& text) {
  std::istringstream in(text);
  std::string quota, period;
  if (!(in >> quota >> period) || quota == "max") return std::nullopt;
  auto q = parse_int(quota), p = parse_int(period);
  if (!q || !p || *q <= 0 || *p <= 0) return std::nullopt;
  return static_cast<double>(*q) / static_cast<double>(*p);
}

std::vector<GpuInfo> parse_nvidia_smi(const std::string& text) {
  std::vector<GpuInfo> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (trim(line).empty()) continue;
    auto f = split(line, ',');
    if (f.size() < 3) continue;
    GpuInfo g;
    g.name = trim(f[0]);
    g.source = "nvidia-smi";
    constexpr int64_t kMiB = 1024 * 1024;
    if (auto t = parse_int(f[1])) g.memory_total_bytes = *t * kMiB;
    if (auto u = parse_int(f[2])) g.memory_used_bytes = *u * kMiB;
    out.push_back(std::move(g));
  }
  return out;
}

std::optional<std::string> parse_nvidia_proc_model(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t colon = line.find(':');
    if (colon != std::string::npos && trim(line.substr(0, colon)) == "Model") {
      std::string v = trim(line.substr(colon + 1));
      if (!v.empty()) return v;
    }
  }
  return std::nullopt;
}

CpuFeatures decode_cpu_features(uint32_t l1_ecx, uint32_t l7_ebx, uint32_t l7_ecx, uint32_t l7_edx,
                                uint32_t l7_1_eax, uint64_t xcr0) {
  auto bit = [](uint64_t r, int b) { return ((r >> b) & 1u) != 0; };
  // XCR0: bit 1 SSE state, bit 2 AVX (YMM upper halves), bits 5-7 opmask + ZMM state,
  // bits 17-18 AMX tile config + tile data.
  const bool os_avx = bit(xcr0, 1) && bit(xcr0, 2);
  const bool os_avx512 = os_avx && bit(xcr0, 5) && bit(xcr0, 6) && bit(xcr0, 7);
  const bool os_amx = bit(xcr0, 17) && bit(xcr0, 18);
  const bool osxsave = bit(l1_ecx, 27);

  CpuFeatures f;
  f.xcr0 = xcr0;
  f.sse4_2 = bit(l1_ecx, 20);
  f.avx = osxsave && os_avx && bit(l1_ecx, 28);
  f.fma = f.avx && bit(l1_ecx, 12);
  f.f16c = f.avx && bit(l1_ecx, 29);
  f.avx2 = f.avx && bit(l7_ebx, 5);
  f.avx512f = osxsave && os_avx512 && bit(l7_ebx, 16);
  f.avx512bw = f.avx512f && bit(l7_ebx, 30);
  f.avx512vl = f.avx512f && bit(l7_ebx, 31);
  f.avx512_vnni = f.avx512f && bit(l7_ecx, 11);
  f.avx512_bf16 = f.avx512f && bit(l7_1_eax, 5);
  f.amx_tile = osxsave && os_amx && bit(l7_edx, 24);
  f.amx_bf16 = f.amx_tile && bit(l7_edx, 22);
  f.amx_int8 = f.amx_tile && bit(l7_edx, 25);
  return f;
}

}  // namespace hw_detail

HardwareInfo detect_hardware(const HardwareProbe& probe) {
  HardwareInfo hw;
  const std::string& root = probe.fs_root;

  std::string brand;
  hw.isa = detect_cpu_features(hw.cpu_vendor, brand);
  std::vector<std::pair<int, std::string>> processor_core;
  if (auto text = try_read(root + "/proc/cpuinfo")) {
    auto c = hw_detail::parse_cpuinfo(*text);
    processor_core = std::move(c.processor_core);
    if (!c.model.empty()) hw.cpu_model = c.model;
    if (!c.vendor.empty()) hw.cpu_vendor = c.vendor;
    hw.logical_cpus = c.logical;
    hw.physical_cores = c.physical_cores;
  }
  if (hw.cpu_model.empty()) hw.cpu_model = brand.empty() ? "unknown" : brand;
  if (hw.logical_cpus == 0 && root.empty()) {
    long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    hw.logical_cpus = n > 0 ? static_cast<int>(n) : 1;
  }
  if (hw.physical_cores == 0) hw.physical_cores = hw.logical_cpus;

  hw.available_cpus = hw.logical_cpus;
  hw.available_physical_cores = processor_core.empty() ? 0 : hw.physical_cores;
  if (probe.query_affinity) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
      hw.available_cpus = CPU_COUNT(&set);
      std::set<std::string> cores;  // the distinct cores of the CPUs this process may run on
      for (const auto& [cpu, core] : processor_core)
        if (cpu < CPU_SETSIZE && CPU_ISSET(cpu, &set)) cores.insert(core);
      hw.available_physical_cores = static_cast<int>(cores.size());
    }
  }

  for (int i = 0;; ++i) {
    const std::string dir = root + "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i);
    auto level = try_read(dir + "/level");
    if (!level) break;
    CacheInfo c;
    c.level = static_cast<int>(parse_int(*level).value_or(0));
    c.type = trim(try_read(dir + "/type").value_or(""));
    c.size_bytes = parse_size_suffix(try_read(dir + "/size").value_or(""));
    hw.caches.push_back(std::move(c));
  }

  if (auto text = try_read(root + "/proc/meminfo")) {
    auto m = hw_detail::parse_meminfo(*text);
    hw.memory.host_total_bytes = m.total_bytes;
    hw.memory.host_available_bytes = m.available_bytes;
  }
  hw.memory.total_bytes = hw.memory.host_total_bytes;
  hw.memory.available_bytes = hw.memory.host_available_bytes;
  const CgroupLimits cg = detect_cgroup_limits(root);
  hw.cpu_quota = cg.cpu_quota;
  if (cg.mem_limit) {
    hw.memory.cgroup_limit_bytes = cg.mem_limit;
    hw.memory.cgroup_usage_bytes = cg.mem_usage;
    if (hw.memory.total_bytes == 0 || *cg.mem_limit < hw.memory.total_bytes)
      hw.memory.total_bytes = *cg.mem_limit;
    if (cg.mem_headroom && (hw.memory.available_bytes == 0 || *cg.mem_headroom < hw.memory.available_bytes))
      hw.memory.available_bytes = *cg.mem_headroom;
  }

  if (probe.run_nvidia_smi) hw.gpus = query_nvidia_smi();
  if (hw.gpus.empty()) hw.gpus = nvidia_from_proc(root);

  hw.onednn_isa = onednn_isa_name(dnnl_get_effective_cpu_isa());
  return hw;
}

}  // namespace bidora
