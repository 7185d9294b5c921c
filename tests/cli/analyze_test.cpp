// `bidora analyze` as a user runs it (the executable, on adapters written by write_peft_adapter
// over examples/tiny-qwen2): exit codes, table rows, the JSON numbers against the library, the SVG
// read back through a strict XML parser; a training output directory expanded to its checkpoints;
// the error messages. Then the scatter plot itself on points with known positions, NaN, escaping.
#include <fcntl.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "adapters/peft_io.h"
#include "adapters/weight_decomposition.h"
#include "cli/analysis_plot.h"
#include "core/files.h"
#include "model/weights.h"
#include "strict_xml.h"
#include "test_support.h"

namespace bidora::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::Node;
using test::StrictXml;
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

std::string tiny_model_dir() {
  return test::source_path("examples/tiny-qwen2");
}

const std::vector<LayerWeights>& tiny_layers() {
  static const auto model = ModelWeights::load(tiny_model_dir(), LoadOptions(WeightStorage::BF16));
  return model->layers();
}

// A trained-looking adapter: random A, B scaled by `b_scale` (0: PEFT's untrained B = 0) and, for
// DoRA, magnitudes moved by up to ±10%.
AdapterSet make_adapter(LoraVariant method, std::vector<LinearKind> targets, uint32_t seed, float b_scale) {
  AdapterConfig cfg;
  cfg.method = method;
  cfg.r = 4;
  cfg.alpha = 8;
  cfg.targets = std::move(targets);
  AdapterSet set(cfg, tiny_layers(), seed);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (LoraLayer* l : set.all()) {
    for (float& b : l->B) b = b_scale * u(gen);
    for (float& m : l->m) m *= 1.0f + 0.1f * u(gen);
  }
  return set;
}

const std::vector<LinearKind> kAll = {LinearKind::Q,    LinearKind::K,  LinearKind::V,   LinearKind::O,
                                      LinearKind::Gate, LinearKind::Up, LinearKind::Down};

// Every point marker of the plot, by module.
std::vector<const Node*> markers(const Node& svg, const std::string& module) {
  const Node* g = test::by_id(svg, "points-" + module);
  if (!g) return {};
  std::vector<const Node*> out;
  for (const Node& c : g->children) out.push_back(&c);
  return out;
}

TEST(AnalyzeCommand, OneDoraAdapterEndToEnd) {
  const std::string dir = test::make_temp_dir("analyze-dora");
  const AdapterSet set = make_adapter(LoraVariant::DoRA, kAll, 7, 0.05f);
  write_peft_adapter(dir + "/adapter", set, tiny_model_dir());
  const Finished f = run_bidora({"analyze", "-a", dir + "/adapter", "-m", tiny_model_dir(), "--json",
                                 dir + "/out.json", "--plot", dir + "/plot.svg", "--threads", "1"},
                                dir);
  ASSERT_EQ(f.exit_code, 0) << f.out << f.err;
  EXPECT_EQ(f.err, "");
  EXPECT_THAT(f.out, HasSubstr("dora"));
  EXPECT_THAT(f.out, Not(HasSubstr("Checkpoint")));  // one adapter: no checkpoint column
  // One table row per adapted linear.
  for (int layer = 0; layer < 2; ++layer)
    for (LinearKind k : kAll)
      EXPECT_THAT(f.out, HasSubstr(fmt::format("│ {:>5} │ {:<9} │", layer, linear_name(k))))
          << layer << " " << linear_name(k);
  EXPECT_THAT(f.out, HasSubstr("│ all       │     14 │"));
  EXPECT_THAT(f.out, HasSubstr("DoRA paper: full fine-tuning shows a negative slope of ΔM on ΔD, LoRA a "
                               "positive one"));
  EXPECT_THAT(f.out, HasSubstr("Plot: " + dir + "/plot.svg"));

  // The JSON numbers are the library's.
  const json j = json::parse(read_file(dir + "/out.json"));
  const auto points = decompose_adapter(set, tiny_layers());
  ASSERT_EQ(j["points"].size(), points.size());
  std::vector<double> x, y;
  for (size_t i = 0; i < points.size(); ++i) {
    const json& p = j["points"][i];
    EXPECT_EQ(p["layer"], points[i].layer);
    EXPECT_EQ(p["module"], linear_name(points[i].kind));
    EXPECT_EQ(p["learned_magnitude"], true);
    EXPECT_NEAR(p["delta_m"].get<double>(), points[i].delta_m, 1e-12 * points[i].delta_m);
    EXPECT_NEAR(p["delta_d"].get<double>(), points[i].delta_d, 1e-12 * points[i].delta_d);
    EXPECT_GT(points[i].delta_d, 1e-4);
    x.push_back(points[i].delta_d);
    y.push_back(points[i].delta_m);
  }
  const LineFit all = fit_line(x, y);
  ASSERT_TRUE(all.slope);
  EXPECT_NEAR(j["fits"]["all"]["slope"].get<double>(), *all.slope, 1e-9 * std::abs(*all.slope));
  EXPECT_EQ(j["fits"]["all"]["points"], 14);
  EXPECT_EQ(j["fits"]["q_proj"]["points"], 2);
  EXPECT_EQ(j["adapters"][0]["method"], "dora");
  EXPECT_EQ(j["storage"], "bf16");
  EXPECT_THAT(j["interpretation"].get<std::string>(), HasSubstr(fmt::format("k = {:.4g}", *all.slope)));

  // The plot: well-formed, one marker per point, a fitted line per module (2 points each).
  const Node svg = StrictXml::parse(read_file(dir + "/plot.svg"));
  EXPECT_EQ(svg.name, "svg");
  for (LinearKind k : kAll) {
    EXPECT_EQ(markers(svg, linear_name(k)).size(), 2u) << linear_name(k);
    EXPECT_NE(test::by_id(svg, std::string("fit-") + linear_name(k)), nullptr) << linear_name(k);
  }
  EXPECT_THAT(test::by_id(svg, "x-title")->text, HasSubstr("ΔD"));
  EXPECT_THAT(test::by_id(svg, "y-title")->text, HasSubstr("ΔM"));
}

TEST(AnalyzeCommand, TrainingOutputDirectoryExpandsToCheckpointsInStepOrder) {
  const std::string dir = test::make_temp_dir("analyze-run");
  const std::string run = dir + "/run";
  const std::vector<LinearKind> qv = {LinearKind::Q, LinearKind::V};
  // Steps 2 and 10 (numeric, not name order), final_model; an incomplete checkpoint (no
  // trainer_state.json) and best_model are not analysed.
  const std::pair<const char*, float> dirs[] = {{"checkpoint-10", 0.02f},
                                                {"checkpoint-2", 0.01f},
                                                {"checkpoint-5", 0.5f},
                                                {"best_model", 0.5f},
                                                {"final_model", 0.03f}};
  uint32_t seed = 1;
  for (const auto& [name, scale] : dirs) {
    write_peft_adapter(run + "/" + name, make_adapter(LoraVariant::LoRA, qv, seed++, scale),
                       tiny_model_dir());
    if (std::string(name) != "checkpoint-5" && std::string(name).starts_with("checkpoint-"))
      write_file_atomic(run + "/" + name + "/trainer_state.json", "{}\n");
  }
  const Finished f = run_bidora({"analyze", "--adapter", run + "/", "-m", tiny_model_dir(), "--modules",
                                 "q_proj", "--json", dir + "/o.json"},
                                dir);
  ASSERT_EQ(f.exit_code, 0) << f.out << f.err;
  EXPECT_THAT(f.out, HasSubstr("│ Checkpoint"));
  const size_t c2 = f.out.find("│ checkpoint-2  │     0 │ q_proj │"),
               c10 = f.out.find("│ checkpoint-10 │     0 │ q_proj │"),
               fin = f.out.find("│ final_model   │     1 │");
  ASSERT_NE(c2, std::string::npos) << f.out;
  ASSERT_NE(c10, std::string::npos) << f.out;
  ASSERT_NE(fin, std::string::npos) << f.out;
  EXPECT_LT(c2, c10);
  EXPECT_LT(c10, fin);
  EXPECT_THAT(f.out, Not(HasSubstr("checkpoint-5")));
  EXPECT_THAT(f.out, Not(HasSubstr("best_model")));
  EXPECT_THAT(f.out, Not(HasSubstr("v_proj")));  // --modules q_proj
  EXPECT_THAT(f.out, HasSubstr("│ q_proj │      6 │"));

  const json j = json::parse(read_file(dir + "/o.json"));
  ASSERT_EQ(j["adapters"].size(), 3u);
  EXPECT_EQ(j["adapters"][0]["step"], 2);
  EXPECT_EQ(j["adapters"][1]["step"], 10);
  EXPECT_TRUE(j["adapters"][2]["step"].is_null());
  EXPECT_EQ(j["adapters"][2]["label"], "final_model");
  EXPECT_EQ(j["points"].size(), 6u);
  // Larger B, larger change: the checkpoints' ΔD grow with the scale they were made with.
  EXPECT_LT(j["points"][0]["delta_d"].get<double>(), j["points"][2]["delta_d"].get<double>());
  EXPECT_LT(j["points"][2]["delta_d"].get<double>(), j["points"][4]["delta_d"].get<double>());

  // Default plot location: the directory given; one marker shape per checkpoint in the legend.
  const Node svg = StrictXml::parse(read_file(run + "/weight_decomposition.svg"));
  EXPECT_EQ(markers(svg, "q_proj").size(), 6u);
  EXPECT_TRUE(markers(svg, "v_proj").empty());
  const auto legend = test::find_all(svg, [](const Node& n) { return n.attr("class") == "legend-sources"; });
  ASSERT_EQ(legend.size(), 1u);
  std::vector<std::string> labels;
  for (const Node& c : legend[0]->children)
    if (c.name == "text") labels.push_back(c.text);
  EXPECT_EQ(labels, (std::vector<std::string>{"checkpoint-2", "checkpoint-10", "final_model"}));
}

TEST(AnalyzeCommand, UntrainedAdapterHasAnUndefinedSlope) {
  const std::string dir = test::make_temp_dir("analyze-zero");
  write_peft_adapter(dir + "/zero", make_adapter(LoraVariant::LoRA, kAll, 3, 0.0f), tiny_model_dir());
  const Finished f =
      run_bidora({"analyze", "-a", dir + "/zero", "-m", tiny_model_dir(), "--json", dir + "/z.json"}, dir);
  ASSERT_EQ(f.exit_code, 0) << f.out << f.err;
  EXPECT_THAT(f.out, HasSubstr("│ all       │     14 │ undefined (ΔD constant) │"));
  EXPECT_THAT(f.out, HasSubstr("Here, over all modules, undefined: every point has the same ΔD"));
  EXPECT_THAT(f.out, Not(HasSubstr("nan")));
  const json j = json::parse(read_file(dir + "/z.json"));
  EXPECT_TRUE(j["fits"]["all"]["slope"].is_null());
  for (const json& p : j["points"]) {
    EXPECT_EQ(p["delta_m"], 0.0);
    EXPECT_EQ(p["delta_d"], 0.0);
  }
  const Node svg = StrictXml::parse(read_file(dir + "/zero/weight_decomposition.svg"));
  EXPECT_EQ(test::by_id(svg, "fit-q_proj"), nullptr);
  EXPECT_THAT(test::by_id(svg, "subtitle")->text, HasSubstr("k undefined (ΔD constant)"));
}

TEST(AnalyzeCommand, ErrorsNameTheDirectoryAndExitNonZero) {
  const std::string dir = test::make_temp_dir("analyze-errors");
  const auto expect_error = [&](const std::vector<std::string>& args, const std::string& message) {
    const Finished f = run_bidora(args, dir);
    EXPECT_EQ(f.exit_code, 1) << f.out << f.err;
    EXPECT_THAT(f.err, HasSubstr(message));
  };
  expect_error({"analyze", "-a", dir + "/nope", "-m", tiny_model_dir()},
               "error: --adapter " + dir + "/nope: no such directory");
  fs::create_directories(dir + "/empty");
  expect_error({"analyze", "-a", dir + "/empty", "-m", tiny_model_dir()},
               "error: --adapter " + dir +
                   "/empty: neither a PEFT adapter directory (no adapter_config.json) nor a training output "
                   "directory");

  write_peft_adapter(dir + "/qv", make_adapter(LoraVariant::DoRA, {LinearKind::Q, LinearKind::V}, 4, 0.01f),
                     tiny_model_dir());
  expect_error({"analyze", "-a", dir + "/qv", "-m", tiny_model_dir(), "--modules", "k_proj"},
               "error: " + dir + "/qv: adapts none of --modules k_proj (its target_modules: q_proj, v_proj)");
  expect_error({"analyze", "-a", dir + "/qv", "-m", tiny_model_dir(), "--modules", "q_proj,attn"},
               "error: --modules: 'attn' is not one of q_proj");
  expect_error({"analyze", "-a", dir + "/qv", "-m", tiny_model_dir(), "-q", "fp8"},
               "error: --quantization: 'fp8' is not one of");

  // An adapter that does not match the model: its config says r = 2, its tensors have r = 4.
  fs::copy(dir + "/qv", dir + "/mismatch");
  std::string cfg = read_file(dir + "/mismatch/adapter_config.json");
  cfg.replace(cfg.find("\"r\": 4"), 6, "\"r\": 2");
  write_file_atomic(dir + "/mismatch/adapter_config.json", cfg);
  expect_error({"analyze", "-a", dir + "/mismatch", "-m", tiny_model_dir()},
               dir + "/mismatch/adapter_model.safetensors: tensor ");
  // Nothing was written for the failed runs.
  EXPECT_FALSE(fs::exists(dir + "/qv/weight_decomposition.svg"));
}

// ---- the plot on its own ----

DecompositionSample sample(std::string source, int64_t layer, LinearKind k, double dd, double dm) {
  DecompositionSample s;
  s.source = std::move(source);
  s.point.layer = layer;
  s.point.kind = k;
  s.point.delta_d = dd;
  s.point.delta_m = dm;
  return s;
}

std::pair<double, double> centre(const Node& n) {
  if (n.name == "circle") return {n.num("cx"), n.num("cy")};
  throw std::runtime_error("not a circle: " + n.name);
}

TEST(AnalysisPlot, FittedLineEndsOnTheExtremePoints) {
  // q_proj exactly on y = −2x + 1: the line's ends are the markers of the smallest and largest ΔD.
  std::vector<DecompositionSample> s;
  for (int i = 0; i < 4; ++i) s.push_back(sample("a", i, LinearKind::Q, 0.1 * (i + 1), 1 - 0.2 * (i + 1)));
  s.push_back(sample("a", 0, LinearKind::V, 0.25, 0.5));
  const Node svg = StrictXml::parse(weight_decomposition_svg(s, "t"));
  const auto q = markers(svg, "q_proj");
  ASSERT_EQ(q.size(), 4u);
  const Node* line = test::by_id(svg, "fit-q_proj");
  ASSERT_NE(line, nullptr);
  const auto [x0, y0] = centre(*q[0]);
  const auto [x3, y3] = centre(*q[3]);
  EXPECT_NEAR(line->num("x1"), x0, 0.051);
  EXPECT_NEAR(line->num("y1"), y0, 0.051);
  EXPECT_NEAR(line->num("x2"), x3, 0.051);
  EXPECT_NEAR(line->num("y2"), y3, 0.051);
  EXPECT_LT(x0, x3);  // ΔD grows to the right
  EXPECT_LT(y0, y3);  // ΔM falls: the first point is higher on the page (smaller y pixel)
  // v_proj: one point, no line; its legend says why.
  EXPECT_EQ(test::by_id(svg, "fit-v_proj"), nullptr);
  EXPECT_THAT(
      test::find_all(*test::by_id(svg, "legend-v_proj"), [](const Node& n) { return n.name == "text"; })
          .at(0)
          ->text,
      HasSubstr("k undefined (< 2 points)"));
  EXPECT_THAT(test::by_id(svg, "subtitle")->text, HasSubstr("5 points"));
}

TEST(AnalysisPlot, NonFiniteEmptyAndEscapedInput) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<DecompositionSample> s = {
      sample("<ckpt & \"1\">", 0, LinearKind::Q, 0.1, 0.2),
      sample("<ckpt & \"1\">", 1, LinearKind::Q, nan, 0.3),
      sample("b\x01\xff", 0, LinearKind::Q, 0.2, std::numeric_limits<double>::infinity()),
      sample("b\x01\xff", 1, LinearKind::Q, 0.3, 0.1)};
  const std::string doc = weight_decomposition_svg(s, "title <&>");
  const Node svg = StrictXml::parse(doc);
  EXPECT_THAT(doc, Not(HasSubstr("nan")));
  EXPECT_THAT(doc, Not(HasSubstr("inf")));
  EXPECT_EQ(test::by_id(svg, "title")->text, "title <&>");
  EXPECT_THAT(test::by_id(svg, "subtitle")->text, HasSubstr("2 non-finite points not drawn"));
  const auto q = markers(svg, "q_proj");
  ASSERT_EQ(q.size(), 2u);
  ASSERT_EQ(q[0]->children.size(), 1u);
  EXPECT_EQ(q[0]->children[0].text, "layer 0 q_proj · <ckpt & \"1\">: ΔD = 0.1, ΔM = 0.2");
  EXPECT_NE(test::by_id(svg, "fit-q_proj"), nullptr);  // the two finite points still give a line

  const Node empty = StrictXml::parse(weight_decomposition_svg({}, "nothing"));
  const auto msg = test::find_all(empty, [](const Node& n) { return n.attr("class") == "message"; });
  ASSERT_EQ(msg.size(), 1u);
  EXPECT_EQ(msg[0]->text, "no data");
}

TEST(AnalysisPlot, LongTitlesAndLabelsAreShortenedAtCharacterBoundaries) {
  std::string umlauts;
  for (int i = 0; i < 60; ++i) umlauts += "ü";  // 2 bytes each: a cut in the middle would be invalid UTF-8
  const std::string title = "Weight decomposition · model · " + umlauts + "/final_model";
  const std::vector<DecompositionSample> s = {
      sample(std::string(30, 'x') + umlauts + "/checkpoint-20", 0, LinearKind::Q, 0.1, 0.2),
      sample("final_model", 0, LinearKind::Q, 0.2, 0.1)};
  const Node svg = StrictXml::parse(weight_decomposition_svg(s, title));  // throws on invalid UTF-8
  ASSERT_FALSE(svg.children.empty());
  EXPECT_EQ(svg.children[0].name, "title");
  EXPECT_EQ(svg.children[0].text, title);  // the document title keeps all of it
  const std::string shown = test::by_id(svg, "title")->text;
  EXPECT_LT(shown.size(), 82u);
  EXPECT_TRUE(shown.starts_with("Weight decomposition · model · ")) << shown;
  EXPECT_TRUE(shown.ends_with("ü/final_model")) << shown;
  EXPECT_NE(shown.find("ü…ü"), std::string::npos) << shown;  // cut in the middle, between characters
  const auto legend = test::find_all(svg, [](const Node& n) { return n.attr("class") == "legend-sources"; });
  ASSERT_EQ(legend.size(), 1u);
  std::vector<std::string> labels;
  for (const Node& c : legend[0]->children)
    if (c.name == "text") labels.push_back(c.text);
  ASSERT_EQ(labels.size(), 2u);
  EXPECT_TRUE(labels[0].starts_with("…") && labels[0].ends_with("/checkpoint-20")) << labels[0];
  EXPECT_LE(labels[0].size(), 31u);
  EXPECT_EQ(labels[1], "final_model");
}

}  // namespace
}  // namespace bidora::cli
