// The info, list-models and config commands, run in-process through CLI11 exactly as main() does.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include <nlohmann/json.hpp>

#include "cli/app.h"
#include "cli/commands.h"
#include "cli/config_command.h"
#include "cli/info.h"
#include "cli/list_models.h"
#include "cli/table.h"
#include "cli/training_plan.h"
#include "core/error.h"
#include "core/files.h"
#include "test_support.h"

namespace bidora::cli {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

// Parses `args` with every command registered and returns what the command printed to stdout.
std::string run_command(std::vector<std::string> args) {
  CLI::App app{"bidora"};
  app.require_subcommand(1);
  register_info(app);
  register_list_models(app);
  register_config(app);
  std::vector<const char*> argv{"bidora"};
  for (const auto& a : args) argv.push_back(a.c_str());
  testing::internal::CaptureStdout();
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (...) {
    testing::internal::GetCapturedStdout();
    throw;
  }
  std::fflush(stdout);
  return testing::internal::GetCapturedStdout();
}

std::string error_of(std::vector<std::string> args) {
  try {
    run_command(std::move(args));
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected bidora::Error";
  return "";
}

TEST(InfoCommand, JsonHasTheExpectedKeys) {
  const json j = json::parse(run_command({"info", "--json"}));
  for (const char* k : {"model", "vendor", "logical_cpus", "physical_cores", "available_cpus", "usable_cpus",
                        "isa", "caches", "onednn_isa", "cpu_quota"}) {
    EXPECT_TRUE(j["cpu"].contains(k)) << k;
  }
  for (const char* k : {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                        "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}) {
    EXPECT_TRUE(j["cpu"]["isa"][k].is_boolean()) << k;
  }
  EXPECT_GT(j["memory"]["total_bytes"].get<int64_t>(), 0);
  EXPECT_GT(j["memory"]["available_bytes"].get<int64_t>(), 0);
  EXPECT_TRUE(j["gpus"].is_array());
  EXPECT_EQ(j["gpu_backend"]["available"], false);
  for (const char* lib : {"oneDNN", "fmt", "nlohmann_json", "yaml-cpp", "CLI11", "Oniguruma", "OpenMP"}) {
    ASSERT_TRUE(j["libraries"].contains(lib)) << lib;
    EXPECT_FALSE(j["libraries"][lib].get<std::string>().empty()) << lib;
  }
  EXPECT_EQ(j["libraries"]["CLI11"], CLI11_VERSION);
  EXPECT_EQ(j["build"]["bidora"], "0.1.0");
}

TEST(InfoCommand, TablesOnAKnownMachine) {
  HardwareInfo hw;
  hw.cpu_model = "Test CPU 模型";
  hw.cpu_vendor = "GenuineIntel";
  hw.logical_cpus = 8, hw.physical_cores = 4, hw.available_cpus = 6;
  hw.cpu_quota = 2.0;
  hw.isa.avx2 = true;
  hw.memory.total_bytes = int64_t{16} << 30;
  hw.memory.available_bytes = int64_t{10} << 30;
  hw.memory.cgroup_limit_bytes = int64_t{16} << 30;
  hw.memory.cgroup_usage_bytes = int64_t{6} << 30;
  hw.gpus.push_back({"NVIDIA A100", int64_t{40} << 30, int64_t{1} << 30, "nvidia-smi"});
  std::FILE* f = std::tmpfile();
  print_info(hw, f);
  std::rewind(f);
  std::string out(1 << 16, '\0');
  out.resize(std::fread(out.data(), 1, out.size(), f));
  std::fclose(f);
  EXPECT_THAT(out, HasSubstr("│ CPU                      │ Test CPU 模型"));
  EXPECT_THAT(out, HasSubstr("4 physical, 8 logical"));
  EXPECT_THAT(out, HasSubstr("6 (cgroup quota 2.00 CPUs)"));
  EXPECT_THAT(out, HasSubstr("│ Threads bidora uses      │ 2 "));
  EXPECT_THAT(out, HasSubstr("16.00 GiB (in use: 6.00 GiB)"));
  EXPECT_THAT(out, HasSubstr("NVIDIA A100, 40.00 GiB (1.00 GiB used) [nvidia-smi]"));
  EXPECT_THAT(out, HasSubstr("no (CPU-only build; GPU backend is future work)"));
  EXPECT_THAT(out, HasSubstr("│ AVX2         │   ✓    │"));
  EXPECT_THAT(out, HasSubstr("│ AMX-INT8     │   ✗    │"));
  EXPECT_EQ(out.find("\x1b["), std::string::npos);  // not a terminal: no colour
  const json j = info_json(hw);
  EXPECT_EQ(j["cpu"]["usable_cpus"], 2);
  EXPECT_EQ(j["gpus"][0]["memory_total_bytes"], int64_t{40} << 30);
  EXPECT_EQ(j["gpus"][0]["usable"], false);
}

TEST(ListModelsCommand, JsonListsTheWholeCatalogueWithAll) {
  const json j = json::parse(run_command({"list-models", "--json", "--all"}));
  ASSERT_EQ(j["models"].size(), model_catalog().size());
  EXPECT_EQ(j["families"].size(), 4u);
  EXPECT_GT(j["available_memory_bytes"].get<int64_t>(), 0);
  EXPECT_EQ(j["assumptions"]["lora_rank"], 16);
  EXPECT_EQ(j["assumptions"]["batch_size"], 4);
  EXPECT_EQ(j["assumptions"]["seq_len"], 512);
  for (const auto& m : j["models"]) {
    for (const char* k : {"id", "family", "parameters", "memory", "fits", "recommended_storage", "config"}) {
      EXPECT_TRUE(m.contains(k)) << k;
    }
    for (const char* s : {"bf16", "nf4", "int8"}) {
      ASSERT_TRUE(m["memory"].contains(s)) << m["id"] << " " << s;
      EXPECT_GT(m["memory"][s]["total_bytes"].get<int64_t>(), 0);
      EXPECT_TRUE(m["memory"][s]["fits"].is_boolean());
    }
    EXPECT_LT(m["memory"]["nf4"]["total_bytes"].get<int64_t>(),
              m["memory"]["bf16"]["total_bytes"].get<int64_t>());
    EXPECT_EQ(m["fits"].get<bool>(), !m["recommended_storage"].is_null());
  }
  const auto& qwen = *std::find_if(j["models"].begin(), j["models"].end(),
                                   [](const json& m) { return m["id"] == "Qwen/Qwen2.5-0.5B"; });
  EXPECT_EQ(qwen["parameters"], 494032768);
  EXPECT_EQ(qwen["config"]["hidden_size"], 896);
  EXPECT_EQ(qwen["config"]["tie_word_embeddings"], true);
  EXPECT_EQ(qwen["family"], "qwen2");
}

TEST(ListModelsCommand, FitsDependOnAvailableMemory) {
  constexpr int64_t kGiB = int64_t{1} << 30;
  const auto fits8 = evaluate_catalog(8 * kGiB);
  const json j = list_models_json(fits8, 8 * kGiB, false);
  std::map<std::string, json> by_id;
  for (const auto& m : j["models"]) by_id[m["id"]] = m;
  ASSERT_TRUE(by_id.count("Qwen/Qwen2.5-0.5B"));
  EXPECT_EQ(by_id["Qwen/Qwen2.5-0.5B"]["recommended_storage"], "bf16");
  EXPECT_FALSE(by_id.count("meta-llama/Llama-3.1-8B"));  // hidden without --all: does not fit in 8 GiB
  for (const auto& m : j["models"]) EXPECT_TRUE(m["fits"].get<bool>());
  EXPECT_LT(j["models"].size(), model_catalog().size());

  EXPECT_TRUE(list_models_json(evaluate_catalog(0), 0, false)["models"].empty());
  const json none = list_models_json(evaluate_catalog(0), 0, true);
  EXPECT_EQ(none["models"].size(), model_catalog().size());
  for (const auto& m : none["models"]) EXPECT_TRUE(m["recommended_storage"].is_null());

  std::FILE* f = std::tmpfile();
  print_list_models(fits8, 8 * kGiB, false, f);
  std::rewind(f);
  std::string out(1 << 16, '\0');
  out.resize(std::fread(out.data(), 1, out.size(), f));
  std::fclose(f);
  EXPECT_THAT(out, HasSubstr("Recommended models (8.00 GiB available for training)"));
  EXPECT_THAT(out, HasSubstr("Qwen/Qwen2.5-0.5B"));
  EXPECT_THAT(out, HasSubstr("✓"));
  EXPECT_THAT(out, HasSubstr("larger model(s) that do not fit are hidden; --all shows them"));
  EXPECT_EQ(out.find("Llama-3.1-8B"), std::string::npos);
}

TEST(ConfigCommand, PrecedenceThroughTheCommandLine) {
  const std::string dir = test::make_temp_dir("config-cmd");
  const std::string path = dir + "/c.yaml";
  write_file_atomic(
      path, "training:\n  epochs: 7\n  learning_rate: 3e-4\nadapter:\n  r: 32\n  targets: all-linear\n");
  const json j = json::parse(run_command({"config", "--config", path, "--lr", "1e-4", "--no-rslora",
                                          "--targets", "q,v", "--max-steps", "-1", "--json"}));
  EXPECT_EQ(j["config"]["training"]["epochs"], 7);            // YAML
  EXPECT_EQ(j["config"]["training"]["learning_rate"], 1e-4);  // flag over YAML
  EXPECT_EQ(j["config"]["adapter"]["r"], 32);                 // YAML over default
  EXPECT_EQ(j["config"]["adapter"]["targets"], json({"q_proj", "v_proj"}));
  EXPECT_EQ(j["config"]["adapter"]["use_rslora"], false);
  EXPECT_EQ(j["config"]["training"]["batch_size"], 4);  // default
  EXPECT_EQ(j["sources"]["training.epochs"], path + ":2");
  EXPECT_EQ(j["sources"]["training.learning_rate"], "--lr");
  EXPECT_EQ(j["sources"]["adapter.use_rslora"], "--no-rslora");
  EXPECT_EQ(j["sources"]["training.batch_size"], "default");
  EXPECT_EQ(j["derived"]["effective_batch_size"], 16);
  EXPECT_DOUBLE_EQ(j["derived"]["lora_scaling"].get<double>(), 16.0 / 32.0);
  EXPECT_EQ(j["missing_for_training"].size(), 2u);
}

TEST(ConfigCommand, RepeatedFlagKeepsTheLastValue) {
  const json j = json::parse(run_command({"config", "--lr", "1e-4", "--lr", "3e-4", "--packing",
                                          "--no-packing", "--targets", "q", "--targets", "v", "--json"}));
  EXPECT_EQ(j["config"]["training"]["learning_rate"], 3e-4);
  EXPECT_EQ(j["config"]["data"]["packing"], false);
  EXPECT_EQ(j["sources"]["data.packing"], "--no-packing");
  EXPECT_EQ(j["config"]["adapter"]["targets"], json({"q_proj", "v_proj"}));  // list flags accumulate
}

TEST(ConfigCommand, YamlOutputLoadsBackToTheSameConfig) {
  const std::string yaml =
      run_command({"config", "-r", "4", "--method", "bidora", "--data-format", "chat", "--yaml"});
  TrainConfig back;
  apply_yaml(back, yaml, "printed.yaml");
  TrainConfig expected;
  expected.adapter.r = 4;
  expected.adapter.method = AdapterMethod::BiDoRA;
  expected.data.format = DataFormat::Messages;
  EXPECT_EQ(back, expected);
}

TEST(ConfigCommand, TableShowsValuesAndSources) {
  const std::string out = run_command({"config", "--epochs", "2", "-m", "/models/qwen"});
  EXPECT_THAT(out, HasSubstr("Resolved configuration"));
  EXPECT_THAT(out, HasSubstr("│ training.epochs"));
  EXPECT_THAT(out, HasSubstr("│ /models/qwen"));
  EXPECT_THAT(out, HasSubstr("│ --epochs"));
  EXPECT_THAT(out, HasSubstr("(not set)"));
  EXPECT_THAT(out, HasSubstr("Needed before training: data.train_file (--train-file) is not set."));
  EXPECT_THAT(out, HasSubstr("LoRA scaling alpha/sqrt(r) = 5.657"));
}

TEST(ConfigCommand, ErrorsNameFieldValueAndRange) {
  EXPECT_THAT(error_of({"config", "--rank", "0"}),
              HasSubstr("adapter.r = 0 is out of range (allowed: 1 <= r <= 4096)"));
  EXPECT_THAT(error_of({"config", "--dropout", "1"}), HasSubstr("adapter.dropout = 1.0 is out of range"));
  EXPECT_THAT(error_of({"config", "--batch-size", "four"}),
              HasSubstr("--batch-size (training.batch_size): expected an integer, got 'four'"));
  EXPECT_THAT(error_of({"config", "--quantization", "nf5"}), HasSubstr("(did you mean 'nf4'?)"));
  EXPECT_THAT(error_of({"config", "--targets", "q,zz"}), HasSubstr("unknown module 'zz'"));
  const std::string dir = test::make_temp_dir("config-cmd-bad");
  write_file_atomic(dir + "/bad.yaml", "training:\n  learnig_rate: 0.1\n");
  EXPECT_THAT(error_of({"config", "-c", dir + "/bad.yaml"}),
              HasSubstr("bad.yaml:2: unknown field 'training.learnig_rate' (did you mean 'learning_rate'?)"));
}

TEST(ConfigCommand, JsonAndYamlAreExclusive) {
  EXPECT_THROW(run_command({"config", "--json", "--yaml"}), CLI::ParseError);
}

std::string write_qwen_model_dir() {
  const std::string dir = test::make_temp_dir("qwen-model");
  write_file_atomic(dir + "/config.json", R"({
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896,
    "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "vocab_size": 151936, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "max_position_embeddings": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16"})");
  return dir;
}

TEST(TrainingPlan, StorageFollowsQuantizationAndRam) {
  const std::string dir = write_qwen_model_dir();
  const ModelConfig model = ModelConfig::from_file(dir + "/config.json");
  constexpr int64_t kGiB = int64_t{1} << 30;
  TrainConfig cfg;
  cfg.training.max_seq_len = 512;
  EXPECT_EQ(plan_storage(cfg, model, 1).storage, WeightStorage::BF16);  // explicit: no RAM check
  cfg.model.quantization = Quantization::NF4;
  EXPECT_EQ(plan_storage(cfg, model, 64 * kGiB).storage, WeightStorage::NF4);
  cfg.model.quantization = Quantization::None;
  EXPECT_EQ(plan_storage(cfg, model, 64 * kGiB).storage, WeightStorage::BF16);  // checkpoint is bfloat16
  cfg.model.quantization = Quantization::Auto;
  const StoragePlan big = plan_storage(cfg, model, 64 * kGiB);
  EXPECT_EQ(big.storage, WeightStorage::BF16);
  EXPECT_EQ(big.estimate.total(),
            estimate_training_memory(model, WeightStorage::BF16, training_shape(cfg)).total());
  // Just enough for nf4 but not for int8.
  const int64_t nf4 = estimate_training_memory(model, WeightStorage::NF4, training_shape(cfg)).total();
  EXPECT_EQ(plan_storage(cfg, model, static_cast<int64_t>(nf4 / kFitMargin) + 1).storage, WeightStorage::NF4);
  try {
    plan_storage(cfg, model, nf4 / 2);
    ADD_FAILURE() << "expected Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("does not fit even in nf4"));
  }
  cfg.hardware.auto_hardware = false;
  EXPECT_EQ(plan_storage(cfg, model, 1).storage, WeightStorage::BF16);

  // The shape follows the config.
  cfg.adapter.method = AdapterMethod::DoRA;
  cfg.adapter.dropout = 0;
  const TrainingShape s = training_shape(cfg);
  EXPECT_TRUE(s.dora);
  EXPECT_FALSE(s.lora_dropout);
  EXPECT_EQ(s.lora_rank, 8);
  EXPECT_EQ(s.batch, 4);
  EXPECT_EQ(s.seq_len, 512);
  EXPECT_EQ(s.targets.size(), 4u);

  HardwareInfo hw;
  hw.available_cpus = 6;
  EXPECT_EQ(plan_threads(cfg, hw), 6);
  cfg.hardware.threads = 3;
  EXPECT_EQ(plan_threads(cfg, hw), 3);
}

TEST(ConfigCommand, ReportsTheModelPlanWhenTheModelIsReadable) {
  const std::string dir = write_qwen_model_dir();
  const json j = json::parse(run_command({"config", "-m", dir, "-q", "nf4", "--json"}));
  const json& m = j["derived"]["model"];
  ASSERT_TRUE(m.is_object()) << j.dump(2);
  EXPECT_EQ(m["family"], "qwen2");
  EXPECT_EQ(m["parameters"], 494032768);
  EXPECT_EQ(m["storage"], "nf4");
  EXPECT_GT(m["estimated_memory_bytes"].get<int64_t>(), 0);
  EXPECT_GE(j["derived"]["threads"].get<int>(), 1);

  const json missing = json::parse(run_command({"config", "-m", dir + "/nope", "--json"}));
  EXPECT_TRUE(missing["derived"]["model"].is_null());
  EXPECT_THAT(missing["derived"]["model_note"].get<std::string>(), HasSubstr("nope"));

  const std::string table = run_command({"config", "-m", dir});
  EXPECT_THAT(table, HasSubstr("(qwen2, 494.0M params): weights as bf16 (model.quantization = bf16)"));
}

TEST(App, RunReturnsExitCodesAndPrintsErrors) {
  std::vector<std::string> args = {"bidora", "config", "--rank", "0"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  testing::internal::CaptureStderr();
  const int rc = run(static_cast<int>(argv.size()), argv.data());
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, 1);
  EXPECT_THAT(err, HasSubstr("error: invalid configuration: adapter.r = 0 is out of range"));
}

}  // namespace
}  // namespace bidora::cli
