// `bidora train` under faults, run as a user runs it. The faults hit exact moments through the
// test hook BIDORA_FAULT (core/fault_injection.h) instead of racing a timer:
// - kill -9 in the middle of a checkpoint save, of the final save, and between a step's backward
//   passes and its update; then the same command plus --resume ends with exactly the adapter,
//   best model, model card and metrics of the uninterrupted run, and the killed save's temporary
//   directory is removed, never taken for a checkpoint;
// - a full disk during a save (a real small tmpfs when the test may mount one, and the ENOSPC
//   hook): a clear error naming the file, and the previous checkpoint stays complete and resumes;
// - a NaN loss: the run stops naming the step and the micro-batch, logs nothing of that step, and
//   the last good checkpoint resumes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/files.h"
#include "run_bidora.h"
#include "test_support.h"

namespace bidora::cli {
namespace {

namespace fs = std::filesystem;
using test::Finished;
using ::testing::HasSubstr;

constexpr int kKilled = 128 + SIGKILL;

// 12 optimiser steps of 2 micro-batches over the 9 training examples (3 steps per epoch, the
// last group of each epoch partial), dropout, an evaluation every 4 steps (best_model) and a
// checkpoint every 4 steps: checkpoint-4, -8, -12.
std::vector<std::string> train_args(const std::string& out, bool resume = false) {
  std::vector<std::string> a = {"train",
                                "-m",
                                test::source_path("examples/tiny-qwen2"),
                                "-t",
                                test::source_path("examples/data/alpaca.jsonl"),
                                "-o",
                                out,
                                "-q",
                                "bf16",
                                "--max-steps",
                                "12",
                                "-b",
                                "2",
                                "--grad-accum",
                                "2",
                                "--lr",
                                "0.02",
                                "--warmup-steps",
                                "2",
                                "--dropout",
                                "0.1",
                                "--logging-steps",
                                "2",
                                "--eval-steps",
                                "4",
                                "--save-steps",
                                "4",
                                "--threads",
                                "1"};
  if (resume) a.push_back("--resume");
  return a;
}

// Runs `bidora train` into `out` with the test hook set to `fault` ("" for none).
Finished train(const std::string& out, const std::string& fault = "", bool resume = false) {
  if (!fault.empty()) ::setenv("BIDORA_FAULT", fault.c_str(), 1);
  Finished f = test::run_bidora(train_args(out, resume), test::make_temp_dir("fault-log"));
  ::unsetenv("BIDORA_FAULT");
  return f;
}

std::string output_of(const Finished& f) {
  return f.out + f.err;
}

bool complete_checkpoint(const std::string& dir) {
  for (const char* f :
       {"adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors", "trainer_state.json"})
    if (!fs::is_regular_file(fs::path(dir) / f)) return false;
  return true;
}

// Paths of the entries of `dir` whose name contains `part`, sorted.
std::vector<std::string> entries_containing(const std::string& dir, const std::string& part) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(part) != std::string::npos) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<int64_t> checkpoint_steps(const std::string& out) {
  std::vector<int64_t> steps;
  for (const std::string& d : entries_containing(out, "checkpoint-")) {
    const std::string name = fs::path(d).filename().string();
    if (name.find('.') == std::string::npos) steps.push_back(std::stoll(name.substr(11)));
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

// metrics.jsonl without the wall-clock fields, which legitimately differ between runs.
std::vector<nlohmann::json> metrics(const std::string& out) {
  std::vector<nlohmann::json> entries;
  std::istringstream in(read_file(out + "/metrics.jsonl"));
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    j.erase("tokens_per_second");
    j.erase("elapsed_seconds");
    entries.push_back(j);
  }
  return entries;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size())
    s.replace(p, from.size(), to);
  return s;
}

// Regular files' sizes under `path`, each rounded up to a 4 KiB page as tmpfs allocates them.
uint64_t disk_bytes(const fs::path& path) {
  auto pages = [](uint64_t b) { return (b + 4095) / 4096 * 4096; };
  if (fs::is_regular_file(path)) return pages(fs::file_size(path));
  uint64_t sum = 0;
  for (const auto& e : fs::recursive_directory_iterator(path))
    if (e.is_regular_file()) sum += pages(e.file_size());
  return sum;
}

class Faults : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    reference_ = new std::string(test::make_temp_dir("fault-reference") + "/run");
    const Finished whole = train(*reference_);
    ASSERT_EQ(whole.exit_code, 0) << output_of(whole);
    ASSERT_EQ(checkpoint_steps(*reference_), (std::vector<int64_t>{4, 8, 12}));
    ASSERT_TRUE(fs::exists(*reference_ + "/best_model/adapter_model.safetensors"));
  }
  static void TearDownTestSuite() {
    delete reference_;
    reference_ = nullptr;
  }

  // What a finished run leaves, equal to the uninterrupted run's (the model card names its own
  // output directory).
  static void expect_uninterrupted_result(const std::string& out) {
    const std::string& ref = *reference_;
    EXPECT_EQ(read_file(out + "/final_model/adapter_model.safetensors"),
              read_file(ref + "/final_model/adapter_model.safetensors"));
    EXPECT_EQ(read_file(out + "/final_model/adapter_config.json"),
              read_file(ref + "/final_model/adapter_config.json"));
    EXPECT_EQ(replace_all(read_file(out + "/final_model/README.md"), out, ref),
              read_file(ref + "/final_model/README.md"));
    EXPECT_EQ(read_file(out + "/best_model/adapter_model.safetensors"),
              read_file(ref + "/best_model/adapter_model.safetensors"));
    EXPECT_EQ(metrics(out), metrics(ref));
    EXPECT_EQ(checkpoint_steps(out), (std::vector<int64_t>{4, 8, 12}));
    EXPECT_EQ(entries_containing(out, ".tmp."), std::vector<std::string>{});
    EXPECT_EQ(entries_containing(out, ".old."), std::vector<std::string>{});
  }

  std::string root_ = test::make_temp_dir("fault");
  static std::string* reference_;
};
std::string* Faults::reference_ = nullptr;

TEST_F(Faults, KillDuringACheckpointSaveThenResume) {
  const std::string out = root_ + "/run";
  const Finished killed = train(out, "checkpoint_write:2");  // while writing checkpoint-8
  ASSERT_EQ(killed.exit_code, kKilled) << output_of(killed);
  EXPECT_TRUE(complete_checkpoint(out + "/checkpoint-4"));
  EXPECT_EQ(checkpoint_steps(out), std::vector<int64_t>{4});
  // The killed save: its temporary directory holds the adapter files, not the trainer state.
  const auto debris = entries_containing(out, "checkpoint-8.tmp.");
  ASSERT_EQ(debris.size(), 1u);
  EXPECT_TRUE(fs::exists(debris[0] + "/adapter_model.safetensors"));
  EXPECT_FALSE(fs::exists(debris[0] + "/trainer_state.json"));

  const Finished resumed = train(out, "", true);
  ASSERT_EQ(resumed.exit_code, 0) << output_of(resumed);
  EXPECT_THAT(output_of(resumed), HasSubstr("Removed " + debris[0] + " (left by an interrupted save)"));
  EXPECT_THAT(output_of(resumed), HasSubstr("Resumed from " + out + "/checkpoint-4 (step 4/12)"));
  expect_uninterrupted_result(out);
}

TEST_F(Faults, KillDuringTheFinalSaveThenResume) {
  const std::string out = root_ + "/run";
  const Finished killed = train(out, "final_save:1");
  ASSERT_EQ(killed.exit_code, kKilled) << output_of(killed);
  EXPECT_FALSE(fs::exists(out + "/final_model"));
  const auto debris = entries_containing(out, "final_model.tmp.");
  ASSERT_EQ(debris.size(), 1u);
  EXPECT_TRUE(fs::exists(debris[0] + "/adapter_model.safetensors"));
  EXPECT_FALSE(fs::exists(debris[0] + "/README.md"));
  EXPECT_TRUE(complete_checkpoint(out + "/checkpoint-12"));

  // The last checkpoint is at the last step: the resumed run only writes the final model.
  const Finished resumed = train(out, "", true);
  ASSERT_EQ(resumed.exit_code, 0) << output_of(resumed);
  EXPECT_THAT(output_of(resumed), HasSubstr("Removed " + debris[0]));
  EXPECT_THAT(output_of(resumed), HasSubstr("Resumed from " + out + "/checkpoint-12 (step 12/12)"));
  expect_uninterrupted_result(out);
}

TEST_F(Faults, KillMidStepThenKillTheResumeThenResumeAgain) {
  const std::string out = root_ + "/run";
  const Finished killed = train(out, "step:10");  // after step 10's backward, before its update
  ASSERT_EQ(killed.exit_code, kKilled) << output_of(killed);
  EXPECT_EQ(checkpoint_steps(out), (std::vector<int64_t>{4, 8}));
  EXPECT_TRUE(complete_checkpoint(out + "/checkpoint-8"));
  EXPECT_EQ(metrics(out).back()["step"], 8);  // logged every 2 steps; step 10 never finished

  // The resumed run (steps 9-12) is killed too, while saving checkpoint-12.
  const Finished killed_again = train(out, "checkpoint_write:1", true);
  ASSERT_EQ(killed_again.exit_code, kKilled) << output_of(killed_again);
  EXPECT_THAT(output_of(killed_again), HasSubstr("Resumed from " + out + "/checkpoint-8 (step 8/12)"));
  EXPECT_EQ(checkpoint_steps(out), (std::vector<int64_t>{4, 8}));

  const Finished resumed = train(out, "", true);
  ASSERT_EQ(resumed.exit_code, 0) << output_of(resumed);
  EXPECT_THAT(output_of(resumed), HasSubstr("Resumed from " + out + "/checkpoint-8 (step 8/12)"));
  expect_uninterrupted_result(out);
}

TEST_F(Faults, NanLossStopsNamingTheStepAndKeepsTheLastGoodCheckpoint) {
  const std::string out = root_ + "/run";
  const Finished failed = train(out, "nan_loss:10");
  EXPECT_EQ(failed.exit_code, 1) << output_of(failed);
  EXPECT_THAT(failed.err, HasSubstr("training step 10, micro-batch 2 of 2 (2 rows x "));
  EXPECT_THAT(failed.err, HasSubstr("the loss is nan; stopped before updating the adapter"));
  EXPECT_THAT(failed.err, HasSubstr("the last good checkpoint is " + out + "/checkpoint-8"));
  EXPECT_EQ(checkpoint_steps(out), (std::vector<int64_t>{4, 8}));
  EXPECT_FALSE(fs::exists(out + "/final_model"));
  // Nothing of the failed step was logged (no NaN in the metrics).
  const auto logged = metrics(out);
  EXPECT_EQ(logged.back()["step"], 8);
  for (const auto& e : logged) EXPECT_TRUE(e["loss"].is_number_float()) << e.dump();

  const Finished resumed = train(out, "", true);
  ASSERT_EQ(resumed.exit_code, 0) << output_of(resumed);
  EXPECT_THAT(output_of(resumed), HasSubstr("Resumed from " + out + "/checkpoint-8 (step 8/12)"));
  expect_uninterrupted_result(out);
}

TEST_F(Faults, DiskFullDuringACheckpointSaveKeepsThePreviousOne) {
  // From the 18th file written on, every write fails with ENOSPC. Before it: metrics.jsonl,
  // config.yaml, the plot at the start and at each log entry, best_model at steps 4 and 8,
  // checkpoint-4, then checkpoint-8's two adapter files; its optimiser state is the 18th. (Another
  // count of writes before checkpoint-8 shows as another save named in the message.)
  const std::string out = root_ + "/run";
  const Finished failed = train(out, "write_enospc:18");
  EXPECT_EQ(failed.exit_code, 1) << output_of(failed);
  EXPECT_THAT(failed.err, HasSubstr("saving the checkpoint of step 8 failed: " + out + "/checkpoint-8.tmp."));
  EXPECT_THAT(failed.err, HasSubstr("/optimizer.safetensors: write failed: No space left on device"));
  EXPECT_THAT(failed.err, HasSubstr("the previous checkpoint " + out +
                                    "/checkpoint-4 is intact: free space and continue with --resume"));
  EXPECT_EQ(checkpoint_steps(out), std::vector<int64_t>{4});
  EXPECT_TRUE(complete_checkpoint(out + "/checkpoint-4"));
  EXPECT_EQ(entries_containing(out, ".tmp."), std::vector<std::string>{});

  const Finished resumed = train(out, "", true);
  ASSERT_EQ(resumed.exit_code, 0) << output_of(resumed);
  EXPECT_THAT(output_of(resumed), HasSubstr("Resumed from " + out + "/checkpoint-4 (step 4/12)"));
  expect_uninterrupted_result(out);
}

// Runs `argv` (a full path first), stdout and stderr into files of `logs`; returns the exit code.
int run_command(const std::vector<std::string>& argv, const std::string& logs) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (!std::freopen((logs + "/cmd.out").c_str(), "w", stdout) ||
        !std::freopen((logs + "/cmd.err").c_str(), "w", stderr))
      ::_exit(126);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST_F(Faults, FullTmpfsDuringACheckpointSaveKeepsThePreviousOne) {
  // A tmpfs in a private mount namespace (root, or a user namespace otherwise), sized from the
  // reference run: everything written up to checkpoint-4 plus half a checkpoint, so checkpoint-8
  // cannot fit. The run's output is copied out before the namespace (and the mount) goes away.
  const std::string& ref = *reference_;
  const uint64_t checkpoint = disk_bytes(ref + "/checkpoint-4");
  uint64_t used = checkpoint + disk_bytes(ref + "/best_model");
  for (const char* f : {"config.yaml", "metrics.jsonl", "training_plot.svg"})
    used += disk_bytes(ref + "/" + f);
  const uint64_t size = (used + checkpoint / 2 + 4095) / 4096 * 4096;
  const std::string mnt = root_ + "/tmpfs", copy = root_ + "/copied", logs = test::make_temp_dir("tmpfs-log");
  fs::create_directories(mnt);
  const char* script = R"(size=$1 mnt=$2 copy=$3 logs=$4; shift 4
mount -t tmpfs -o "size=$size" bidora-fault-test "$mnt" || exit 77
"$@" >"$logs/train.out" 2>"$logs/train.err"
echo $? >"$logs/train.code"
cp -a "$mnt/run" "$copy")";
  std::vector<std::string> argv = {"/usr/bin/unshare"};
  if (::geteuid() != 0) argv.push_back("-r");
  for (std::string a : {"-m", "/bin/sh", "-c"}) argv.push_back(a);
  argv.push_back(script);
  for (std::string a :
       {std::string("sh"), std::to_string(size), mnt, copy, logs, std::string(BIDORA_EXECUTABLE)})
    argv.push_back(a);
  for (const std::string& a : train_args(mnt + "/run")) argv.push_back(a);
  if (!fs::exists(argv[0])) GTEST_SKIP() << "no " << argv[0] << " to mount a tmpfs with";
  const int code = run_command(argv, logs);
  if (!fs::exists(logs + "/train.code"))
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root or unprivileged user namespaces): exit " << code
                 << ": " << read_file(logs + "/cmd.err");
  ASSERT_EQ(code, 0) << read_file(logs + "/cmd.err");

  const std::string err = read_file(logs + "/train.err");
  EXPECT_EQ(std::stoi(read_file(logs + "/train.code")), 1) << read_file(logs + "/train.out") << err;
  EXPECT_THAT(err, HasSubstr("saving the checkpoint of step 8 failed: " + mnt + "/run/checkpoint-8.tmp."));
  EXPECT_THAT(err, HasSubstr("No space left on device"));
  EXPECT_THAT(err, HasSubstr("the previous checkpoint " + mnt + "/run/checkpoint-4 is intact"));
  EXPECT_EQ(checkpoint_steps(copy), std::vector<int64_t>{4});
  EXPECT_TRUE(complete_checkpoint(copy + "/checkpoint-4"));
  EXPECT_EQ(entries_containing(copy, ".tmp."), std::vector<std::string>{});

  // The checkpoint left on the full disk loads and continues to the uninterrupted result.
  const Finished resumed = train(copy, "", true);
  ASSERT_EQ(resumed.exit_code, 0) << output_of(resumed);
  EXPECT_THAT(output_of(resumed), HasSubstr("Resumed from " + copy + "/checkpoint-4 (step 4/12)"));
  expect_uninterrupted_result(copy);
}

}  // namespace
}  // namespace bidora::cli
