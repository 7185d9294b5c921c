// Values are copied from each checkpoint's config.json (see shared/reference/formats.md §5.2; the
// ones marked [U] there were confirmed against published config.json files). The parameter
// counts the memory model derives from them are asserted in tests/cli/memory_model_test.cpp.
#include "cli/model_catalog.h"

namespace bidora::cli {
namespace {

struct Dims {
  int64_t hidden, intermediate, layers, heads, kv_heads, head_dim, vocab;
  double rope_theta, eps;
  bool tie;
  int64_t max_pos;
};

ModelConfig make(ModelFamily family, const char* arch, const Dims& d) {
  ModelConfig c;
  c.family = family;
  c.architecture = arch;
  c.hidden_size = d.hidden;
  c.intermediate_size = d.intermediate;
  c.num_layers = d.layers;
  c.num_heads = d.heads;
  c.num_kv_heads = d.kv_heads;
  c.head_dim = d.head_dim;
  c.vocab_size = d.vocab;
  c.rope_theta = d.rope_theta;
  c.rms_norm_eps = d.eps;
  c.tie_word_embeddings = d.tie;
  c.max_position_embeddings = d.max_pos;
  c.torch_dtype = "bfloat16";
  // Qwen2 hard-codes q/k/v biases; Qwen3 normalises q and k per head.
  c.qkv_bias = family == ModelFamily::Qwen2;
  c.qk_norm = family == ModelFamily::Qwen3;
  return c;
}

ModelConfig llama(const Dims& d) {
  return make(ModelFamily::Llama, "LlamaForCausalLM", d);
}
ModelConfig qwen2(const Dims& d) {
  return make(ModelFamily::Qwen2, "Qwen2ForCausalLM", d);
}
ModelConfig qwen3(const Dims& d) {
  return make(ModelFamily::Qwen3, "Qwen3ForCausalLM", d);
}
ModelConfig mistral(const Dims& d) {
  return make(ModelFamily::Mistral, "MistralForCausalLM", d);
}

ModelConfig with_llama3_rope(ModelConfig c, double factor) {
  c.rope_scaling.type = "llama3";
  c.rope_scaling.factor = factor;
  c.rope_scaling.low_freq_factor = 1.0;
  c.rope_scaling.high_freq_factor = 4.0;
  c.rope_scaling.original_max_position_embeddings = 8192;
  return c;
}

ModelConfig with_window(ModelConfig c, int64_t window) {
  c.sliding_window = window;
  return c;
}

std::vector<CatalogEntry> build() {
  //                     H      I      L   nh  nkv  hd   V       theta   eps    tie    max_pos
  return {
      {"HuggingFaceTB/SmolLM2-135M", "SmolLM2",
       llama({576, 1536, 30, 9, 3, 64, 49152, 1e5, 1e-5, true, 8192}), "tiny: smoke tests, any laptop"},
      {"HuggingFaceTB/SmolLM2-360M", "SmolLM2",
       llama({960, 2560, 32, 15, 5, 64, 49152, 1e5, 1e-5, true, 8192}), "small and quick on a CPU"},
      {"HuggingFaceTB/SmolLM2-1.7B", "SmolLM2",
       llama({2048, 8192, 24, 32, 32, 64, 49152, 130000, 1e-5, true, 8192}), "no GQA: larger activations"},
      {"Qwen/Qwen2.5-0.5B", "Qwen2.5", qwen2({896, 4864, 24, 14, 2, 64, 151936, 1e6, 1e-6, true, 32768}),
       "best first model on a CPU"},
      {"Qwen/Qwen2.5-1.5B", "Qwen2.5", qwen2({1536, 8960, 28, 12, 2, 128, 151936, 1e6, 1e-6, true, 32768}),
       "CPU with 16 GB+"},
      {"Qwen/Qwen2.5-3B", "Qwen2.5", qwen2({2048, 11008, 36, 16, 2, 128, 151936, 1e6, 1e-6, true, 32768}),
       ""},
      {"Qwen/Qwen2.5-7B", "Qwen2.5", qwen2({3584, 18944, 28, 28, 4, 128, 152064, 1e6, 1e-6, false, 131072}),
       "slow on a CPU"},
      {"Qwen/Qwen3-0.6B", "Qwen3", qwen3({1024, 3072, 28, 16, 8, 128, 151936, 1e6, 1e-6, true, 40960}),
       "head_dim 128 > H/heads"},
      {"Qwen/Qwen3-1.7B", "Qwen3", qwen3({2048, 6144, 28, 16, 8, 128, 151936, 1e6, 1e-6, true, 40960}), ""},
      {"Qwen/Qwen3-4B", "Qwen3", qwen3({2560, 9728, 36, 32, 8, 128, 151936, 1e6, 1e-6, true, 40960}), ""},
      {"Qwen/Qwen3-8B", "Qwen3", qwen3({4096, 12288, 36, 32, 8, 128, 151936, 1e6, 1e-6, false, 40960}),
       "slow on a CPU"},
      {"TinyLlama/TinyLlama_v1.1", "TinyLlama",
       llama({2048, 5632, 22, 32, 4, 64, 32000, 1e4, 1e-5, false, 2048}), "Llama 2 tokenizer, 2k context"},
      {"meta-llama/Llama-3.2-1B", "Llama 3.2",
       with_llama3_rope(llama({2048, 8192, 16, 32, 8, 64, 128256, 5e5, 1e-5, true, 131072}), 32.0),
       "gated on HF"},
      {"meta-llama/Llama-3.2-3B", "Llama 3.2",
       with_llama3_rope(llama({3072, 8192, 28, 24, 8, 128, 128256, 5e5, 1e-5, true, 131072}), 32.0),
       "gated on HF"},
      {"meta-llama/Llama-3.1-8B", "Llama 3.1",
       with_llama3_rope(llama({4096, 14336, 32, 32, 8, 128, 128256, 5e5, 1e-5, false, 131072}), 8.0),
       "gated on HF; slow on a CPU"},
      {"mistralai/Mistral-7B-v0.1", "Mistral",
       with_window(mistral({4096, 14336, 32, 32, 8, 128, 32000, 1e4, 1e-5, false, 32768}), 4096),
       "sliding window 4096"},
      {"mistralai/Mistral-7B-v0.3", "Mistral",
       mistral({4096, 14336, 32, 32, 8, 128, 32768, 1e6, 1e-5, false, 32768}), "gated on HF"},
  };
}

}  // namespace

const std::vector<FamilyInfo>& supported_families() {
  static const std::vector<FamilyInfo> families = {
      {ModelFamily::Llama, "LlamaForCausalLM", "llama", "Llama 2/3.x, TinyLlama, SmolLM2",
       "GQA; llama3/linear/dynamic/yarn RoPE scaling; optional attention/MLP bias"},
      {ModelFamily::Mistral, "MistralForCausalLM", "mistral", "Mistral 7B v0.1/v0.3",
       "sliding-window attention when configured (v0.1: 4096)"},
      {ModelFamily::Qwen2, "Qwen2ForCausalLM", "qwen2", "Qwen2, Qwen2.5", "q/k/v projections carry a bias"},
      {ModelFamily::Qwen3, "Qwen3ForCausalLM", "qwen3", "Qwen3 (dense)",
       "per-head RMSNorm on q and k; head_dim may differ from H/heads"},
  };
  return families;
}

const std::vector<CatalogEntry>& model_catalog() {
  static const std::vector<CatalogEntry> catalog = build();
  return catalog;
}

}  // namespace bidora::cli
