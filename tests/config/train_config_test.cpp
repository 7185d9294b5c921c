#include "config/train_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <set>

#include <nlohmann/json.hpp>

#include "config/config_fields.h"
#include "core/error.h"
#include "core/files.h"
#include "test_support.h"

namespace bidora {
namespace {

using ::testing::HasSubstr;

// Runs `f`, expecting a bidora::Error, and returns its message.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected bidora::Error";
  return "";
}

TEST(TrainConfigDefaults, MatchThePythonOriginal) {
  const TrainConfig c;
  EXPECT_EQ(c.model.quantization, Quantization::BF16);
  EXPECT_EQ(c.model.compute_dtype, ComputeDtype::F32);
  EXPECT_FALSE(c.model.trust_remote_code);
  EXPECT_EQ(c.adapter.method, AdapterMethod::LoRA);
  EXPECT_EQ(c.adapter.r, 8);
  EXPECT_EQ(c.adapter.alpha, 16.0);
  EXPECT_EQ(c.adapter.dropout, 0.05);
  EXPECT_EQ(c.adapter.targets, (std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj"}));
  EXPECT_TRUE(c.adapter.use_rslora);
  EXPECT_EQ(c.adapter.init, LoraInit::Default);
  EXPECT_EQ(c.training.learning_rate, 2e-4);
  EXPECT_EQ(c.training.epochs, 3);
  EXPECT_EQ(c.training.batch_size, 4);
  EXPECT_EQ(c.training.gradient_accumulation_steps, 4);
  EXPECT_EQ(c.training.warmup_steps, 100);
  EXPECT_EQ(c.training.max_seq_len, 2048);
  EXPECT_EQ(c.training.weight_decay, 0.01);
  EXPECT_EQ(c.training.max_grad_norm, 1.0);
  EXPECT_EQ(c.training.seed, 42);
  EXPECT_EQ(c.training.lr_scheduler, LrScheduler::Cosine);
  EXPECT_EQ(c.training.optimizer, OptimizerKind::AdamW);
  EXPECT_TRUE(c.training.gradient_checkpointing);
  EXPECT_EQ(c.training.save_steps, 500);
  EXPECT_EQ(c.training.logging_steps, 10);
  EXPECT_EQ(c.training.eval_steps, 0);
  EXPECT_EQ(c.training.max_steps, -1);
  EXPECT_EQ(c.training.bidora.lower_steps, 1);
  EXPECT_EQ(c.training.bidora.upper_lr_mult, 1.0);
  EXPECT_EQ(c.data.val_split_ratio, 0.1);
  EXPECT_EQ(c.data.max_samples, 0);
  EXPECT_EQ(c.data.format, DataFormat::Auto);
  EXPECT_FALSE(c.data.packing);
  EXPECT_FALSE(c.data.train_on_prompt);
  EXPECT_FALSE(c.data.skip_bad_lines);
  EXPECT_EQ(c.output.dir, "./output");
  EXPECT_FALSE(c.output.overwrite);
  EXPECT_TRUE(c.hardware.auto_hardware);
  EXPECT_EQ(c.hardware.threads, 0);
  EXPECT_TRUE(validation_errors(c).empty());
}

TEST(TrainConfigDefaults, LoraScaling) {
  AdapterSection a;  // r 8, alpha 16, rsLoRA
  EXPECT_DOUBLE_EQ(lora_scaling(a), 16.0 / std::sqrt(8.0));
  a.use_rslora = false;
  EXPECT_DOUBLE_EQ(lora_scaling(a), 2.0);
}

TEST(TrainConfigFields, EveryStructFieldIsInTheTable) {
  // Changing each field through the table must change the struct: a field missing from the table
  // would silently be ignored by YAML, the CLI and to_yaml.
  const TrainConfig defaults;
  std::set<std::string> paths;
  for (const auto& f : config::config_fields()) {
    EXPECT_TRUE(paths.insert(f.path).second) << "duplicate " << f.path;
    EXPECT_FALSE(f.help.empty()) << f.path;
    EXPECT_FALSE(f.flags.empty()) << f.path;
  }
  EXPECT_EQ(paths.size(), 52u);  // update together with train_config.h

  // JSON leaves (lists count once) == table fields: nothing is emitted that is not in the table.
  std::function<size_t(const nlohmann::json&)> leaves = [&](const nlohmann::json& j) -> size_t {
    if (!j.is_object()) return 1;
    size_t n = 0;
    for (const auto& [k, v] : j.items()) n += leaves(v);
    return n;
  };
  EXPECT_EQ(leaves(to_json(defaults)), 52u);

  // Setting each field to a non-default value through the table changes the struct.
  for (const auto& f : config::config_fields()) {
    TrainConfig c;
    config::FieldValue v = f.get(c);
    switch (f.type) {
      case config::FieldType::Int:
        v = std::get<int64_t>(v) + 1;
        break;
      case config::FieldType::Float:
        v = std::get<double>(v) + 0.25;
        break;
      case config::FieldType::Bool:
        v = !std::get<bool>(v);
        break;
      case config::FieldType::String:
        v = std::get<std::string>(v) + "x";
        break;
      case config::FieldType::Enum:
        v = f.choices.back() == std::get<std::string>(v) ? f.choices.front() : f.choices.back();
        break;
      case config::FieldType::List:
        v = std::vector<std::string>{"down_proj"};
        break;
    }
    f.set(c, v);
    EXPECT_NE(c, defaults) << f.path;
    EXPECT_EQ(config::format_value(f.get(c)), config::format_value(v)) << f.path;
  }
}

TEST(TrainConfigYaml, OverridesOnlyTheGivenFieldsAndRecordsLines) {
  TrainConfig c;
  ConfigOrigins origins;
  apply_yaml(c,
             "model:\n"
             "  name_or_path: Qwen/Qwen2.5-0.5B\n"
             "  quantization: 4bit\n"
             "adapter:\n"
             "  r: 16\n"
             "  targets: [q, v, down]\n"
             "training:\n"
             "  learning_rate: 1e-4\n"
             "  bidora:\n"
             "    lower_steps: 2\n"
             "data:\n"
             "  val_file:\n",
             "cfg.yaml", &origins);
  EXPECT_EQ(c.model.name_or_path, "Qwen/Qwen2.5-0.5B");
  EXPECT_EQ(c.model.quantization, Quantization::NF4);
  EXPECT_EQ(c.adapter.r, 16);
  EXPECT_EQ(c.adapter.targets, (std::vector<std::string>{"q_proj", "v_proj", "down_proj"}));
  EXPECT_EQ(c.training.learning_rate, 1e-4);
  EXPECT_EQ(c.training.bidora.lower_steps, 2);
  EXPECT_EQ(c.data.val_file, "");
  EXPECT_EQ(c.training.epochs, 3);  // untouched
  EXPECT_EQ(origins["adapter.r"], "cfg.yaml:5");
  EXPECT_EQ(origins["training.bidora.lower_steps"], "cfg.yaml:10");
  EXPECT_EQ(origins.count("training.epochs"), 0u);
}

TEST(TrainConfigYaml, AcceptsAliasesAndListForms) {
  TrainConfig c;
  apply_yaml(c,
             "adapter:\n  rank: 32\n  target_modules: all-linear\n"
             "training:\n  num_epochs: 5\n  max_seq_length: 1024\n  lr: 3e-4\n"
             "output:\n  output_dir: out\n",
             "x.yaml");
  EXPECT_EQ(c.adapter.r, 32);
  EXPECT_EQ(c.adapter.targets, kLinearModules);
  EXPECT_EQ(c.training.epochs, 5);
  EXPECT_EQ(c.training.max_seq_len, 1024);
  EXPECT_EQ(c.training.learning_rate, 3e-4);
  EXPECT_EQ(c.output.dir, "out");

  apply_yaml(c, "adapter:\n  targets:\n    - gate_proj\n    - up\n    - gate\n", "x.yaml");
  EXPECT_EQ(c.adapter.targets, (std::vector<std::string>{"gate_proj", "up_proj"}));
}

TEST(TrainConfigYaml, EmptyFileAndEmptySectionKeepDefaults) {
  TrainConfig c;
  apply_yaml(c, "", "empty.yaml");
  apply_yaml(c, "# only a comment\n", "empty.yaml");
  apply_yaml(c, "training:\n", "empty.yaml");
  EXPECT_EQ(c, TrainConfig{});
}

TEST(TrainConfigYaml, UnknownFieldNamesFileLineAndSuggestion) {
  TrainConfig c;
  const std::string msg = error_of([&] {
    apply_yaml(c, "model:\n  name_or_path: m\ntraining:\n  epochs: 2\n  learnig_rate: 0.1\n", "config.yaml");
  });
  EXPECT_THAT(
      msg, HasSubstr("config.yaml:5: unknown field 'training.learnig_rate' (did you mean 'learning_rate'?)"));
  EXPECT_EQ(c, TrainConfig{}) << "a failed load must not change the config";
}

TEST(TrainConfigYaml, UnknownFieldInWrongSectionPointsToTheRightOne) {
  TrainConfig c;
  EXPECT_THAT(error_of([&] { apply_yaml(c, "model:\n  batch_size: 2\n", "c.yaml"); }),
              HasSubstr("c.yaml:2: unknown field 'model.batch_size' (did you mean 'training.batch_size'?)"));
  EXPECT_THAT(error_of([&] { apply_yaml(c, "trainig:\n  epochs: 2\n", "c.yaml"); }),
              HasSubstr("c.yaml:1: unknown section 'trainig' (did you mean 'training'?)"));
  EXPECT_THAT(error_of([&] { apply_yaml(c, "zzz: 1\n", "c.yaml"); }), HasSubstr("sections: model, adapter"));
  EXPECT_THAT(error_of([&] { apply_yaml(c, "epochs: 1\n", "c.yaml"); }),
              HasSubstr("unknown section 'epochs' (did you mean 'training.epochs'?)"));
}

// Fuzzing regression: invalid UTF-8 in a string field was accepted, then neither printed back as
// the same YAML (to_yaml) nor serialised as JSON (nlohmann type_error 316 in to_json().dump()).
TEST(TrainConfigYaml, InvalidUtf8IsRefusedWithFileLineAndOffset) {
  TrainConfig c;
  EXPECT_THAT(error_of([&] { apply_yaml(c, "data:\n  train_file: \xff\xfe.jsonl\n", "u.yaml"); }),
              HasSubstr("u.yaml:2: not valid UTF-8 (byte offset 20)"));
  EXPECT_THAT(error_of([&] { apply_yaml(c, "output:\n  dir: \xed\xa0\x80\n", "u.yaml"); }),  // a surrogate
              HasSubstr("not valid UTF-8"));
  EXPECT_THAT(error_of([&] { apply_yaml(c, "output:\n  dir: x\xe2\x82", "u.yaml"); }),  // truncated
              HasSubstr("not valid UTF-8"));
  EXPECT_EQ(c, TrainConfig{});
  apply_yaml(c, "output:\n  dir: \"caf\xc3\xa9 \xf0\x9f\x98\x80\"\n", "u.yaml");
  EXPECT_EQ(c.output.dir, "caf\xc3\xa9 \xf0\x9f\x98\x80");
  TrainConfig back;
  apply_yaml(back, to_yaml(c), "back.yaml");
  EXPECT_EQ(back, c);
  EXPECT_NO_THROW((void)to_json(c).dump());
}

// Fuzzing regression: yaml-cpp decodes "\_" (U+00A0) and "\N" (U+0085) to single Latin-1 bytes, so
// valid UTF-8 text still gave a string field invalid UTF-8 (to_json().dump() threw type_error 316).
TEST(TrainConfigYaml, EscapesThatYamlCppDecodesToLatin1AreRefused) {
  TrainConfig c;
  EXPECT_THAT(error_of([&] { apply_yaml(c, "data:\n  train_file: \"a\\_b\"\n", "e.yaml"); }),
              HasSubstr("e.yaml:2: data.train_file: the value is not valid UTF-8 after YAML unescaping"));
  EXPECT_THAT(error_of([&] { apply_yaml(c, "adapter:\n  target_modules: [q_proj, \"v\\N\"]\n", "e.yaml"); }),
              HasSubstr("e.yaml:2: adapter.targets: the value is not valid UTF-8"));
  EXPECT_EQ(c, TrainConfig{});
  // The escapes yaml-cpp does encode as UTF-8 still work.
  apply_yaml(c, "data:\n  train_file: \"a\\xa0b\\u00e9\\L\"\n", "e.yaml");
  EXPECT_EQ(c.data.train_file, "a\xc2\xa0" "b\xc3\xa9\xe2\x80\xa8");
  EXPECT_NO_THROW((void)to_json(c).dump());
}

TEST(TrainConfigYaml, WrongTypesNameFileLineFieldAndExpectedType) {
  struct Case {
    std::string yaml, expected;
  };
  const std::vector<Case> cases = {
      {"training:\n  batch_size: four\n", "t.yaml:2: training.batch_size: expected an integer, got 'four'"},
      {"training:\n\n  learning_rate: fast\n",
       "t.yaml:3: training.learning_rate: expected a number, got 'fast'"},
      {"training:\n  epochs: 2.5\n", "t.yaml:2: training.epochs: expected an integer, got '2.5'"},
      {"adapter:\n  use_rslora: maybe\n",
       "t.yaml:2: adapter.use_rslora: expected true or false, got 'maybe'"},
      {"adapter:\n  method: dorra\n",
       "t.yaml:2: adapter.method: expected one of lora, dora, bidora, got 'dorra' (did you mean 'dora'?)"},
      {"adapter:\n  targets: [q, qq]\n", "t.yaml:2: adapter.targets: unknown module 'qq'"},
      {"adapter:\n  r: [1, 2]\n", "t.yaml:2: adapter.r: expected an integer, got a list"},
      {"adapter:\n  r:\n", "t.yaml:2: adapter.r: expected an integer, got an empty value"},
      {"adapter: 3\n", "t.yaml:1: 'adapter' must be a mapping of fields, got a value"},
      {"training:\n  bidora:\n    lower_steps: x\n",
       "t.yaml:3: training.bidora.lower_steps: expected an integer"},
      {"- a\n- b\n", "t.yaml:1: expected a mapping of sections"},
      {"training:\n  epochs: 1\n  epochs: 2\n", "t.yaml:3: 'training.epochs' is set twice"},
      {"adapter:\n  r: 4\n  rank: 8\n", "t.yaml:3: 'adapter.r' is set twice (here as 'rank')"},
      {"training: {epochs: 2\n", "t.yaml:"},  // syntax error
  };
  for (const auto& c : cases) {
    TrainConfig cfg;
    EXPECT_THAT(error_of([&] { apply_yaml(cfg, c.yaml, "t.yaml"); }), HasSubstr(c.expected)) << c.yaml;
  }
}

TEST(TrainConfigYaml, ReportsEveryProblemAtOnce) {
  TrainConfig c;
  const std::string msg = error_of(
      [&] { apply_yaml(c, "training:\n  epochs: x\n  batch_sise: 2\nadapter:\n  r: y\n", "m.yaml"); });
  EXPECT_THAT(msg, HasSubstr("m.yaml:2: training.epochs"));
  EXPECT_THAT(msg, HasSubstr("m.yaml:3: unknown field 'training.batch_sise' (did you mean 'batch_size'?)"));
  EXPECT_THAT(msg, HasSubstr("m.yaml:5: adapter.r"));
}

TEST(TrainConfigYaml, LoadConfigFileNamesMissingFile) {
  EXPECT_THAT(error_of([] { load_config_file("/nonexistent/cfg.yaml"); }),
              HasSubstr("/nonexistent/cfg.yaml"));
}

TEST(TrainConfigOverrides, PrecedenceDefaultsThenYamlThenFlags) {
  const std::string dir = test::make_temp_dir("config");
  const std::string path = dir + "/c.yaml";
  write_file_atomic(path, "training:\n  epochs: 7\n  batch_size: 2\nadapter:\n  r: 4\n");
  ConfigOrigins origins;
  TrainConfig c = load_config_file(path, &origins);
  set_field(c, "training.batch_size", "8", "--batch-size", &origins);
  set_field(c, "adapter.use_rslora", "false", "--no-rslora", &origins);
  EXPECT_EQ(c.training.epochs, 7);      // from YAML
  EXPECT_EQ(c.training.batch_size, 8);  // flag beats YAML
  EXPECT_EQ(c.adapter.r, 4);            // YAML beats default
  EXPECT_FALSE(c.adapter.use_rslora);   // flag beats default
  EXPECT_EQ(c.training.seed, 42);       // default
  EXPECT_EQ(origins["training.epochs"], path + ":2");
  EXPECT_EQ(origins["training.batch_size"], "--batch-size");
  EXPECT_THAT(error_of([&] { set_field(c, "training.batch_size", "big", "--batch-size"); }),
              HasSubstr("--batch-size (training.batch_size): expected an integer, got 'big'"));
}

TEST(TrainConfigValidation, EveryRangeErrorNamesFieldValueAndRange) {
  struct Case {
    std::string path, value, expected;
  };
  const std::vector<Case> cases = {
      {"adapter.r", "0", "adapter.r = 0 is out of range (allowed: 1 <= r <= 4096)"},
      {"adapter.r", "5000", "adapter.r = 5000 is out of range (allowed: 1 <= r <= 4096)"},
      {"adapter.alpha", "0", "adapter.alpha = 0.0 is out of range (allowed: 0 < alpha <= 65536)"},
      {"adapter.dropout", "1", "adapter.dropout = 1.0 is out of range (allowed: 0 <= dropout < 1)"},
      {"adapter.dropout", "-0.1", "adapter.dropout = -0.1 is out of range (allowed: 0 <= dropout < 1)"},
      {"training.learning_rate", "0",
       "training.learning_rate = 0.0 is out of range (allowed: 0 < learning_rate <= 1)"},
      {"training.learning_rate", "2",
       "training.learning_rate = 2.0 is out of range (allowed: 0 < learning_rate <= 1)"},
      {"training.epochs", "0", "training.epochs = 0 is out of range (allowed: 1 <= epochs <= 10000)"},
      {"training.batch_size", "0",
       "training.batch_size = 0 is out of range (allowed: 1 <= batch_size <= 4096)"},
      {"training.gradient_accumulation_steps", "0",
       "training.gradient_accumulation_steps = 0 is out of range"},
      {"training.warmup_steps", "-1",
       "training.warmup_steps = -1 is out of range (allowed: warmup_steps >= 0)"},
      {"training.max_seq_len", "1",
       "training.max_seq_len = 1 is out of range (allowed: 2 <= max_seq_len <= 1048576)"},
      {"training.weight_decay", "1.5",
       "training.weight_decay = 1.5 is out of range (allowed: 0 <= weight_decay <= 1)"},
      {"training.max_grad_norm", "-1",
       "training.max_grad_norm = -1.0 is out of range (allowed: 0 <= max_grad_norm"},
      {"training.seed", "-3", "training.seed = -3 is out of range (allowed: 0 <= seed <= 4294967295)"},
      {"training.adam_beta2", "1",
       "training.adam_beta2 = 1.0 is out of range (allowed: 0 <= adam_beta2 < 1)"},
      {"training.adam_epsilon", "0",
       "training.adam_epsilon = 0.0 is out of range (allowed: 0 < adam_epsilon <= 1)"},
      {"training.logging_steps", "0",
       "training.logging_steps = 0 is out of range (allowed: logging_steps >= 1)"},
      {"training.max_steps", "-2", "training.max_steps = -2 is out of range (allowed: max_steps >= -1)"},
      {"training.max_steps", "0", "training.max_steps = 0 is not allowed (allowed: -1 to run all epochs"},
      {"training.bidora.lower_steps", "0",
       "training.bidora.lower_steps = 0 is out of range (allowed: 1 <= lower_steps"},
      {"training.bidora.upper_lr_mult", "0",
       "training.bidora.upper_lr_mult = 0.0 is out of range (allowed: 0 <"},
      {"data.val_split_ratio", "0.6",
       "data.val_split_ratio = 0.6 is out of range (allowed: 0 <= val_split_ratio <= 0.5)"},
      {"data.max_samples", "-1", "data.max_samples = -1 is out of range (allowed: max_samples >= 0)"},
      {"hardware.threads", "-1", "hardware.threads = -1 is out of range (allowed: 0 <= threads <= 4096)"},
      {"adapter.targets", "", "adapter.targets = [] is empty (allowed: one or more of q_proj"},
      {"model.trust_remote_code", "true", "model.trust_remote_code = true is not supported (allowed: false"},
  };
  for (const auto& c : cases) {
    TrainConfig cfg;
    set_field(cfg, c.path, c.value, "test");
    const auto errors = validation_errors(cfg);
    ASSERT_EQ(errors.size(), 1u) << c.path << "=" << c.value;
    EXPECT_THAT(errors[0], HasSubstr(c.expected));
    EXPECT_THAT(error_of([&] { validate(cfg); }), HasSubstr(c.expected));
  }
}

TEST(TrainConfigValidation, BoundariesAreAccepted) {
  TrainConfig c;
  for (const auto& [path, value] :
       std::vector<std::pair<std::string, std::string>>{{"adapter.r", "1"},
                                                        {"adapter.r", "4096"},
                                                        {"adapter.dropout", "0"},
                                                        {"training.learning_rate", "1"},
                                                        {"training.max_steps", "1"},
                                                        {"training.max_grad_norm", "0"},
                                                        {"data.val_split_ratio", "0.5"}}) {
    set_field(c, path, value, "test");
    EXPECT_TRUE(validation_errors(c).empty()) << path << "=" << value;
  }
}

TEST(TrainConfigValidation, CrossFieldRules) {
  TrainConfig c;
  c.adapter.method = AdapterMethod::BiDoRA;
  c.data.val_split_ratio = 0;
  auto errors = validation_errors(c);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("data.val_split_ratio = 0 with adapter.method = bidora"));
  c.data.val_file = "val.jsonl";
  EXPECT_TRUE(validation_errors(c).empty());
  c.data.train_file = "val.jsonl";
  errors = validation_errors(c);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("data.val_file = val.jsonl is the training file"));
}

TEST(TrainConfigValidation, CollectsAllErrors) {
  TrainConfig c;
  c.adapter.r = 0;
  c.training.batch_size = 0;
  EXPECT_EQ(validation_errors(c).size(), 2u);
  const std::string msg = error_of([&] { validate(c); });
  EXPECT_THAT(msg, HasSubstr("adapter.r = 0"));
  EXPECT_THAT(msg, HasSubstr("training.batch_size = 0"));
}

TEST(TrainConfigValidation, MissingForTraining) {
  TrainConfig c;
  EXPECT_EQ(missing_for_training(c).size(), 2u);
  set_field(c, "model.name_or_path", "models/qwen", "test");
  set_field(c, "data.train_file", "train.jsonl", "test");
  EXPECT_TRUE(missing_for_training(c).empty());
}

TEST(TrainConfigYaml, ToYamlRoundTrips) {
  TrainConfig c;
  EXPECT_EQ(
      [&] {
        TrainConfig back;
        apply_yaml(back, to_yaml(c), "roundtrip.yaml");
        return back;
      }(),
      c);

  // Every field changed, with strings that need quoting.
  c.model.name_or_path = "/models/my: model #1 \"quoted\" 'single' ünïcödé 模型";
  c.model.quantization = Quantization::Auto;
  c.model.compute_dtype = ComputeDtype::BF16;
  c.adapter.method = AdapterMethod::BiDoRA;
  c.adapter.r = 64;
  c.adapter.alpha = 128.5;
  c.adapter.dropout = 0.1;
  c.adapter.targets = {"k_proj", "down_proj"};
  c.adapter.use_rslora = false;
  c.adapter.init = LoraInit::Gaussian;
  c.training.learning_rate = 1.0 / 3.0 * 1e-4;  // needs all 17 digits to round-trip
  c.training.epochs = 10;
  c.training.adam_epsilon = 1e-12;
  c.training.max_steps = 1000;
  c.training.lr_scheduler = LrScheduler::Constant;
  c.training.optimizer = OptimizerKind::AdamW8bit;
  c.training.gradient_checkpointing = false;
  c.training.bidora.upper_lr_mult = 2.0;
  c.training.bidora.orth_reg = 0;
  c.data.train_file = "yes";  // a YAML 1.1 boolean word as a string
  c.data.val_file = "";
  c.data.format = DataFormat::PromptCompletion;
  c.data.packing = true;
  c.output.dir = "~";
  c.hardware.threads = 2;
  const std::string yaml = to_yaml(c);
  TrainConfig back;
  apply_yaml(back, yaml, "roundtrip.yaml");
  EXPECT_EQ(back, c) << yaml;
  EXPECT_EQ(back.training.learning_rate, c.training.learning_rate);

  c.adapter.targets.clear();
  TrainConfig back2;
  apply_yaml(back2, to_yaml(c), "roundtrip.yaml");
  EXPECT_TRUE(back2.adapter.targets.empty());
}

TEST(TrainConfigJson, NestedSectionsWithTypedValues) {
  const nlohmann::json j = to_json(TrainConfig{});
  EXPECT_EQ(j["adapter"]["r"], 8);
  EXPECT_EQ(j["adapter"]["targets"], nlohmann::json({"q_proj", "k_proj", "v_proj", "o_proj"}));
  EXPECT_EQ(j["model"]["quantization"], "bf16");
  EXPECT_EQ(j["training"]["learning_rate"], 2e-4);
  EXPECT_EQ(j["training"]["bidora"]["lower_steps"], 1);
  EXPECT_EQ(j["adapter"]["use_rslora"], true);
  EXPECT_EQ(j["output"]["dir"], "./output");
}

TEST(TrainConfigExample, ExampleConfigLoadsAndValidates) {
  ConfigOrigins origins;
  const TrainConfig c = load_config_file(test::source_path("examples/configs/qwen-lora.yaml"), &origins);
  EXPECT_TRUE(validation_errors(c).empty());
  EXPECT_EQ(c.model.name_or_path, "Qwen/Qwen2.5-0.5B-Instruct");
  EXPECT_FALSE(origins.empty());
}

TEST(ConfigFields, DidYouMean) {
  const std::vector<std::string> words = {"learning_rate", "batch_size", "epochs"};
  EXPECT_EQ(config::did_you_mean("learnig_rate", words), "learning_rate");
  EXPECT_EQ(config::did_you_mean("Batch-Size", words).value_or(""), "");  // exact after normalising: no hint
  EXPECT_EQ(config::did_you_mean("epcohs", words), "epochs");             // transposition = 1 edit
  EXPECT_EQ(config::did_you_mean("zzz", words), std::nullopt);
}

TEST(ConfigFields, ParseValueEdgeCases) {
  std::string why;
  const auto* lr = config::find_field("training.learning_rate");
  const auto* r = config::find_field("adapter.r");
  const auto* q = config::find_field("model.quantization");
  ASSERT_TRUE(lr && r && q);
  EXPECT_EQ(std::get<double>(*config::parse_value(*lr, " 2e-4 ", why)), 2e-4);
  EXPECT_EQ(std::get<double>(*config::parse_value(*lr, "+1", why)), 1.0);
  EXPECT_FALSE(config::parse_value(*lr, "nan", why));
  EXPECT_FALSE(config::parse_value(*lr, "inf", why));
  EXPECT_FALSE(config::parse_value(*lr, "1e400", why));
  EXPECT_FALSE(config::parse_value(*r, "99999999999999999999", why));
  EXPECT_FALSE(config::parse_value(*r, "", why));
  EXPECT_EQ(std::get<std::string>(*config::parse_value(*q, "BFloat16", why)), "bf16");
  EXPECT_EQ(std::get<std::string>(*config::parse_value(*q, "8bit", why)), "int8");
}

}  // namespace
}  // namespace bidora
