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
  register_estimate(app);
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
  // The same estimate function and parts as `bidora estimate`.
  for (WeightStorage st : {WeightStorage::BF16, WeightStorage::NF4, WeightStorage::INT8}) {
    const auto entry = std::find_if(model_catalog().begin(), model_catalog().end(),
                                    [](const CatalogEntry& c) { return c.id == "Qwen/Qwen2.5-0.5B"; });
    const MemoryEstimate e = estimate_training_memory(entry->config, st);
    const json& m = qwen["memory"][storage_name(st)];
    EXPECT_EQ(m["total_bytes"], e.total());
    for (const auto& p : e.parts()) EXPECT_EQ(m[std::string(p.key) + "_bytes"], p.bytes) << p.key;
  }
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

// Plans for the Qwen2.5-0.5B shape on a device with `available` bytes; `set` lists the fields
// the user gave (their origin), everything else is a default.
struct PlanCase {
  ModelConfig model;
  TrainConfig cfg;
  ConfigOrigins origins;
  HardwareInfo hw;
  PlanCase() : model(ModelConfig::from_file(write_qwen_model_dir() + "/config.json")) {
    cfg.training.max_seq_len = 1024;
    hw.logical_cpus = 8, hw.physical_cores = 4, hw.available_cpus = 8, hw.available_physical_cores = 4;
  }
  void set(const std::string& field) { origins[field] = "--flag"; }
  int64_t need(WeightStorage s, int64_t batch, int64_t seq) const {
    TrainingShape shape = training_shape(cfg);
    shape.batch = batch;
    shape.seq_len = seq;
    return estimate_training_memory(model, s, shape).total();
  }
  // The smallest RAM in which `need` bytes fit.
  static int64_t ram_for(int64_t need) {
    return static_cast<int64_t>(static_cast<double>(need) / kFitMargin) + 1;
  }
  TrainingPlan plan(int64_t available) const {
    return plan_training(cfg, origins, model, {"RAM", available}, hw);
  }
};

const PlanChoice& choice(const TrainingPlan& p, const std::string& field) {
  for (const auto& c : p.choices)
    if (c.field == field) return c;
  throw std::runtime_error("no plan choice for " + field);
}

TEST(TrainingPlan, StorageFollowsQuantizationAndRam) {
  PlanCase t;
  constexpr int64_t kGiB = int64_t{1} << 30;
  // Explicit storages are kept whatever the RAM.
  t.cfg.model.quantization = Quantization::NF4;
  t.set("model.quantization");
  EXPECT_EQ(t.plan(64 * kGiB).storage, WeightStorage::NF4);
  t.cfg.model.quantization = Quantization::None;
  EXPECT_EQ(t.plan(64 * kGiB).storage, WeightStorage::BF16);  // the checkpoint is bfloat16
  t.cfg.model.quantization = Quantization::BF16;
  const TrainingPlan explicit_bf16 = t.plan(t.ram_for(t.need(WeightStorage::BF16, 4, 1024)) - 2);
  EXPECT_EQ(explicit_bf16.storage, WeightStorage::BF16);
  EXPECT_EQ(explicit_bf16.batch_size, 2);  // the batch gives way instead

  // auto: the best storage that fits the configured run; the default bf16 behaves the same.
  for (Quantization q : {Quantization::Auto, Quantization::BF16}) {
    t.origins.clear();
    t.cfg.model.quantization = q;
    if (q == Quantization::Auto) t.set("model.quantization");
    const TrainingPlan big = t.plan(64 * kGiB);
    EXPECT_EQ(big.storage, WeightStorage::BF16);
    EXPECT_EQ(big.estimate.total(), t.need(WeightStorage::BF16, 4, 1024));
    EXPECT_TRUE(big.fits);
    EXPECT_FALSE(choice(big, "model.quantization").changed);
    const TrainingPlan int8 = t.plan(t.ram_for(t.need(WeightStorage::INT8, 4, 1024)));
    EXPECT_EQ(int8.storage, WeightStorage::INT8);
    EXPECT_EQ(int8.batch_size, 4);  // storage first: the batch stays
    EXPECT_THAT(choice(int8, "model.quantization").reason, HasSubstr("bf16 needs"));
    EXPECT_EQ(t.plan(t.ram_for(t.need(WeightStorage::NF4, 4, 1024))).storage, WeightStorage::NF4);
  }

  // Without auto-hardware the configuration is used as given, fitting or not.
  t.cfg.hardware.auto_hardware = false;
  t.cfg.model.quantization = Quantization::Auto;
  const TrainingPlan off = t.plan(1);
  EXPECT_EQ(off.storage, WeightStorage::BF16);
  EXPECT_EQ(off.batch_size, 4);
  EXPECT_FALSE(off.fits);
  EXPECT_TRUE(off.error.empty());

  // The shape follows the config.
  t.cfg.adapter.method = AdapterMethod::DoRA;
  t.cfg.adapter.dropout = 0;
  t.cfg.training.optimizer = OptimizerKind::AdamW8bit;
  const TrainingShape s = training_shape(t.cfg);
  EXPECT_TRUE(s.dora);
  EXPECT_EQ(s.dropout, 0.0);
  EXPECT_TRUE(s.adam_8bit);
  EXPECT_EQ(s.lora_rank, 8);
  EXPECT_EQ(s.batch, 4);
  EXPECT_EQ(s.seq_len, 1024);
  EXPECT_EQ(s.targets.size(), 4u);
}

TEST(TrainingPlan, BatchHalvingKeepsTheEffectiveBatch) {
  PlanCase t;
  t.cfg.model.quantization = Quantization::NF4;
  t.set("model.quantization");
  t.cfg.training.batch_size = 8;
  t.cfg.training.gradient_accumulation_steps = 2;
  const TrainingPlan p = t.plan(t.ram_for(t.need(WeightStorage::NF4, 2, 1024)));
  EXPECT_EQ(p.batch_size, 2);  // 8 -> 4 -> 2
  EXPECT_EQ(p.grad_accum, 8);
  EXPECT_EQ(p.batch_size * p.grad_accum, 16);
  EXPECT_EQ(p.max_seq_len, 1024);
  EXPECT_TRUE(p.fits);
  EXPECT_TRUE(p.error.empty());
  EXPECT_EQ(p.estimate.total(), t.need(WeightStorage::NF4, 2, 1024));
  EXPECT_TRUE(choice(p, "training.batch_size").changed);
  EXPECT_TRUE(choice(p, "training.gradient_accumulation_steps").changed);
  EXPECT_FALSE(choice(p, "training.max_seq_len").changed);
  EXPECT_THAT(choice(p, "training.batch_size").reason, HasSubstr("batch 8 needs"));
  EXPECT_THAT(choice(p, "training.batch_size").reason, HasSubstr("effective batch 16 kept"));
  const TrainConfig applied = p.apply(t.cfg);
  EXPECT_EQ(applied.training.batch_size, 2);
  EXPECT_EQ(applied.training.gradient_accumulation_steps, 8);
  EXPECT_EQ(applied.hardware.threads, 4);

  // Only batch sizes that divide the effective batch: 6 x 1 -> 3 x 2 -> 1 x 6 (never 1.5).
  t.cfg.training.batch_size = 6;
  t.cfg.training.gradient_accumulation_steps = 1;
  const TrainingPlan odd = t.plan(t.ram_for(t.need(WeightStorage::NF4, 2, 1024)));
  EXPECT_EQ(odd.batch_size, 1);
  EXPECT_EQ(odd.grad_accum, 6);
  EXPECT_EQ(t.plan(t.ram_for(t.need(WeightStorage::NF4, 3, 1024))).grad_accum, 2);
}

TEST(TrainingPlan, SequenceLengthIsCutOnlyWhenBatchOneDoesNotFit) {
  PlanCase t;
  t.cfg.model.quantization = Quantization::Auto;  // nothing fits at batch 4: nf4, then the batch
  t.set("model.quantization");
  t.cfg.training.max_seq_len = 2048;
  // Batch 1 at 2048 tokens fits: the sequence length stays.
  const TrainingPlan b1 = t.plan(t.ram_for(t.need(WeightStorage::NF4, 1, 2048)));
  EXPECT_EQ(b1.batch_size, 1);
  EXPECT_EQ(b1.grad_accum, 16);
  EXPECT_EQ(b1.max_seq_len, 2048);
  EXPECT_FALSE(choice(b1, "training.max_seq_len").changed);
  // It does not: halved to 512, with the reason.
  const TrainingPlan cut = t.plan(t.ram_for(t.need(WeightStorage::NF4, 1, 512)));
  EXPECT_EQ(cut.batch_size, 1);
  EXPECT_EQ(cut.max_seq_len, 512);
  EXPECT_TRUE(cut.fits);
  EXPECT_THAT(choice(cut, "training.max_seq_len").reason, HasSubstr("batch 1 x 2048 tokens needs"));
  EXPECT_THAT(choice(cut, "training.max_seq_len").reason, HasSubstr("truncated"));
  // Never below 256: then the plan fails, saying nothing is left to change.
  const TrainingPlan none = t.plan(t.need(WeightStorage::NF4, 1, 256) / 2);
  EXPECT_EQ(none.max_seq_len, 256);
  EXPECT_FALSE(none.fits);
  EXPECT_THAT(none.error, HasSubstr("the model does not fit"));
  EXPECT_THAT(none.error, HasSubstr("batch 1 x 256 tokens with nf4 needs about"));
}

TEST(TrainingPlan, ExplicitValuesAreNeverChanged) {
  PlanCase t;
  t.cfg.model.quantization = Quantization::NF4;
  t.set("model.quantization");
  t.set("training.batch_size");
  // The batch is the user's: the sequence length (a default) gives way.
  const TrainingPlan p = t.plan(t.ram_for(t.need(WeightStorage::NF4, 4, 512)));
  EXPECT_EQ(p.batch_size, 4);
  EXPECT_EQ(p.grad_accum, 4);
  EXPECT_EQ(p.max_seq_len, 512);
  // An explicit accumulation also pins the batch (the effective batch could not be kept).
  t.origins.erase("training.batch_size");
  t.set("training.gradient_accumulation_steps");
  EXPECT_EQ(t.plan(t.ram_for(t.need(WeightStorage::NF4, 4, 512))).batch_size, 4);
  // Both pinned: the run cannot fit, and the error names the fields, the need and the RAM.
  t.set("training.batch_size");
  t.set("training.max_seq_len");
  const int64_t ram = t.ram_for(t.need(WeightStorage::NF4, 4, 512));
  const TrainingPlan fail = t.plan(ram);
  EXPECT_FALSE(fail.fits);
  EXPECT_EQ(fail.batch_size, 4);
  EXPECT_EQ(fail.max_seq_len, 1024);
  EXPECT_THAT(fail.error, HasSubstr("model.quantization = nf4 (--flag)"));
  EXPECT_THAT(fail.error, HasSubstr("training.batch_size = 4 (--flag)"));
  EXPECT_THAT(fail.error, HasSubstr("training.gradient_accumulation_steps = 4 (--flag)"));
  EXPECT_THAT(fail.error, HasSubstr("training.max_seq_len = 1024 (--flag)"));
  EXPECT_THAT(fail.error, HasSubstr(format_bytes(t.need(WeightStorage::NF4, 4, 1024))));
  EXPECT_THAT(fail.error, HasSubstr(format_bytes(ram) + " RAM available"));
  for (const auto& c : fail.choices) EXPECT_FALSE(c.changed) << c.field;
}

TEST(TrainingPlan, ThreadsArePhysicalCoresUnlessSet) {
  PlanCase t;  // 4 physical cores, 8 logical CPUs
  EXPECT_EQ(plan_threads(t.cfg, t.hw), 4);
  EXPECT_THAT(choice(t.plan(int64_t{64} << 30), "hardware.threads").reason, HasSubstr("physical cores"));
  t.hw.cpu_quota = 2.5;  // a cgroup quota caps it, rounded up
  EXPECT_EQ(plan_threads(t.cfg, t.hw), 3);
  t.hw.cpu_quota.reset();
  t.hw.available_physical_cores = 0;  // unknown core ids: physical cores, at most the usable CPUs
  t.hw.available_cpus = 2;
  EXPECT_EQ(plan_threads(t.cfg, t.hw), 2);
  t.hw.available_cpus = 8;
  t.cfg.hardware.threads = 3;
  t.set("hardware.threads");
  EXPECT_EQ(plan_threads(t.cfg, t.hw), 3);
  EXPECT_EQ(t.plan(int64_t{64} << 30).threads, 3);
  t.cfg.hardware.threads = 0;
  t.cfg.hardware.auto_hardware = false;  // the usable logical CPUs, as before
  EXPECT_EQ(plan_threads(t.cfg, t.hw), 8);
}

TEST(TrainingPlan, LinesAndJsonCarryEveryChoice) {
  PlanCase t;
  const TrainingPlan p = t.plan(t.ram_for(t.need(WeightStorage::NF4, 1, 1024)));
  const auto lines = plan_lines(p);
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_THAT(lines[0], HasSubstr("Plan: model.quantization = nf4 (changed) — bf16 needs"));
  EXPECT_THAT(lines[1], HasSubstr("Plan: training.batch_size = 1 (changed)"));
  EXPECT_THAT(lines[5], HasSubstr("Plan: model.compute_dtype = f32 — exact float32 products"));
  const json j = plan_json(p);
  EXPECT_EQ(j["storage"], "nf4");
  EXPECT_EQ(j["batch_size"], 1);
  EXPECT_EQ(j["gradient_accumulation_steps"], 16);
  EXPECT_EQ(j["choices"].size(), 6u);
  EXPECT_EQ(j["estimate"]["total_bytes"], p.estimate.total());
  EXPECT_EQ(j["usable_bytes"], p.usable_bytes());
}

TEST(EstimateCommand, JsonHasEveryPartAndThePlan) {
  const std::string dir = write_qwen_model_dir();
  const json j = json::parse(
      run_command({"estimate", "-m", dir, "-q", "nf4", "--method", "dora", "-r", "16", "--targets",
                   "all-linear", "-b", "2", "--max-seq-len", "512", "--optimizer", "adamw_8bit", "--json"}));
  const ModelConfig model = ModelConfig::from_file(dir + "/config.json");
  TrainingShape s;
  s.dora = true;
  s.adam_8bit = true;
  s.batch = 2;
  s.seq_len = 512;
  const MemoryEstimate e = estimate_training_memory(model, WeightStorage::NF4, s);
  EXPECT_EQ(j["estimate"]["total_bytes"], e.total());
  int64_t sum = 0;
  for (const char* k : {"weights", "adapter", "optimizer", "activations", "layer", "attention", "loss",
                        "checkpoint", "scratch", "overhead"}) {
    ASSERT_TRUE(j["estimate"].contains(std::string(k) + "_bytes")) << k;
    sum += j["estimate"][std::string(k) + "_bytes"].get<int64_t>();
  }
  EXPECT_EQ(sum, e.total());
  EXPECT_EQ(j["estimate"]["optimizer_bytes"], e.optimizer);
  EXPECT_EQ(j["parts"].size(), 10u);
  EXPECT_EQ(j["parts"][0]["part"], "weights");
  EXPECT_EQ(j["model"]["parameters"], 494032768);
  EXPECT_EQ(j["model"]["trainable_parameters"], e.trainable_params);
  EXPECT_EQ(j["run"]["storage"], "nf4");
  EXPECT_EQ(j["run"]["method"], "dora");
  EXPECT_EQ(j["run"]["batch_size"], 2);
  EXPECT_EQ(j["run"]["max_seq_len"], 512);
  EXPECT_EQ(j["run"]["optimizer"], "adamw_8bit");
  for (const char* st : {"bf16", "int8", "nf4"}) {
    ASSERT_TRUE(j["storages"].contains(st)) << st;
    EXPECT_EQ(j["storages"][st]["total_bytes"],
              estimate_training_memory(model, *storage_from_string(st), s).total());
  }
  EXPECT_GT(j["available_memory_bytes"].get<int64_t>(), 0);
  EXPECT_EQ(j["plan"]["storage"], "nf4");
  EXPECT_EQ(j["plan"]["choices"].size(), 6u);
  EXPECT_EQ(j["plan"]["choices"][0]["reason"], "model.quantization = nf4 (--quantization)");

  const std::string table = run_command({"estimate", "-m", dir, "-q", "int8"});
  EXPECT_THAT(table, HasSubstr("Memory estimate: " + dir + " (qwen2, 494.0M params)"));
  EXPECT_THAT(table, HasSubstr("│ attention"));
  EXPECT_THAT(table, HasSubstr("Per weight storage (batch 4 x 2048 tokens)"));
  EXPECT_THAT(table, HasSubstr("Auto-hardware plan"));
  EXPECT_THAT(table, HasSubstr("hardware.threads"));
  EXPECT_THAT(error_of({"estimate", "--json"}), HasSubstr("model.name_or_path is not set"));
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
  EXPECT_THAT(table, HasSubstr("(qwen2, 494.0M params): weights as bf16; estimated training memory"));
  EXPECT_THAT(table, HasSubstr("Plan: training.batch_size = 4 — "));
  EXPECT_THAT(table, HasSubstr("Plan: hardware.threads = "));
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
