// `bidora merge` as a user runs it: the executable on examples/tiny-qwen2 (bf16, tied embeddings)
// with a DoRA adapter written over it. Exit codes, what it prints, the default dtype (the base's
// bfloat16), sharding by --max-shard-size, the -q note, and the refusals' messages. The maths and
// the layout are checked in tests/adapters/test_merge.cpp.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "adapters/peft_io.h"
#include "core/files.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "model/weights.h"
#include "test_support.h"

namespace bidora::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;

struct Finished {
  int exit_code = -1;
  std::string out, err;
};

// Runs the bidora executable with `args`, stdout and stderr into files of `dir`.
Finished run_bidora(const std::vector<std::string>& args, const std::string& dir) {
  const std::string out_path = dir + "/stdout.txt", err_path = dir + "/stderr.txt";
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int o = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0) ::_exit(126);
    ::dup2(o, STDOUT_FILENO);
    ::dup2(e, STDERR_FILENO);
    std::vector<char*> argv{const_cast<char*>(BIDORA_EXECUTABLE)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(BIDORA_EXECUTABLE, argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  Finished f;
  f.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  f.out = read_file(out_path);
  f.err = read_file(err_path);
  return f;
}

std::string tiny_model_dir() {
  return test::source_path("examples/tiny-qwen2");
}

// A DoRA adapter on all seven linears of tiny-qwen2 with B and m away from their initial values.
void write_adapter(const std::string& dir) {
  const auto w = ModelWeights::load(tiny_model_dir(), LoadOptions(WeightStorage::F32));
  AdapterConfig cfg;
  cfg.method = LoraVariant::DoRA;
  cfg.r = 4;
  cfg.alpha = 8;
  cfg.targets = {LinearKind::Q,    LinearKind::K,  LinearKind::V,   LinearKind::O,
                 LinearKind::Gate, LinearKind::Up, LinearKind::Down};
  AdapterSet set(cfg, w->layers(), 3);
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  for (LoraLayer* l : set.all()) {
    for (float& b : l->B) b = nd(rng);
    for (float& m : l->m) m *= 1.0f + nd(rng);
  }
  write_peft_adapter(dir, set, tiny_model_dir());
}

std::vector<float> logits_of(const std::string& dir) {
  const auto w = ModelWeights::load(dir, LoadOptions(WeightStorage::F32));
  Decoder dec(*w);
  TokenBatch b;
  b.rows = 1;
  b.seq_len = 6;
  b.input_ids = {1, 5, 17, 99, 230, 7};
  return dec.logits(b);
}

TEST(MergeCommand, WritesABf16ModelDirectory) {
  const std::string dir = test::make_temp_dir("cli-merge");
  write_adapter(dir + "/adapter");
  const Finished f = run_bidora({"merge", "-m", tiny_model_dir(), "-a", dir + "/adapter", "-o",
                                 dir + "/merged", "-q", "nf4", "--threads", "1"},
                                dir);
  ASSERT_EQ(f.exit_code, 0) << f.out << f.err;
  EXPECT_THAT(f.err, HasSubstr("--quantization nf4 ignored"));
  EXPECT_THAT(f.out, HasSubstr("[1/1] model.safetensors"));
  EXPECT_THAT(f.out, HasSubstr("Merged 14 adapted linear(s)"));
  EXPECT_THAT(f.out, HasSubstr("bfloat16, 1 file)"));
  EXPECT_THAT(f.out, HasSubstr("Copied: config.json, tokenizer.json, tokenizer_config.json"));
  // The base's torch_dtype; every tensor bf16; the tokenizer files are there.
  EXPECT_EQ(json::parse(read_file(dir + "/merged/config.json"))["torch_dtype"], "bfloat16");
  const SafetensorsFile st(dir + "/merged/model.safetensors");
  for (const TensorView& t : st.tensors()) EXPECT_EQ(t.dtype, DType::BF16) << t.name;
  EXPECT_EQ(st.find("lm_head.weight"), nullptr);  // tied embeddings stay tied
  EXPECT_EQ(read_file(dir + "/merged/tokenizer.json"), read_file(tiny_model_dir() + "/tokenizer.json"));
  // It is a different model from the base.
  const std::vector<float> bf16 = logits_of(dir + "/merged"), base = logits_of(tiny_model_dir());
  EXPECT_NE(bf16, base);

  // Again into the same directory: refused, then replaced with --overwrite, now f32 in shards.
  const Finished again =
      run_bidora({"merge", "-m", tiny_model_dir(), "-a", dir + "/adapter", "-o", dir + "/merged"}, dir);
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("error: " + dir + "/merged: already exists; pass --overwrite"));
  const Finished sharded =
      run_bidora({"merge", "-m", tiny_model_dir(), "-a", dir + "/adapter", "-o", dir + "/merged",
                  "--overwrite", "--dtype", "f32", "--max-shard-size", "60KB"},
                 dir);
  ASSERT_EQ(sharded.exit_code, 0) << sharded.out << sharded.err;
  EXPECT_THAT(sharded.out, HasSubstr("model-00001-of-"));
  const json index = json::parse(read_file(dir + "/merged/model.safetensors.index.json"));
  EXPECT_GT(index["weight_map"].size(), 20u);
  EXPECT_FALSE(fs::exists(dir + "/merged/model.safetensors"));
  EXPECT_EQ(json::parse(read_file(dir + "/merged/config.json"))["torch_dtype"], "float32");
  // f32 and bf16 outputs of the same merge differ only by the bf16 rounding of the weights: far
  // less than the adapter changes.
  const std::vector<float> f32 = logits_of(dir + "/merged");
  ASSERT_EQ(f32.size(), bf16.size());
  double rounding = 0, adapter = 0;
  for (size_t i = 0; i < f32.size(); ++i) {
    rounding = std::max(rounding, std::abs(double(f32[i]) - bf16[i]));
    adapter = std::max(adapter, std::abs(double(f32[i]) - base[i]));
  }
  EXPECT_LT(rounding, 0.1 * adapter) << rounding << " vs " << adapter;
}

TEST(MergeCommand, ErrorsAreOneLineAndNameTheProblem) {
  const std::string dir = test::make_temp_dir("cli-merge-errors");
  write_adapter(dir + "/adapter");
  const std::vector<std::string> common = {"merge",          "-m", tiny_model_dir(), "-a",
                                           dir + "/adapter", "-o", dir + "/out"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = common;
    a.insert(a.end(), extra.begin(), extra.end());
    return run_bidora(a, dir);
  };
  Finished f = with({"--max-shard-size", "lots"});
  EXPECT_EQ(f.exit_code, 1);
  EXPECT_THAT(f.err, HasSubstr("--max-shard-size: 'lots' is not a size"));
  f = with({"--dtype", "int8"});
  EXPECT_EQ(f.exit_code, 1);
  EXPECT_THAT(f.err, HasSubstr("--dtype: 'int8' is not one of bf16, f32, f16"));
  f = run_bidora({"merge", "-m", tiny_model_dir(), "-a", dir + "/missing", "-o", dir + "/out"}, dir);
  EXPECT_EQ(f.exit_code, 1);
  EXPECT_THAT(f.err, HasSubstr(dir + "/missing: no such adapter directory"));
  f = run_bidora({"merge", "-m", tiny_model_dir(), "-a", dir + "/adapter"}, dir);
  EXPECT_NE(f.exit_code, 0);
  EXPECT_THAT(f.out + f.err, HasSubstr("--output is required"));
  EXPECT_FALSE(fs::exists(dir + "/out"));
}

}  // namespace
}  // namespace bidora::cli
