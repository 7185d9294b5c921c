// `bidora analyze`: the DoRA paper's weight-decomposition analysis (bidora-algorithm.md §6) of
// one or more adapters: per adapted linear the magnitude change ΔM and the direction change ΔD
// against the pretrained weight, per module kind the least-squares slope of ΔM on ΔD (negative for
// full fine-tuning, positive for LoRA), and a scatter plot. A training output directory stands
// for its checkpoints in step order followed by final_model, so one run gives the paper's
// points from several intermediate checkpoints.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "adapters/peft_io.h"
#include "adapters/weight_decomposition.h"
#include "cli/analysis_plot.h"
#include "cli/commands.h"
#include "cli/table.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/files.h"
#include "train/checkpoint.h"

namespace bidora::cli {
namespace {

namespace fs = std::filesystem;

constexpr const char* kAdapterConfig = "adapter_config.json";
constexpr const char* kPlotFile = "weight_decomposition.svg";

struct Options {
  std::vector<std::string> adapters;
  std::string model;
  std::string quantization = "bf16";
  std::string plot;
  bool no_plot = false;
  std::string json;
  std::string modules;
  int threads = 0;
};

// One adapter directory to analyse.
struct Source {
  std::string label;  // how tables and the plot name it
  std::string dir;
  std::optional<int64_t> step;  // checkpoint-<step>
};

std::string trim_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// --adapter DIR: a PEFT adapter directory, or a training output directory standing for its
// complete checkpoint-<step>/ directories (by step) and then final_model/. best_model/ is left
// out: it is a copy of one of the checkpoints.
std::vector<Source> expand(const std::string& arg) {
  const std::string dir = trim_slashes(arg);
  std::error_code ec;
  BIDORA_CHECK(fs::exists(dir, ec), "--adapter {}: no such directory", dir);
  BIDORA_CHECK(fs::is_directory(dir, ec), "--adapter {}: not a directory", dir);
  if (fs::exists(fs::path(dir) / kAdapterConfig, ec)) return {{dir, dir, std::nullopt}};
  std::vector<Source> out;
  for (const auto& [step, path] : train::list_checkpoints(dir))
    out.push_back({fmt::format("{}/{}", dir, fs::path(path).filename().string()), path, step});
  const fs::path final_dir = fs::path(dir) / "final_model";
  if (fs::exists(final_dir / kAdapterConfig, ec))
    out.push_back({dir + "/final_model", final_dir.string(), std::nullopt});
  BIDORA_CHECK(!out.empty(),
               "--adapter {}: neither a PEFT adapter directory (no {}) nor a training output directory (no "
               "checkpoint-<step>/ or final_model/)",
               dir, kAdapterConfig);
  return out;
}

// Labels without the directory part they all share: "out/run/checkpoint-20", "out/run/final_model"
// -> "checkpoint-20", "final_model".
void shorten_labels(std::vector<Source>& sources) {
  if (sources.size() < 2) return;
  std::string common = sources[0].label;
  for (const Source& s : sources) {
    size_t n = 0;
    while (n < common.size() && n < s.label.size() && common[n] == s.label[n]) ++n;
    common.resize(n);
  }
  const size_t slash = common.rfind('/');
  if (slash == std::string::npos) return;
  for (const Source& s : sources)
    if (s.label.size() <= slash + 1) return;  // one label would become empty
  for (Source& s : sources) s.label.erase(0, slash + 1);
}

std::vector<LinearKind> parse_modules(const std::string& text) {
  std::vector<LinearKind> kinds;
  std::string s = text;
  std::replace(s.begin(), s.end(), ',', ' ');
  std::istringstream in(s);
  for (std::string name; in >> name;) {
    const auto k = linear_kind_from_name(name);
    BIDORA_CHECK(
        k.has_value(),
        "--modules: '{}' is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj", name);
    if (std::find(kinds.begin(), kinds.end(), *k) == kinds.end()) kinds.push_back(*k);
  }
  BIDORA_CHECK(text.empty() || !kinds.empty(), "--modules: no module names in '{}'", text);
  return kinds;
}

std::string target_names(const AdapterConfig& cfg) {
  std::string out;
  for (LinearKind k : cfg.targets) out += (out.empty() ? "" : ", ") + std::string(linear_name(k));
  return out;
}

// "q_proj, v_proj in 24 layers"
std::string describe_linears(const std::vector<DecompositionPoint>& points) {
  std::array<bool, kNumLinearKinds> kinds{};
  std::vector<int64_t> layers;
  for (const auto& p : points) {
    kinds[static_cast<size_t>(p.kind)] = true;
    if (std::find(layers.begin(), layers.end(), p.layer) == layers.end()) layers.push_back(p.layer);
  }
  std::string names;
  for (int k = 0; k < kNumLinearKinds; ++k)
    if (kinds[k]) names += (names.empty() ? "" : ", ") + std::string(linear_name(static_cast<LinearKind>(k)));
  return fmt::format("{} in {} layer{}", names, layers.size(), layers.size() == 1 ? "" : "s");
}

std::string fit_cell(const LineFit& f, bool slope) {
  const std::optional<double>& v = slope ? f.slope : f.correlation;
  if (v) return slope ? fmt::format("{:.4g}", *v) : fmt::format("{:.3f}", *v);
  if (f.points < 2) return "undefined (< 2 points)";
  if (!f.slope) return "undefined (ΔD constant)";
  return "undefined (ΔM constant)";
}

nlohmann::ordered_json optional_json(const std::optional<double>& v) {
  return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr);
}

nlohmann::ordered_json fit_json(const LineFit& f) {
  return {{"points", f.points},
          {"skipped", f.skipped},
          {"slope", optional_json(f.slope)},
          {"intercept", optional_json(f.intercept)},
          {"correlation", optional_json(f.correlation)}};
}

// The DoRA paper's reading of the slope over all modules.
std::string interpretation(const LineFit& all) {
  std::string here;
  if (!all.slope) {
    here = all.points < 2
               ? "undefined: fewer than 2 points, no slope to read"
               : "undefined: every point has the same ΔD (an untrained adapter, B = 0?), no slope to read";
  } else {
    const double k = *all.slope;
    here = fmt::format("k = {:.4g}{}: ", k,
                       all.correlation ? fmt::format(" (r = {:.3f})", *all.correlation) : "");
    if (k < 0)
      here += "negative, magnitude and direction changed inversely, as in full fine-tuning";
    else if (k > 0)
      here += "positive, magnitude and direction changed together, as LoRA does";
    else
      here += "zero, no relation";
  }
  return "DoRA paper: full fine-tuning shows a negative slope of ΔM on ΔD, LoRA a positive one (BiDoRA "
         "reports −8.042, DoRA −1.784). Here, over all modules, " +
         here + ".";
}

void run(const Options& o) {
  if (o.threads > 0) set_num_threads(o.threads);
  const auto storage = storage_from_string(o.quantization);
  if (!storage) fail("--quantization: '{}' is not one of f32, bf16, nf4, int8", o.quantization);
  const std::vector<LinearKind> kinds = parse_modules(o.modules);
  // Every directory is checked before the model is loaded, so a typo fails at once.
  std::vector<Source> sources;
  for (const std::string& a : o.adapters) {
    auto more = expand(a);
    sources.insert(sources.end(), more.begin(), more.end());
  }
  shorten_labels(sources);

  auto weights = ModelWeights::load(o.model, LoadOptions(*storage));
  const auto& layers = weights->layers();

  // Adapters one at a time: only one is in memory however many checkpoints there are.
  std::vector<DecompositionSample> samples;
  nlohmann::ordered_json j_adapters = nlohmann::ordered_json::array();
  Table adapters_table{"Adapters"};
  adapters_table.columns(
      {"Adapter", "Method", {"r", Align::Right}, {"alpha", Align::Right}, "Analysed linears"});
  for (const Source& src : sources) {
    const AdapterSet set = read_peft_adapter(src.dir, layers);
    const AdapterConfig& cfg = set.config();
    const auto points = decompose_adapter(set, layers, kinds);
    BIDORA_CHECK(!points.empty(), "{}: adapts none of --modules {} (its target_modules: {})", src.dir,
                 o.modules, target_names(cfg));
    std::string method = method_name(cfg.method);
    if (cfg.use_rslora) method += " (rsLoRA)";
    adapters_table.row(
        {src.label, method, std::to_string(cfg.r), fmt::format("{:g}", cfg.alpha), describe_linears(points)});
    j_adapters.push_back(
        {{"label", src.label},
         {"path", src.dir},
         {"step", src.step ? nlohmann::ordered_json(*src.step) : nlohmann::ordered_json(nullptr)},
         {"method", method_name(cfg.method)},
         {"r", cfg.r},
         {"alpha", cfg.alpha},
         {"use_rslora", cfg.use_rslora},
         {"scaling", cfg.scaling()}});
    for (const DecompositionPoint& p : points) samples.push_back({src.label, p});
  }

  // Fits per module kind (in kind order) and over everything.
  const auto fit_of = [&](std::optional<LinearKind> kind) {
    std::vector<double> x, y;
    for (const auto& s : samples)
      if (!kind || s.point.kind == *kind) {
        x.push_back(s.point.delta_d);
        y.push_back(s.point.delta_m);
      }
    return fit_line(x, y);
  };
  std::vector<std::pair<std::string, LineFit>> fits;
  for (int k = 0; k < kNumLinearKinds; ++k) {
    const auto kind = static_cast<LinearKind>(k);
    if (std::any_of(samples.begin(), samples.end(), [&](const auto& s) { return s.point.kind == kind; }))
      fits.emplace_back(linear_name(kind), fit_of(kind));
  }
  const LineFit all = fit_of(std::nullopt);
  fits.emplace_back("all", all);
  const std::string reading = interpretation(all);

  adapters_table.print(stdout);
  std::fputc('\n', stdout);

  const bool several = sources.size() > 1;
  Table points_table{"Weight decomposition per adapted linear"};
  std::vector<Column> cols;
  if (several) cols.emplace_back("Checkpoint");
  cols.insert(cols.end(), {{"Layer", Align::Right}, "Module", {"ΔM", Align::Right}, {"ΔD", Align::Right}});
  points_table.columns(cols);
  int64_t zero_rows = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const auto& s = samples[i];
    if (several && i > 0 && s.source != samples[i - 1].source) points_table.separator();
    std::vector<Cell> row;
    if (several) row.emplace_back(s.source);
    row.emplace_back(std::to_string(s.point.layer));
    row.emplace_back(linear_name(s.point.kind));
    row.emplace_back(fmt::format("{:.4e}", s.point.delta_m));
    row.emplace_back(fmt::format("{:.4e}", s.point.delta_d));
    points_table.row(std::move(row));
    zero_rows += s.point.zero_rows;
  }
  points_table.footer(
      "ΔM = mean |m − ‖W₀‖| over output rows (m: DoRA's learned magnitude, or ‖W₀ + s·BA‖ for LoRA); "
      "ΔD = mean 1 − cos(W₀ + s·BA, W₀).");
  if (zero_rows > 0)
    points_table.footer(
        fmt::format("{} row(s) with a zero W₀ or W₀ + s·BA count as orthogonal (1 − cos = 1).", zero_rows));
  points_table.print(stdout);
  std::fputc('\n', stdout);

  Table fit_table{"Slope of ΔM on ΔD (least squares) per module"};
  fit_table.columns(
      {"Module", {"Points", Align::Right}, {"Slope k", Align::Right}, {"Correlation r", Align::Right}});
  for (size_t i = 0; i < fits.size(); ++i) {
    if (i + 1 == fits.size()) fit_table.separator();
    const LineFit& f = fits[i].second;
    fit_table.row({fits[i].first, std::to_string(f.points), fit_cell(f, true), fit_cell(f, false)});
  }
  fit_table.print(stdout);
  fmt::print("\n{}\n", reading);

  if (!o.no_plot) {
    const std::string plot =
        o.plot.empty() ? (fs::path(trim_slashes(o.adapters.front())) / kPlotFile).string() : o.plot;
    const std::string model_name = fs::path(trim_slashes(weights->dir())).filename().string();
    std::string what = sources.size() == 1 ? sources[0].label
                       : o.adapters.size() == 1
                           ? fmt::format("{} ({} checkpoints)", trim_slashes(o.adapters[0]), sources.size())
                           : fmt::format("{} adapters/checkpoints", sources.size());
    const std::string title = fmt::format("Weight decomposition · {} · {}", model_name, what);
    write_file_atomic(plot, weight_decomposition_svg(samples, title));
    fmt::print("Plot: {}\n", plot);
  }
  if (!o.json.empty()) {
    nlohmann::ordered_json j;
    j["model"] = weights->dir();
    j["storage"] = storage_name(*storage);
    j["adapters"] = std::move(j_adapters);
    auto& jp = j["points"] = nlohmann::ordered_json::array();
    for (const auto& s : samples)
      jp.push_back({{"adapter", s.source},
                    {"layer", s.point.layer},
                    {"module", linear_name(s.point.kind)},
                    {"rows", s.point.rows},
                    {"delta_m", s.point.delta_m},  // NaN is written as null
                    {"delta_d", s.point.delta_d},
                    {"learned_magnitude", s.point.learned_magnitude},
                    {"zero_rows", s.point.zero_rows}});
    auto& jf = j["fits"] = nlohmann::ordered_json::object();
    for (const auto& [name, f] : fits) jf[name] = fit_json(f);
    j["interpretation"] = reading;
    write_file_atomic(o.json, j.dump(2) + "\n");
    fmt::print("JSON: {}\n", o.json);
  }
}

}  // namespace

void register_analyze(CLI::App& app) {
  auto opts = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "analyze",
      "Weight-decomposition analysis (DoRA/BiDoRA papers): magnitude vs direction change per layer");
  cmd->add_option(
         "-a,--adapter", opts->adapters,
         "PEFT adapter directory, or a training output directory (its checkpoint-<step>/ in step order, "
         "then final_model/); repeat to compare")
      ->required();
  cmd->add_option("-m,--model", opts->model, "Base model directory or Hugging Face id in the local cache")
      ->required();
  cmd->add_option("-q,--quantization", opts->quantization,
                  "Frozen weight storage: f32, bf16, nf4, int8 (the one the adapter was trained over: DoRA's "
                  "magnitude starts at the row norms of those weights)")
      ->capture_default_str();
  cmd->add_option("--modules", opts->modules,
                  "Only these module kinds, e.g. q_proj,v_proj (default: all adapted)");
  auto* plot =
      cmd->add_option("--plot", opts->plot,
                      "SVG scatter plot to write (default: <first --adapter>/weight_decomposition.svg)");
  cmd->add_flag("--no-plot", opts->no_plot, "Do not write the plot")->excludes(plot);
  cmd->add_option("--json", opts->json, "Also write every number to this JSON file");
  cmd->add_option("--threads", opts->threads, "Worker threads (0 = all available cores)");
  cmd->callback([opts] { run(*opts); });
}

}  // namespace bidora::cli
