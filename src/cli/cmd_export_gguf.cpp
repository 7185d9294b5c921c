// `bidora export-gguf`: a trained LoRA / rsLoRA adapter as the GGUF file llama.cpp applies with
// --lora (adapters/gguf_export.h has the layout). The base model is read for its architecture,
// head counts and shapes; its weights are mapped, not converted (bf16 or f32 storage as the
// checkpoint holds them), so the export needs little more memory than the adapter itself.
#include <fmt/format.h>

#include <cctype>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "adapters/adapter_loading.h"
#include "adapters/gguf_export.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/files.h"
#include "io/model_files.h"
#include "model/weights.h"

namespace bidora::cli {
namespace {

namespace fs = std::filesystem;

struct Options {
  std::string adapter, model, output;
  std::string outtype = "f32";
  bool overwrite = false;
  bool allow_base_mismatch = false;
};

std::string trim_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// general.name: the adapter directory's name, with its run's name in front when it is one of the
// directories `bidora train` writes ("out/run/final_model" -> "run-final_model").
std::string adapter_name(const std::string& dir) {
  const fs::path p = fs::path(trim_slashes(dir)).lexically_normal();
  std::string name = p.filename().string();
  const bool run_part = name == "final_model" || name == "best_model" || name == "search_model" ||
                        name.rfind("checkpoint-", 0) == 0;
  const std::string parent = p.parent_path().filename().string();
  if (run_part && !parent.empty() && parent != "." && parent != "..") name = parent + "-" + name;
  if (name.empty() || name == "." || name == "..") name = "adapter";
  return name;
}

// DoRA is refused before the model is loaded. Only use_dora is looked at here: every other
// problem of the file is reported by the full adapter loader with its context.
bool is_dora(const std::string& adapter_dir) {
  const std::string config = (fs::path(adapter_dir) / "adapter_config.json").string();
  std::error_code ec;
  if (!fs::exists(config, ec)) return false;
  const auto j = nlohmann::json::parse(read_file(config), nullptr, /*allow_exceptions=*/false);
  return j.is_object() && j.contains("use_dora") && j["use_dora"].is_boolean() && j["use_dora"].get<bool>();
}

std::string human_bytes(uintmax_t n) {
  if (n < 10 * 1024) return fmt::format("{} bytes", n);
  if (n < 10 * 1024 * 1024) return fmt::format("{:.1f} KiB", static_cast<double>(n) / 1024);
  return fmt::format("{:.1f} MiB", static_cast<double>(n) / (1024 * 1024));
}

void run(const Options& o) {
  const auto outtype = gguf_outtype_from_string(o.outtype);
  BIDORA_CHECK(outtype.has_value(), "--outtype: '{}' is not one of f32, f16, bf16, q8_0", o.outtype);
  const std::string adapter_dir = trim_slashes(o.adapter);
  std::error_code ec;
  BIDORA_CHECK(fs::is_directory(adapter_dir, ec), "--adapter {}: no such directory", adapter_dir);
  if (is_dora(adapter_dir)) refuse_dora_gguf(adapter_dir);

  GgufExportOptions opts;
  opts.outtype = *outtype;
  opts.name = adapter_name(adapter_dir);
  // general.base_model.0.name: a hub id as given, a local model by its directory name.
  opts.base_model = fs::is_directory(o.model, ec) ? adapter_name(o.model) : o.model;
  std::string out = o.output;
  if (out.empty()) {
    std::string upper = gguf_outtype_name(*outtype);
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    // convert_lora_to_gguf.py's default: next to the adapter, "<name>-<TYPE>-LoRA.gguf".
    out = (fs::path(adapter_dir) / fmt::format("{}-{}-LoRA.gguf", opts.name, upper)).string();
  }
  BIDORA_CHECK(o.overwrite || !fs::exists(out, ec),
               "--output {}: the file exists (pass --overwrite to replace it)", out);
  BIDORA_CHECK(!fs::is_directory(out, ec), "--output {}: is a directory, expected a .gguf file path", out);

  // The weights only serve the loader's shape checks: keep them in the checkpoint's own dtype so
  // they stay memory-mapped instead of being converted.
  const std::string model_dir = resolve_model_dir(o.model);
  const ModelConfig cfg = ModelConfig::from_file((fs::path(model_dir) / "config.json").string());
  const WeightStorage storage = cfg.torch_dtype == "float32" ? WeightStorage::F32 : WeightStorage::BF16;
  const auto weights = ModelWeights::load(o.model, LoadOptions(storage));
  const LoadedAdapter adapter = load_adapter_for_model(adapter_dir, *weights, o.model, o.allow_base_mismatch);

  GgufExportSummary s;
  const GgufWriter writer = lora_gguf(*adapter.set, weights->config(), opts, adapter_dir, &s);
  writer.write(out);

  const AdapterConfig& ac = adapter.set->config();
  const uintmax_t size = fs::file_size(out, ec);
  fmt::print("Wrote {} ({})\n", out, ec ? std::string("?") : human_bytes(size));
  fmt::print("  architecture  {} (for a {} base GGUF converted by llama.cpp)\n", s.architecture,
             weights->config().architecture);
  std::string linears;
  for (int k = 0; k < kNumLinearKinds; ++k)  // in model order, whatever the order of target_modules
    if (ac.targets_kind(static_cast<LinearKind>(k)))
      linears += (linears.empty() ? "" : ", ") + std::string(linear_name(static_cast<LinearKind>(k)));
  fmt::print("  adapter       {} r={} on {} in {} layers: {} linears, {} tensors {}\n",
             ac.use_rslora ? "rsLoRA" : "LoRA", ac.r, linears, adapter.set->num_layers(), s.linears,
             writer.num_tensors(), gguf_outtype_name(*outtype));
  if (s.f16_fallbacks > 0)
    fmt::print("                {} tensors as f16: q8_0 needs rows of a multiple of 32 (r = {})\n",
               s.f16_fallbacks, ac.r);
  if (ac.use_rslora)
    fmt::print(
        "  alpha         {:g}; adapter.lora.alpha = {:g} = alpha·sqrt(r), so llama.cpp's alpha/r scale "
        "equals rsLoRA's alpha/sqrt(r) = {:g}\n",
        ac.alpha, s.alpha, ac.scaling());
  else
    fmt::print("  alpha         {:g} (scale alpha/r = {:g})\n", s.alpha, ac.scaling());
  if (s.permuted_qk)
    fmt::print(
        "  q/k           lora_b rows permuted to llama.cpp's rotary layout, as convert_hf_to_gguf.py "
        "permutes q_proj/k_proj\n");
  fmt::print("Use it with llama.cpp: llama-cli -m BASE.gguf --lora {}\n", out);
}

}  // namespace

void register_export_gguf(CLI::App& app) {
  auto opts = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "export-gguf", "Write a LoRA / rsLoRA adapter as a llama.cpp LoRA GGUF (for llama-cli --lora)");
  cmd->add_option("-a,--adapter", opts->adapter, "PEFT adapter directory (e.g. a run's final_model)")
      ->required();
  cmd->add_option(
         "-m,--model", opts->model,
         "Base model directory or Hugging Face id in the local cache (for its architecture and shapes)")
      ->required();
  cmd->add_option(
      "-o,--output", opts->output,
      "GGUF file to write (default: <adapter>/<name>-<TYPE>-LoRA.gguf, as convert_lora_to_gguf.py)");
  cmd->add_option("--outtype", opts->outtype, "Tensor type: f32, f16, bf16 or q8_0")->capture_default_str();
  cmd->add_flag("--overwrite", opts->overwrite, "Replace an existing output file");
  cmd->add_flag("--allow-base-mismatch", opts->allow_base_mismatch,
                "Export even if adapter_config.json names another base model");
  cmd->callback([opts] { run(*opts); });
}

}  // namespace bidora::cli
