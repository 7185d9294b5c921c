#include "adapters/gguf_export.h"

#include <fmt/format.h>

#include <cmath>

#include "core/error.h"

namespace bidora {
namespace {

// llama.cpp's tensor names (gguf-py MODEL_TENSOR: ATTN_Q ... FFN_DOWN), by LinearKind.
constexpr const char* kGgufLinear[kNumLinearKinds] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                                      "ffn_gate", "ffn_up", "ffn_down"};

GgmlType ggml_type_of(GgufOutType t) {
  switch (t) {
    case GgufOutType::F32:
      return GgmlType::F32;
    case GgufOutType::F16:
      return GgmlType::F16;
    case GgufOutType::BF16:
      return GgmlType::BF16;
    case GgufOutType::Q8_0:
      return GgmlType::Q8_0;
  }
  return GgmlType::F32;
}

}  // namespace

std::optional<GgufOutType> gguf_outtype_from_string(std::string_view s) {
  if (s == "f32") return GgufOutType::F32;
  if (s == "f16") return GgufOutType::F16;
  if (s == "bf16") return GgufOutType::BF16;
  if (s == "q8_0") return GgufOutType::Q8_0;
  return std::nullopt;
}

const char* gguf_outtype_name(GgufOutType t) {
  switch (t) {
    case GgufOutType::F32:
      return "f32";
    case GgufOutType::F16:
      return "f16";
    case GgufOutType::BF16:
      return "bf16";
    case GgufOutType::Q8_0:
      return "q8_0";
  }
  return "?";
}

// convert_hf_to_gguf.py registers LlamaForCausalLM and MistralForCausalLM with LlamaModel
// (MODEL_ARCH.LLAMA), Qwen2ForCausalLM with QWEN2 and Qwen3ForCausalLM with QWEN3.
const char* llama_cpp_architecture(ModelFamily f) {
  switch (f) {
    case ModelFamily::Llama:
    case ModelFamily::Mistral:
      return "llama";
    case ModelFamily::Qwen2:
      return "qwen2";
    case ModelFamily::Qwen3:
      return "qwen3";
  }
  return "?";
}

// LlamaModel sets undo_permute = True; the Qwen converters do not permute (llama.cpp runs them
// with NEOX rotary, the same split-half pairing as transformers).
bool llama_cpp_permutes_qk(ModelFamily f) {
  return f == ModelFamily::Llama || f == ModelFamily::Mistral;
}

std::string llama_cpp_tensor_name(int64_t layer, LinearKind k) {
  return fmt::format("blk.{}.{}.weight", layer, kGgufLinear[static_cast<int>(k)]);
}

std::vector<float> llama_cpp_permute_rows(std::span<const float> w, int64_t rows, int64_t cols,
                                          int64_t n_head) {
  BIDORA_CHECK(n_head > 0 && rows % (2 * n_head) == 0,
               "q/k permutation: {} rows do not split into {} heads of an even size", rows, n_head);
  BIDORA_CHECK(static_cast<int64_t>(w.size()) == rows * cols, "q/k permutation: {} values for [{}, {}]",
               w.size(), rows, cols);
  const int64_t hd = rows / n_head, half = hd / 2;
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < half; ++i)
      for (int64_t j = 0; j < 2; ++j) {
        const float* src = w.data() + (h * hd + j * half + i) * cols;
        std::copy(src, src + cols, out.data() + (h * hd + 2 * i + j) * cols);
      }
  return out;
}

void refuse_dora_gguf(const std::string& source) {
  fail(
      "{}: a DoRA adapter (use_dora: true) cannot be exported as a llama.cpp LoRA GGUF: llama.cpp has no "
      "DoRA magnitude term (its convert_lora_to_gguf.py refuses lora_magnitude_vector too). Merge the "
      "adapter "
      "into the base model with `bidora merge --model M --adapter {} --output MERGED`, then convert MERGED "
      "with "
      "llama.cpp's convert_hf_to_gguf.py",
      source, source);
}

GgufWriter lora_gguf(const AdapterSet& adapters, const ModelConfig& model, const GgufExportOptions& opts,
                     const std::string& source, GgufExportSummary* summary) {
  const AdapterConfig& cfg = adapters.config();
  if (cfg.method == LoraVariant::DoRA) refuse_dora_gguf(source);
  BIDORA_CHECK(!opts.name.empty(), "{}: GGUF export needs a general.name", source);
  BIDORA_CHECK(adapters.num_layers() == model.num_layers,
               "{}: the adapter has {} layers but the model's config.json has {}", source,
               adapters.num_layers(), model.num_layers);

  // llama.cpp's scale is alpha / r (r = lora_b's ne[0]); rsLoRA's is alpha / sqrt(r). One alpha
  // serves every tensor: bidora adapters have a single r and alpha.
  const double r = static_cast<double>(cfg.r);
  const float alpha = static_cast<float>(cfg.use_rslora ? cfg.alpha * std::sqrt(r) : cfg.alpha);
  const std::string arch = llama_cpp_architecture(model.family);
  const bool permute = llama_cpp_permutes_qk(model.family);
  const GgmlType type = ggml_type_of(opts.outtype);

  // Keys in convert_lora_to_gguf.py's order: architecture (the writer's first key), type, the
  // model card, the parameters, the quantisation version.
  GgufWriter w;
  w.set("general.architecture", arch);
  w.set("general.type", std::string("adapter"));
  w.set("adapter.type", std::string("lora"));
  w.set("general.name", opts.name);
  if (!opts.base_model.empty()) {
    w.set("general.base_model.count", uint32_t{1});
    w.set("general.base_model.0.name", opts.base_model);
  }
  w.set("adapter.lora.alpha", alpha);
  w.set("general.quantization_version", uint32_t{2});  // GGML_QUANT_VERSION

  GgufExportSummary s;
  s.architecture = arch;
  s.alpha = alpha;
  s.rank = cfg.r;
  s.permuted_qk = false;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, std::span<const float> values) {
    GgmlType t = type;
    if (t == GgmlType::Q8_0 && shape.back() % 32 != 0) {
      t = GgmlType::F16;
      ++s.f16_fallbacks;
    }
    w.add_tensor_f32(name, std::move(shape), values, t);
  };
  for (const LoraLayer* l : adapters.all()) {
    const std::string base = llama_cpp_tensor_name(l->layer(), l->kind());
    const int64_t in = l->in_features(), out = l->out_features(), rank = l->rank();
    BIDORA_CHECK(
        static_cast<int64_t>(l->A.size()) == rank * in && static_cast<int64_t>(l->B.size()) == out * rank,
        "{}: layer {} {}: A/B hold {}/{} values, expected [{}, {}] and [{}, {}]", source, l->layer(),
        linear_name(l->kind()), l->A.size(), l->B.size(), rank, in, out, rank);
    add(base + ".lora_a", {rank, in}, l->A);
    const bool q = l->kind() == LinearKind::Q, k = l->kind() == LinearKind::K;
    if (permute && (q || k)) {
      const int64_t heads = q ? model.num_heads : model.num_kv_heads;
      BIDORA_CHECK(out == heads * model.head_dim,
                   "{}: layer {} {} has {} outputs but config.json has {} heads of {}", source, l->layer(),
                   linear_name(l->kind()), out, heads, model.head_dim);
      add(base + ".lora_b", {out, rank}, llama_cpp_permute_rows(l->B, out, rank, heads));
      s.permuted_qk = true;
    } else {
      add(base + ".lora_b", {out, rank}, l->B);
    }
    ++s.linears;
  }
  BIDORA_CHECK(s.linears > 0, "{}: the adapter adapts no linear layer", source);
  if (summary) *summary = s;
  return w;
}

}  // namespace bidora
