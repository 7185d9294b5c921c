// One training micro-batch (Decoder::forward_backward) with and without gradient checkpointing:
// time per step and the activation memory each mode keeps, on a SmolLM2-135M-shaped model
// (llama, hidden 576, 30 layers, 9 heads / 3 kv heads, vocab 49152, tied; random bf16 weights
// written to a temp directory on first use) or on the model directory in $BIDORA_BENCH_MODEL.
// LoRA / DoRA r = 16 on all seven linears, dropout 0.05, 2 rows x 256 tokens.
//
// Counters: tok/s; buf_KB/tok = the decoder's buffers (Decoder::buffer_bytes) per token;
// rss_KB/tok = resident memory added by the first step (decoder + adapter runtime state) per
// token; est_KB/tok = the memory model's activation estimate (model/memory_model.h) per token.
// Run one benchmark per process for a clean rss figure (--benchmark_filter=...).
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <vector>

#include "adapters/adapter_runtime.h"
#include "core/half.h"
#include "core/process_stats.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "model/memory_model.h"

namespace {

using namespace bidora;

constexpr int64_t kRows = 2, kSeq = 256;

std::string make_model() {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "bidora-bench-smollm2-135m";
  if (std::filesystem::exists(dir / "model.safetensors")) return dir.string();
  std::filesystem::create_directories(dir);
  const int64_t H = 576, I = 1536, L = 30, heads = 9, kv = 3, hd = 64, V = 49152;
  std::ofstream(dir / "config.json") << fmt::format(
      R"({{"model_type": "llama", "hidden_size": {}, "intermediate_size": {}, "num_hidden_layers": {},
"num_attention_heads": {}, "num_key_value_heads": {}, "vocab_size": {}, "max_position_embeddings": 2048,
"rms_norm_eps": 1e-5, "rope_theta": 100000.0, "tie_word_embeddings": true, "hidden_act": "silu"}})",
      H, I, L, heads, kv, V);
  SafetensorsWriter w;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  auto add = [&](const std::string& name, int64_t rows, int64_t cols, bool ones) {
    std::vector<uint16_t> v(static_cast<size_t>(rows * cols));
    for (auto& e : v) e = f32_to_bf16(ones ? 1.0f : nd(rng));
    const auto* p = reinterpret_cast<const uint8_t*>(v.data());
    std::vector<int64_t> shape = rows == 1 ? std::vector<int64_t>{cols} : std::vector<int64_t>{rows, cols};
    w.add(name, DType::BF16, shape, {p, v.size() * 2});
  };
  add("model.embed_tokens.weight", V, H, false);
  add("model.norm.weight", 1, H, true);
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    add(p + "input_layernorm.weight", 1, H, true);
    add(p + "post_attention_layernorm.weight", 1, H, true);
    add(p + "self_attn.q_proj.weight", heads * hd, H, false);
    add(p + "self_attn.k_proj.weight", kv * hd, H, false);
    add(p + "self_attn.v_proj.weight", kv * hd, H, false);
    add(p + "self_attn.o_proj.weight", H, heads * hd, false);
    add(p + "mlp.gate_proj.weight", I, H, false);
    add(p + "mlp.up_proj.weight", I, H, false);
    add(p + "mlp.down_proj.weight", H, I, false);
  }
  w.write((dir / "model.safetensors").string());
  return dir.string();
}

const ModelWeights& model() {
  static std::unique_ptr<ModelWeights> w = [] {
    const char* env = std::getenv("BIDORA_BENCH_MODEL");
    auto m = ModelWeights::load(env ? env : make_model(), LoadOptions(WeightStorage::BF16));
    // Touch every weight page once so no benchmark's RSS figure includes the mmap'd weights.
    Decoder warm(*m);
    TokenBatch b;
    b.rows = 1, b.seq_len = 4, b.input_ids = {1, 2, 3, 4}, b.labels = {1, 2, 3, 4};
    warm.loss(b);
    return m;
  }();
  return *w;
}

// Args: gradient checkpointing (0/1), DoRA (0/1).
void BM_TrainingStep(benchmark::State& state) {
  const bool checkpointing = state.range(0) != 0, dora = state.range(1) != 0;
  const ModelWeights& w = model();
  AdapterConfig cfg;
  cfg.method = dora ? LoraVariant::DoRA : LoraVariant::LoRA;
  cfg.r = 16;
  cfg.alpha = 32;
  cfg.dropout = 0.05;
  cfg.targets = {LinearKind::Q,    LinearKind::K,  LinearKind::V,   LinearKind::O,
                 LinearKind::Gate, LinearKind::Up, LinearKind::Down};
  AdapterSet set(cfg, w.layers(), 1);
  AdapterRuntime runtime(set);
  Decoder dec(w);
  dec.set_adapters(&runtime);
  dec.set_gradient_checkpointing(checkpointing);

  TokenBatch b;
  b.rows = kRows;
  b.seq_len = kSeq;
  std::mt19937 rng(2);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(w.config().vocab_size) - 1);
  for (int64_t i = 0; i < b.tokens(); ++i) b.input_ids.push_back(tok(rng));
  b.labels = b.input_ids;
  const float scale = 1.0f / static_cast<float>(b.tokens());

  const int64_t rss0 = process_memory().rss_bytes;
  uint64_t step = 0;
  runtime.set_mode({.training = true, .dropout = {.seed = 1, .step = step++}});
  dec.forward_backward(b, scale);  // warm-up: allocates every buffer
  const int64_t rss1 = process_memory().rss_bytes;
  for (auto _ : state) {
    runtime.set_mode({.training = true, .dropout = {.seed = 1, .step = step++}});
    benchmark::DoNotOptimize(dec.forward_backward(b, scale).sum);
  }
  const double tokens = static_cast<double>(b.tokens());
  state.counters["tok/s"] = benchmark::Counter(tokens, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["buf_KB/tok"] = static_cast<double>(dec.buffer_bytes()) / 1024.0 / tokens;
  state.counters["rss_KB/tok"] = static_cast<double>(rss1 - rss0) / 1024.0 / tokens;
  // What the memory model (list-models, quantization: auto) predicts for the same run.
  TrainingShape shape;
  shape.lora_rank = cfg.r;
  shape.dora = dora;
  shape.batch = kRows;
  shape.seq_len = kSeq;
  shape.gradient_checkpointing = checkpointing;
  state.counters["est_KB/tok"] =
      static_cast<double>(estimate_training_memory(w.config(), WeightStorage::BF16, shape).activations) /
      1024.0 / tokens;
}
BENCHMARK(BM_TrainingStep)
    ->ArgNames({"ckpt", "dora"})
    ->Args({1, 0})
    ->Args({0, 0})
    ->Args({1, 1})
    ->Args({0, 1})
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();

}  // namespace

BENCHMARK_MAIN();
