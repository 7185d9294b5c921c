// `bidora train` as a user runs it: Ctrl-C (SIGINT) mid-run saves a checkpoint and exits with
// 130; the same command with --resume finishes with exactly the adapter of an uninterrupted run.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/files.h"
#include "test_support.h"

namespace bidora::cli {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

struct Finished {
  int exit_code = -1;
  std::string output;
};

// Runs the bidora executable with `args`; once a line of its output contains `interrupt_after`
// (if not empty), sends it SIGINT. Returns its exit code and everything it printed.
Finished run_bidora(const std::vector<std::string>& args, const std::string& interrupt_after = "") {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    std::vector<char*> argv{const_cast<char*>(BIDORA_EXECUTABLE)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(BIDORA_EXECUTABLE, argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  Finished f;
  bool sent = false;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    f.output.append(buf, static_cast<size_t>(n));
    if (!sent && !interrupt_after.empty() && f.output.find(interrupt_after) != std::string::npos) {
      ::kill(pid, SIGINT);
      sent = true;
    }
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  f.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return f;
}

std::vector<std::string> train_args(const std::string& out) {
  return {"train",
          "-m",
          test::source_path("examples/tiny-qwen2"),
          "-t",
          test::source_path("examples/data/alpaca.jsonl"),
          "-o",
          out,
          "-q",
          "bf16",
          "--epochs",
          "20",
          "-b",
          "2",
          "--grad-accum",
          "1",
          "--lr",
          "0.02",
          "--warmup-steps",
          "2",
          "--logging-steps",
          "1",
          "--dropout",
          "0.1",
          "--threads",
          "1"};
}

TEST(TrainCommand, CtrlCSavesACheckpointAndResumeFinishesTheSameRun) {
  const std::string root = test::make_temp_dir("sigint");
  const Finished whole = run_bidora(train_args(root + "/whole"));
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  // The auto-hardware plan is printed before training, a line per choice.
  EXPECT_THAT(whole.output,
              HasSubstr("Plan: model.quantization = bf16 — model.quantization = bf16 (--quantization)"));
  EXPECT_THAT(whole.output, HasSubstr("Plan: training.batch_size = 2 — "));
  EXPECT_THAT(whole.output, HasSubstr("Plan: hardware.threads = 1 — hardware.threads (--threads)"));

  const std::string out = root + "/stopped";
  const Finished stopped = run_bidora(train_args(out), "step     3/100");
  ASSERT_EQ(stopped.exit_code, 130) << stopped.output;
  EXPECT_THAT(stopped.output, HasSubstr("Stopping after the current step"));
  EXPECT_THAT(stopped.output, HasSubstr("Continue with the same command plus --resume"));
  EXPECT_FALSE(fs::exists(out + "/final_model"));
  std::vector<std::string> checkpoints;
  for (const auto& e : fs::directory_iterator(out))
    if (e.path().filename().string().rfind("checkpoint-", 0) == 0) checkpoints.push_back(e.path().string());
  ASSERT_EQ(checkpoints.size(), 1u) << stopped.output;
  EXPECT_TRUE(fs::exists(checkpoints[0] + "/trainer_state.json"));

  std::vector<std::string> args = train_args(out);
  args.push_back("--resume");
  const Finished resumed = run_bidora(args);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_THAT(resumed.output, HasSubstr("Resumed from " + checkpoints[0]));
  EXPECT_EQ(read_file(out + "/final_model/adapter_model.safetensors"),
            read_file(root + "/whole/final_model/adapter_model.safetensors"));
}

}  // namespace
}  // namespace bidora::cli
