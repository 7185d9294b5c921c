// The fault-injection hook (core/fault_injection.h) and what bidora's writers do when the disk
// fills up midway: the error names the file and the reason, the previous version stays in place
// and nothing half-written is left behind.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fault_injection.h"
#include "core/files.h"
#include "test_support.h"

namespace bidora {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Arms `spec` for one test and disarms it afterwards, whatever the test does.
struct ArmedFault {
  explicit ArmedFault(const std::string& spec) { fault::configure_for_testing(spec); }
  ~ArmedFault() { fault::configure_for_testing(""); }
};

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(FaultInjection, FiresOnTheNamedArrivalOnly) {
  ArmedFault f("step:3,final_save:1");
  std::vector<bool> step;
  for (int i = 0; i < 5; ++i) step.push_back(fault::reached("step"));
  EXPECT_EQ(step, (std::vector<bool>{false, false, true, false, false}));
  EXPECT_TRUE(fault::reached("final_save"));
  EXPECT_FALSE(fault::reached("final_save"));
  EXPECT_FALSE(fault::reached("checkpoint_write"));  // not armed
}

TEST(FaultInjection, AFullDiskStaysFull) {
  ArmedFault f("write_enospc:2");
  std::vector<bool> writes;
  for (int i = 0; i < 4; ++i) writes.push_back(fault::reached("write_enospc"));
  EXPECT_EQ(writes, (std::vector<bool>{false, true, true, true}));
}

TEST(FaultInjection, InactiveWithoutASetting) {
  ArmedFault f("");
  for (const char* p : {"checkpoint_write", "final_save", "step", "nan_loss", "write_enospc"})
    EXPECT_FALSE(fault::reached(p)) << p;
}

TEST(FaultInjection, RejectsMalformedSettings) {
  for (const char* bad : {"step", "step:0", "step:-1", "step:x", "step:2x", "stpe:1", "step:1,disk:2"}) {
    try {
      fault::configure_for_testing(bad);
      FAIL() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("BIDORA_FAULT")) << bad;
    }
  }
  fault::configure_for_testing("");
}

TEST(FullDisk, WriteFileAtomicKeepsThePreviousFile) {
  const std::string dir = test::make_temp_dir("enospc-file");
  const std::string path = dir + "/state.json";
  write_file_atomic(path, "previous");
  const std::string big(100000, 'x');  // large enough that half of it really reaches the disk
  ArmedFault f("write_enospc:1");
  try {
    write_file_atomic(path, big);
    FAIL() << "expected ENOSPC";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(path + ": write failed: No space left on device"));
  }
  EXPECT_EQ(read_file(path), "previous");
  EXPECT_EQ(entries(dir), std::vector<std::string>{"state.json"});  // no "state.json.tmp.<pid>"
}

TEST(FullDisk, ReplaceDirectoryKeepsThePreviousDirectory) {
  const std::string root = test::make_temp_dir("enospc-dir");
  const std::string dir = root + "/checkpoint-4";
  replace_directory(dir, [](const std::string& tmp) {
    write_file_atomic(tmp + "/a.safetensors", "old a");
    write_file_atomic(tmp + "/b.json", "old b");
  });
  // The disk fills up at the second of three files: the first is complete in the temporary
  // directory, the second half-written.
  ArmedFault f("write_enospc:2");
  try {
    replace_directory(dir, [](const std::string& tmp) {
      write_file_atomic(tmp + "/a.safetensors", "new a");
      write_file_atomic(tmp + "/b.json", std::string(50000, 'b'));
      write_file_atomic(tmp + "/c.json", "new c");
    });
    FAIL() << "expected ENOSPC";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("/checkpoint-4.tmp."));
    EXPECT_THAT(e.what(), HasSubstr("/b.json: write failed: No space left on device"));
  }
  EXPECT_EQ(entries(root), std::vector<std::string>{"checkpoint-4"});
  EXPECT_EQ(entries(dir), (std::vector<std::string>{"a.safetensors", "b.json"}));
  EXPECT_EQ(read_file(dir + "/a.safetensors"), "old a");
  EXPECT_EQ(read_file(dir + "/b.json"), "old b");
}

}  // namespace
}  // namespace bidora
