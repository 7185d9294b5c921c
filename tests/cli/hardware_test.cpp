#include "core/hardware.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/files.h"
#include "test_support.h"

namespace bidora {
namespace {

namespace fs = std::filesystem;

void put(const std::string& root, const std::string& rel, const std::string& text) {
  const fs::path p = fs::path(root) / rel;
  fs::create_directories(p.parent_path());
  write_file_atomic(p.string(), text);
}

constexpr const char* kCpuinfo =
    "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Test CPU @ 2.00GHz\n"
    "physical id\t: 0\ncore id\t\t: 0\n\n"
    "processor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Test CPU @ 2.00GHz\n"
    "physical id\t: 0\ncore id\t\t: 0\n\n"
    "processor\t: 2\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Test CPU @ 2.00GHz\n"
    "physical id\t: 0\ncore id\t\t: 1\n\n"
    "processor\t: 3\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Test CPU @ 2.00GHz\n"
    "physical id\t: 1\ncore id\t\t: 0\n\n";

constexpr int64_t kGiB = int64_t{1} << 30;

TEST(HardwareParse, Cpuinfo) {
  const auto c = hw_detail::parse_cpuinfo(kCpuinfo);
  EXPECT_EQ(c.logical, 4);
  EXPECT_EQ(c.physical_cores, 3);  // (0,0) twice (SMT), (0,1), (1,0)
  EXPECT_EQ(c.vendor, "GenuineIntel");
  EXPECT_EQ(c.model, "Intel(R) Xeon(R) Test CPU @ 2.00GHz");
  // Which core each processor is on, to count the cores of an affinity mask.
  using PC = std::pair<int, std::string>;
  EXPECT_EQ(c.processor_core, (std::vector<PC>{{0, "0:0"}, {1, "0:0"}, {2, "0:1"}, {3, "1:0"}}));
  // No topology lines (some VMs, ARM): every logical CPU counts as a core.
  const auto arm = hw_detail::parse_cpuinfo("processor\t: 0\nBogoMIPS\t: 50\n\nprocessor\t: 1\n");
  EXPECT_EQ(arm.logical, 2);
  EXPECT_EQ(arm.physical_cores, 2);
  EXPECT_TRUE(arm.processor_core.empty());
}

TEST(HardwareParse, UsablePhysicalCores) {
  HardwareInfo hw;
  hw.logical_cpus = 16, hw.physical_cores = 8, hw.available_cpus = 6, hw.available_physical_cores = 3;
  EXPECT_EQ(hw.usable_cpus(), 6);
  EXPECT_EQ(hw.usable_physical_cores(), 3);  // SMT siblings in the mask count once
  hw.cpu_quota = 1.5;
  EXPECT_EQ(hw.usable_physical_cores(), 2);  // capped by the quota, rounded up
  hw.cpu_quota.reset();
  hw.available_physical_cores = 0;  // unknown topology: the physical cores, at most the usable CPUs
  EXPECT_EQ(hw.usable_physical_cores(), 6);
  hw.physical_cores = 0;
  EXPECT_EQ(hw.usable_physical_cores(), 6);
}

TEST(HardwareParse, MeminfoAndLimits) {
  const auto m =
      hw_detail::parse_meminfo("MemTotal:       16384000 kB\nMemFree: 1 kB\nMemAvailable:    8192000 kB\n");
  EXPECT_EQ(m.total_bytes, int64_t{16384000} * 1024);
  EXPECT_EQ(m.available_bytes, int64_t{8192000} * 1024);
  EXPECT_EQ(hw_detail::parse_memory_limit("max\n"), std::nullopt);
  EXPECT_EQ(hw_detail::parse_memory_limit("4294967296\n"), int64_t{4294967296});
  EXPECT_EQ(hw_detail::parse_memory_limit("9223372036854771712\n"), std::nullopt);  // v1 "unlimited"
  EXPECT_EQ(hw_detail::parse_memory_limit("garbage"), std::nullopt);
  EXPECT_EQ(hw_detail::parse_cpu_max("max 100000\n"), std::nullopt);
  EXPECT_DOUBLE_EQ(*hw_detail::parse_cpu_max("150000 100000\n"), 1.5);
}

TEST(HardwareParse, NvidiaOutputs) {
  const auto g = hw_detail::parse_nvidia_smi(
      "NVIDIA A100-SXM4-40GB, 40960, 1024\nNVIDIA GeForce RTX 3090, 24576, 0\n\n");
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].name, "NVIDIA A100-SXM4-40GB");
  EXPECT_EQ(g[0].memory_total_bytes, int64_t{40960} << 20);
  EXPECT_EQ(g[0].memory_used_bytes, int64_t{1024} << 20);
  EXPECT_EQ(g[1].source, "nvidia-smi");
  EXPECT_TRUE(hw_detail::parse_nvidia_smi("").empty());
  EXPECT_EQ(hw_detail::parse_nvidia_proc_model("Model: \t\t NVIDIA GeForce RTX 4090\nIRQ: 130\n"),
            "NVIDIA GeForce RTX 4090");
  EXPECT_EQ(hw_detail::parse_nvidia_proc_model("IRQ: 1\n"), std::nullopt);
}

TEST(HardwareParse, CpuidBitsNeedOsSupport) {
  const uint32_t l1 =
      (1u << 20) | (1u << 27) | (1u << 28) | (1u << 12) | (1u << 29);     // SSE4.2 OSXSAVE AVX FMA F16C
  const uint32_t l7b = (1u << 5) | (1u << 16) | (1u << 30) | (1u << 31);  // AVX2 AVX512F/BW/VL
  const uint32_t l7c = 1u << 11;                                          // AVX512_VNNI
  const uint32_t l7d = (1u << 22) | (1u << 24) | (1u << 25);              // AMX BF16/TILE/INT8
  const uint32_t l71a = 1u << 5;                                          // AVX512_BF16
  // XCR0 state bits: x87 + SSE + AVX, opmask + ZMM halves, AMX tile config + data.
  const uint64_t sse_avx = 0x7, avx512 = 0xE0, amx = uint64_t{3} << 17;

  const auto full = hw_detail::decode_cpu_features(l1, l7b, l7c, l7d, l71a, sse_avx | avx512 | amx);
  EXPECT_TRUE(full.sse4_2 && full.avx && full.avx2 && full.fma && full.f16c);
  EXPECT_TRUE(full.avx512f && full.avx512bw && full.avx512vl && full.avx512_vnni && full.avx512_bf16);
  EXPECT_TRUE(full.amx_tile && full.amx_bf16 && full.amx_int8);

  // The OS does not save ZMM or tile state (e.g. a hypervisor masks them): those are not usable.
  const auto no512 = hw_detail::decode_cpu_features(l1, l7b, l7c, l7d, l71a, sse_avx);
  EXPECT_TRUE(no512.avx2);
  EXPECT_FALSE(no512.avx512f || no512.avx512bw || no512.avx512_bf16 || no512.avx512_vnni);
  EXPECT_FALSE(no512.amx_tile || no512.amx_bf16);

  // No OSXSAVE at all: nothing beyond SSE.
  const auto none = hw_detail::decode_cpu_features(l1 & ~(1u << 27), l7b, l7c, l7d, l71a, 0);
  EXPECT_TRUE(none.sse4_2);
  EXPECT_FALSE(none.avx || none.avx2 || none.fma || none.avx512f);
}

TEST(HardwareDetect, FakeTreeWithCgroupV2Limits) {
  const std::string root = test::make_temp_dir("hw-v2");
  put(root, "proc/cpuinfo", kCpuinfo);
  put(root, "proc/meminfo", "MemTotal: 16777216 kB\nMemAvailable: 12582912 kB\n");  // 16 GiB, 12 GiB
  put(root, "proc/self/cgroup", "0::/user.slice/job\n");
  put(root, "proc/self/mountinfo",
      "22 1 0:21 / / rw - ext4 /dev/sda1 rw\n"
      "30 22 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n");
  put(root, "sys/fs/cgroup/user.slice/job/memory.max", "4294967296\n");      // 4 GiB
  put(root, "sys/fs/cgroup/user.slice/job/memory.current", "1610612736\n");  // 1.5 GiB
  put(root, "sys/fs/cgroup/user.slice/job/memory.stat",
      "anon 1\ninactive_file 536870912\n");  // 0.5 GiB cache
  put(root, "sys/fs/cgroup/user.slice/job/cpu.max", "250000 100000\n");
  put(root, "sys/fs/cgroup/user.slice/memory.max", "max\n");
  put(root, "sys/fs/cgroup/user.slice/cpu.max", "max 100000\n");
  put(root, "sys/devices/system/cpu/cpu0/cache/index0/level", "1\n");
  put(root, "sys/devices/system/cpu/cpu0/cache/index0/type", "Data\n");
  put(root, "sys/devices/system/cpu/cpu0/cache/index0/size", "48K\n");
  put(root, "sys/devices/system/cpu/cpu0/cache/index1/level", "3\n");
  put(root, "sys/devices/system/cpu/cpu0/cache/index1/type", "Unified\n");
  put(root, "sys/devices/system/cpu/cpu0/cache/index1/size", "32M\n");
  put(root, "proc/driver/nvidia/gpus/0000:01:00.0/information", "Model: \t NVIDIA L4\nIRQ: 1\n");

  HardwareProbe probe;
  probe.fs_root = root;
  probe.run_nvidia_smi = false;
  probe.query_affinity = false;
  const HardwareInfo hw = detect_hardware(probe);
  EXPECT_EQ(hw.cpu_model, "Intel(R) Xeon(R) Test CPU @ 2.00GHz");
  EXPECT_EQ(hw.cpu_vendor, "GenuineIntel");
  EXPECT_EQ(hw.logical_cpus, 4);
  EXPECT_EQ(hw.physical_cores, 3);
  EXPECT_EQ(hw.available_cpus, 4);
  ASSERT_TRUE(hw.cpu_quota.has_value());
  EXPECT_DOUBLE_EQ(*hw.cpu_quota, 2.5);
  EXPECT_EQ(hw.usable_cpus(), 3);  // ceil(2.5)
  EXPECT_EQ(hw.available_physical_cores, 3);
  EXPECT_EQ(hw.usable_physical_cores(), 3);
  EXPECT_EQ(hw.memory.host_total_bytes, 16 * kGiB);
  EXPECT_EQ(hw.memory.host_available_bytes, 12 * kGiB);
  EXPECT_EQ(hw.memory.cgroup_limit_bytes, 4 * kGiB);
  EXPECT_EQ(hw.memory.cgroup_usage_bytes, 1 * kGiB);  // working set: usage minus inactive file cache
  EXPECT_EQ(hw.memory.total_bytes, 4 * kGiB);
  EXPECT_EQ(hw.memory.available_bytes, 3 * kGiB);
  ASSERT_EQ(hw.caches.size(), 2u);
  EXPECT_EQ(hw.caches[0].level, 1);
  EXPECT_EQ(hw.caches[0].size_bytes, 48 * 1024);
  EXPECT_EQ(hw.caches[1].size_bytes, 32 << 20);
  ASSERT_EQ(hw.gpus.size(), 1u);
  EXPECT_EQ(hw.gpus[0].name, "NVIDIA L4");
  EXPECT_EQ(hw.gpus[0].memory_total_bytes, -1);
  EXPECT_FALSE(HardwareInfo::kGpuBackendAvailable);
}

TEST(HardwareDetect, FakeTreeWithCgroupV1AncestorLimit) {
  const std::string root = test::make_temp_dir("hw-v1");
  put(root, "proc/cpuinfo", kCpuinfo);
  put(root, "proc/meminfo", "MemTotal: 8388608 kB\nMemAvailable: 7340032 kB\n");  // 8 GiB, 7 GiB
  put(root, "proc/self/cgroup", "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n");
  put(root, "proc/self/mountinfo",
      "40 30 0:35 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
      "41 30 0:36 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n");
  // The leaf is unlimited; its parent sets 2 GiB, which is what an OOM kill would enforce.
  put(root, "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", "9223372036854771712\n");
  put(root, "sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes", "104857600\n");
  put(root, "sys/fs/cgroup/memory/docker/memory.limit_in_bytes", "2147483648\n");
  put(root, "sys/fs/cgroup/memory/docker/memory.usage_in_bytes", "1073741824\n");
  put(root, "sys/fs/cgroup/memory/docker/memory.stat", "total_inactive_file 0\n");
  put(root, "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1\n");
  put(root, "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
  put(root, "sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_quota_us", "100000\n");
  put(root, "sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_period_us", "100000\n");

  HardwareProbe probe;
  probe.fs_root = root;
  probe.run_nvidia_smi = false;
  probe.query_affinity = false;
  const HardwareInfo hw = detect_hardware(probe);
  EXPECT_EQ(hw.memory.cgroup_limit_bytes, 2 * kGiB);
  EXPECT_EQ(hw.memory.total_bytes, 2 * kGiB);
  EXPECT_EQ(hw.memory.available_bytes, 1 * kGiB);
  ASSERT_TRUE(hw.cpu_quota.has_value());
  EXPECT_DOUBLE_EQ(*hw.cpu_quota, 1.0);
  EXPECT_EQ(hw.usable_cpus(), 1);
  EXPECT_TRUE(hw.gpus.empty());
}

TEST(HardwareDetect, EmptyTreeDoesNotFail) {
  HardwareProbe probe;
  probe.fs_root = test::make_temp_dir("hw-empty");
  probe.run_nvidia_smi = false;
  probe.query_affinity = false;
  const HardwareInfo hw = detect_hardware(probe);
  EXPECT_EQ(hw.memory.total_bytes, 0);
  EXPECT_FALSE(hw.memory.cgroup_limit_bytes.has_value());
  EXPECT_TRUE(hw.caches.empty());
  EXPECT_FALSE(hw.cpu_model.empty());  // the cpuid brand string (or "unknown")
  EXPECT_GE(hw.usable_cpus(), 1);
}

TEST(HardwareDetect, ThisMachineIsSane) {
  const HardwareInfo hw = detect_hardware();
  EXPECT_GE(hw.logical_cpus, 1);
  EXPECT_GE(hw.physical_cores, 1);
  EXPECT_LE(hw.physical_cores, hw.logical_cpus);
  EXPECT_GE(hw.available_cpus, 1);
  EXPECT_LE(hw.available_cpus, hw.logical_cpus);
  EXPECT_GE(hw.usable_cpus(), 1);
  EXPECT_GE(hw.usable_physical_cores(), 1);
  EXPECT_LE(hw.usable_physical_cores(), hw.usable_cpus());
  EXPECT_GT(hw.memory.total_bytes, 0);
  EXPECT_GT(hw.memory.available_bytes, 0);
  EXPECT_LE(hw.memory.available_bytes, hw.memory.total_bytes);
  EXPECT_LE(hw.memory.total_bytes, hw.memory.host_total_bytes);
  EXPECT_FALSE(hw.cpu_model.empty());
  EXPECT_FALSE(hw.onednn_isa.empty());
  EXPECT_NE(hw.onednn_isa, "unknown");
  // Each extension implies the ones it is built on.
  const CpuFeatures& f = hw.isa;
  auto implies = [](bool a, bool b) { return !a || b; };
  EXPECT_TRUE(implies(f.avx2, f.avx));
  EXPECT_TRUE(implies(f.fma || f.f16c, f.avx));
  EXPECT_TRUE(implies(f.avx512f, f.avx2));
  EXPECT_TRUE(implies(f.avx512bw || f.avx512vl || f.avx512_vnni || f.avx512_bf16, f.avx512f));
  EXPECT_TRUE(implies(f.amx_bf16 || f.amx_int8, f.amx_tile));
  // oneDNN dispatches to AVX-512 kernels only if we see AVX-512 too.
  EXPECT_TRUE(implies(hw.onednn_isa.rfind("avx512", 0) == 0, f.avx512f));
  EXPECT_TRUE(implies(hw.onednn_isa == "avx512_core_bf16", f.avx512_bf16));
  EXPECT_TRUE(implies(hw.onednn_isa == "avx512_core_amx", f.amx_tile));
  EXPECT_EQ(f.list().size(), 13u);
}

}  // namespace
}  // namespace bidora
