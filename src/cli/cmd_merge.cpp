// `bidora merge`: folds a LoRA / rsLoRA / DoRA adapter into its base model and writes a standard
// Hugging Face model directory (adapters/merge.h has the maths and the output layout).
#include <fmt/format.h>

#include <chrono>

#include "adapters/merge.h"
#include "cli/commands.h"
#include "cli/table.h"
#include "core/backend.h"
#include "core/error.h"

namespace bidora::cli {
namespace {

struct Options {
  std::string model, adapter, output;
  std::string dtype;
  std::string max_shard_size = "5GB";
  std::string quantization;
  bool overwrite = false;
  bool allow_base_mismatch = false;
  int threads = 0;
};

void run(const Options& o) {
  if (o.threads > 0) set_num_threads(o.threads);
  MergeOptions m;
  m.model = o.model;
  m.adapter = o.adapter;
  m.output = o.output;
  m.overwrite = o.overwrite;
  m.allow_base_mismatch = o.allow_base_mismatch;
  m.max_shard_bytes = parse_byte_size(o.max_shard_size, "--max-shard-size");
  if (o.dtype == "f32" || o.dtype == "float32")
    m.dtype = DType::F32;
  else if (o.dtype == "bf16" || o.dtype == "bfloat16")
    m.dtype = DType::BF16;
  else if (o.dtype == "f16" || o.dtype == "float16")
    m.dtype = DType::F16;
  else if (!o.dtype.empty())
    fail("--dtype: '{}' is not one of bf16, f32, f16", o.dtype);
  if (!o.quantization.empty())
    // Merging onto NF4 / int8 values would bake their rounding error into the merged model; the
    // adapter (even one trained over NF4) goes into the unquantised base, as PEFT users merge.
    fmt::print(stderr,
               "note: --quantization {} ignored: merge always reads the base weights unquantised, as the "
               "checkpoint stores them, and merges in float32\n",
               o.quantization);

  const auto t0 = std::chrono::steady_clock::now();
  const MergeResult r = merge_adapter(m, [](size_t s, size_t n, const std::string& file, uint64_t bytes) {
    fmt::print("  [{}/{}] {} ({})\n", s + 1, n, file, format_bytes(static_cast<int64_t>(bytes)));
    std::fflush(stdout);
  });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("Merged {} adapted linear(s) of {} into {} ({} tensors, {} {}, {} file{}) in {:.1f} s\n",
             r.merged_linears, o.adapter, r.output, r.tensors,
             format_bytes(static_cast<int64_t>(r.total_size)), torch_dtype_name(r.dtype), r.files.size(),
             r.files.size() == 1 ? "" : "s", secs);
  fmt::print("Copied: {}\n", fmt::join(r.copied, ", "));
}

}  // namespace

void register_merge(CLI::App& app) {
  auto opts = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "merge",
      "Merge a LoRA / rsLoRA / DoRA adapter into its base model and write a Hugging Face model directory");
  cmd->add_option("-m,--model", opts->model, "Base model directory or Hugging Face id in the local cache")
      ->required();
  cmd->add_option("-a,--adapter", opts->adapter, "PEFT adapter directory (e.g. a run's final_model)")
      ->required();
  cmd->add_option("-o,--output", opts->output, "Model directory to write")->required();
  cmd->add_option("--dtype", opts->dtype,
                  "Output dtype: bf16, f32 or f16 (default: the base model's torch_dtype)");
  cmd->add_option("--max-shard-size", opts->max_shard_size,
                  "Largest safetensors file before the weights are split into shards (e.g. 5GB, 500MB, 2GiB)")
      ->capture_default_str();
  cmd->add_flag("--overwrite", opts->overwrite, "Replace an existing output directory");
  cmd->add_flag("--allow-base-mismatch", opts->allow_base_mismatch,
                "Merge even if the adapter's base_model_name_or_path names another model");
  cmd->add_option(
      "-q,--quantization", opts->quantization,
      "Ignored: merging always uses the unquantised base weights (merging onto NF4/int8 is lossy)");
  cmd->add_option("--threads", opts->threads, "Worker threads (0 = all available cores)");
  cmd->callback([opts] { run(*opts); });
}

}  // namespace bidora::cli
