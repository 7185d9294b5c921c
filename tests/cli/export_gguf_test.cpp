// `bidora export-gguf` as a user runs it (the executable, on adapters written by
// write_peft_adapter over tiny random models): the file it writes read back with the GGUF reader
// (architecture, alpha, tensor types and values, q/k permutation for llama), the default output
// name, --overwrite, and the refusals (DoRA, bad --outtype, a training output directory, another
// base model).
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "adapters/gguf_export.h"
#include "adapters/peft_io.h"
#include "core/files.h"
#include "core/half.h"
#include "io/gguf.h"
#include "model/tiny_model.h"
#include "model/weights.h"
#include "test_support.h"

namespace bidora::cli {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

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

struct Fixture {
  std::string dir, model, adapter;
  std::unique_ptr<ModelWeights> weights;
};

// A tiny model of `family` and an adapter for it (all seven linears, r = 4, alpha 8) in a fresh
// directory; `base` is the adapter's base_model_name_or_path (default: the model directory).
Fixture make(const std::string& family, LoraVariant method, bool rslora, const std::string& base = "") {
  Fixture fx;
  fx.dir = test::make_temp_dir("export-gguf-" + family);
  fx.model = fx.dir + "/model";
  fs::create_directories(fx.model);
  test::TinyModelSpec spec;
  spec.family = family;
  test::write_tiny_model(fx.model, spec);
  fx.weights = ModelWeights::load(fx.model, LoadOptions(WeightStorage::F32));
  AdapterConfig c;
  c.method = method;
  c.r = 4;
  c.alpha = 8;
  c.use_rslora = rslora;
  c.targets = {LinearKind::Q,    LinearKind::K,  LinearKind::V,   LinearKind::O,
               LinearKind::Gate, LinearKind::Up, LinearKind::Down};
  AdapterSet set(c, fx.weights->layers(), 3);
  std::mt19937 gen(4);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (LoraLayer* l : set.all())
    for (float& b : l->B) b = u(gen);
  fx.adapter = fx.dir + "/run/final_model";
  fs::create_directories(fx.dir + "/run");
  write_peft_adapter(fx.adapter, set, base.empty() ? fx.model : base);
  return fx;
}

TEST(ExportGgufCommand, LlamaRsLoraToF16) {
  const Fixture fx = make("llama", LoraVariant::LoRA, /*rslora=*/true);
  const Finished f =
      run_bidora({"export-gguf", "--adapter", fx.adapter, "--model", fx.model, "--outtype", "f16"}, fx.dir);
  ASSERT_EQ(f.exit_code, 0) << f.out << f.err;
  EXPECT_EQ(f.err, "");
  // convert_lora_to_gguf.py's default name, next to the adapter; general.name from the run.
  const std::string out = fx.adapter + "/run-final_model-F16-LoRA.gguf";
  EXPECT_THAT(f.out, HasSubstr("Wrote " + out));
  EXPECT_THAT(f.out, HasSubstr("architecture  llama"));
  EXPECT_THAT(f.out, HasSubstr("rsLoRA r=4 on q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj "
                               "in 2 layers: 14 linears, 28 tensors f16"));
  EXPECT_THAT(f.out, HasSubstr("adapter.lora.alpha = 16"));
  EXPECT_THAT(f.out, HasSubstr("lora_b rows permuted"));

  const GgufFile g(out);
  EXPECT_EQ(g.get<std::string>("general.architecture"), "llama");
  EXPECT_EQ(g.get<std::string>("general.type"), "adapter");
  EXPECT_EQ(g.get<std::string>("adapter.type"), "lora");
  EXPECT_EQ(g.get<std::string>("general.name"), "run-final_model");
  EXPECT_EQ(g.get<std::string>("general.base_model.0.name"), "model");
  EXPECT_EQ(g.get<float>("adapter.lora.alpha"), 16.0f);  // 8 · sqrt(4): llama.cpp's 16 / 4 = rsLoRA's 8 / 2
  ASSERT_EQ(g.tensors().size(), 28u);
  for (const GgufTensor& t : g.tensors()) EXPECT_EQ(t.type, GgmlType::F16) << t.name;

  // The values: the adapter as read back by bidora, q/k's B rows permuted, rounded to f16.
  const AdapterSet set = read_peft_adapter(fx.adapter, fx.weights->layers());
  const ModelConfig& cfg = fx.weights->config();
  for (const LoraLayer* l : set.all()) {
    const std::string base = llama_cpp_tensor_name(l->layer(), l->kind());
    std::vector<float> b = l->B;
    if (l->kind() == LinearKind::Q) b = llama_cpp_permute_rows(b, l->out_features(), 4, cfg.num_heads);
    if (l->kind() == LinearKind::K) b = llama_cpp_permute_rows(b, l->out_features(), 4, cfg.num_kv_heads);
    const auto gb = gguf_tensor_to_f32(g.tensor(base + ".lora_b"), out);
    const auto ga = gguf_tensor_to_f32(g.tensor(base + ".lora_a"), out);
    ASSERT_EQ(gb.size(), b.size());
    ASSERT_EQ(ga.size(), l->A.size());
    for (size_t i = 0; i < b.size(); ++i)
      ASSERT_EQ(gb[i], f16_to_f32(f32_to_f16_bits(b[i]))) << base << " " << i;
    for (size_t i = 0; i < ga.size(); ++i)
      ASSERT_EQ(ga[i], f16_to_f32(f32_to_f16_bits(l->A[i]))) << base << " " << i;
  }

  // A second run refuses to replace the file unless asked to.
  const Finished again =
      run_bidora({"export-gguf", "-a", fx.adapter, "-m", fx.model, "--outtype", "f16"}, fx.dir);
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("--output " + out + ": the file exists (pass --overwrite to replace it)"));
  const Finished forced = run_bidora(
      {"export-gguf", "-a", fx.adapter, "-m", fx.model, "--outtype", "f16", "--overwrite"}, fx.dir);
  EXPECT_EQ(forced.exit_code, 0) << forced.err;
}

TEST(ExportGgufCommand, Qwen2ToQ8_0AtAChosenPath) {
  const Fixture fx = make("qwen2", LoraVariant::LoRA, /*rslora=*/false);
  const std::string out = fx.dir + "/exported.gguf";
  const Finished f = run_bidora(
      {"export-gguf", "-a", fx.adapter + "/", "-m", fx.model, "-o", out, "--outtype", "q8_0"}, fx.dir);
  ASSERT_EQ(f.exit_code, 0) << f.out << f.err;
  EXPECT_THAT(f.out, HasSubstr("architecture  qwen2"));
  EXPECT_THAT(f.out, HasSubstr("LoRA r=4 on"));
  EXPECT_THAT(f.out, HasSubstr("14 tensors as f16: q8_0 needs rows of a multiple of 32 (r = 4)"));
  EXPECT_THAT(f.out, HasSubstr("alpha         8 (scale alpha/r = 2)"));
  EXPECT_THAT(f.out, Not(HasSubstr("permuted")));
  const GgufFile g(out);
  EXPECT_EQ(g.get<std::string>("general.architecture"), "qwen2");
  EXPECT_EQ(g.get<float>("adapter.lora.alpha"), 8.0f);
  EXPECT_EQ(g.tensor("blk.1.ffn_down.weight.lora_a").type, GgmlType::Q8_0);
  EXPECT_EQ(g.tensor("blk.1.ffn_down.weight.lora_a").ne, (std::vector<int64_t>{96, 4}));
  EXPECT_EQ(g.tensor("blk.1.ffn_down.weight.lora_b").type, GgmlType::F16);
  EXPECT_EQ(g.tensor("blk.1.ffn_down.weight.lora_b").ne, (std::vector<int64_t>{4, 64}));
}

TEST(ExportGgufCommand, Refusals) {
  const Fixture dora = make("qwen3", LoraVariant::DoRA, false);
  const Finished d = run_bidora({"export-gguf", "-a", dora.adapter, "-m", dora.model}, dora.dir);
  EXPECT_EQ(d.exit_code, 1);
  EXPECT_THAT(d.err,
              HasSubstr("a DoRA adapter (use_dora: true) cannot be exported as a llama.cpp LoRA GGUF"));
  EXPECT_THAT(d.err, HasSubstr("bidora merge --model M --adapter " + dora.adapter + " --output MERGED"));
  EXPECT_FALSE(fs::exists(dora.adapter + "/run-final_model-F32-LoRA.gguf"));

  const Fixture fx = make("mistral", LoraVariant::LoRA, false, "someone/other-model");
  const Finished t = run_bidora({"export-gguf", "-a", fx.adapter, "-m", fx.model, "--outtype", "f8"}, fx.dir);
  EXPECT_EQ(t.exit_code, 1);
  EXPECT_THAT(t.err, HasSubstr("--outtype: 'f8' is not one of f32, f16, bf16, q8_0"));

  // A training output directory is not an adapter directory: the loader says which one to use.
  const Finished run_dir = run_bidora({"export-gguf", "-a", fx.dir + "/run", "-m", fx.model}, fx.dir);
  EXPECT_EQ(run_dir.exit_code, 1);
  EXPECT_THAT(run_dir.err, HasSubstr(fx.dir + "/run/final_model"));

  const Finished missing = run_bidora({"export-gguf", "-a", fx.dir + "/nope", "-m", fx.model}, fx.dir);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("--adapter " + fx.dir + "/nope: no such directory"));

  // Trained on another base: refused unless --allow-base-mismatch.
  const Finished other = run_bidora({"export-gguf", "-a", fx.adapter, "-m", fx.model}, fx.dir);
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_THAT(other.err, HasSubstr("someone/other-model"));
  EXPECT_THAT(other.err, HasSubstr("--allow-base-mismatch"));
  const Finished allowed =
      run_bidora({"export-gguf", "-a", fx.adapter, "-m", fx.model, "--allow-base-mismatch"}, fx.dir);
  ASSERT_EQ(allowed.exit_code, 0) << allowed.err;
  EXPECT_THAT(allowed.out, HasSubstr("architecture  llama (for a MistralForCausalLM base GGUF"));
  EXPECT_EQ(GgufFile(fx.adapter + "/run-final_model-F32-LoRA.gguf").get<std::string>("general.architecture"),
            "llama");
}

}  // namespace
}  // namespace bidora::cli
