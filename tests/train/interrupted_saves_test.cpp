// remove_interrupted_saves: what a process killed mid-save leaves in a run's output directory is
// cleaned up before a resume, a directory caught between replace_directory's two renames is put
// back, and nothing else is touched (a live process's saves, foreign files, real checkpoints).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "core/files.h"
#include "test_support.h"
#include "train/checkpoint.h"

namespace bidora::train {
namespace {

namespace fs = std::filesystem;

// The pid of a process that has exited (and been reaped): what a killed run's pid is.
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

void make_dir_with(const std::string& dir, const std::string& file, const std::string& text) {
  fs::create_directories(dir);
  write_file_atomic(dir + "/" + file, text);
}

TEST(InterruptedSaves, RemovesDebrisAndRestoresDirectoriesCaughtBetweenRenames) {
  const std::string out = test::make_temp_dir("debris");
  const std::string dead = std::to_string(dead_pid());
  const std::string self = std::to_string(::getpid());
  make_dir_with(out + "/checkpoint-4", "trainer_state.json", "4");
  // Killed while writing checkpoint-8: a temporary directory without trainer_state.json.
  make_dir_with(out + "/checkpoint-8.tmp." + dead, "adapter_model.safetensors", "8");
  // Killed after final_model was replaced, before the previous one was deleted.
  make_dir_with(out + "/final_model", "adapter_model.safetensors", "new final");
  make_dir_with(out + "/final_model.old." + dead, "adapter_model.safetensors", "old final");
  // Killed between the two renames: no best_model, the new one complete in .tmp, the old in .old.
  make_dir_with(out + "/best_model.tmp." + dead, "adapter_model.safetensors", "new best");
  make_dir_with(out + "/best_model.old." + dead, "adapter_model.safetensors", "old best");
  // Only the set-aside previous version survived (the new one's rename failed).
  make_dir_with(out + "/search_model.old." + dead, "adapter_model.safetensors", "search");
  write_file_atomic(out + "/metrics.jsonl.tmp." + dead, "{}");
  // Not ours to delete: this (live) process's save in progress, and names bidora does not write.
  make_dir_with(out + "/checkpoint-12.tmp." + self, "adapter_model.safetensors", "12");
  make_dir_with(out + "/notes.tmp." + dead, "a.txt", "mine");
  make_dir_with(out + "/checkpoint-x.tmp." + dead, "a.txt", "mine");

  const std::vector<std::string> removed = remove_interrupted_saves(out);
  std::vector<std::string> expected = {out + "/best_model.old." + dead, out + "/checkpoint-8.tmp." + dead,
                                       out + "/final_model.old." + dead, out + "/metrics.jsonl.tmp." + dead};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(removed, expected);
  std::vector<std::string> left = {
      "best_model",  "checkpoint-12.tmp." + self, "checkpoint-4", "checkpoint-x.tmp." + dead,
      "final_model", "notes.tmp." + dead,         "search_model"};
  std::sort(left.begin(), left.end());
  EXPECT_EQ(entries(out), left);
  EXPECT_EQ(read_file(out + "/best_model/adapter_model.safetensors"), "new best");
  EXPECT_EQ(read_file(out + "/final_model/adapter_model.safetensors"), "new final");
  EXPECT_EQ(read_file(out + "/search_model/adapter_model.safetensors"), "search");
  EXPECT_EQ(read_file(out + "/checkpoint-4/trainer_state.json"), "4");

  EXPECT_TRUE(remove_interrupted_saves(out).empty());  // nothing left to do
  EXPECT_TRUE(remove_interrupted_saves(out + "/missing").empty());
}

}  // namespace
}  // namespace bidora::train
