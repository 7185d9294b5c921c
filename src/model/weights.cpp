#include "model/weights.h"

#include <filesystem>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/json_util.h"

namespace bidora {

const char* linear_name(LinearKind k) {
  static const char* names[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return names[static_cast<int>(k)];
}

const char* linear_path(LinearKind k) {
  static const char* paths[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                "mlp.down_proj"};
  return paths[static_cast<int>(k)];
}

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  return fmt::format("[{}]", fmt::join(s, ", "));
}

const TensorView& expect_tensor(const CheckpointTensors& ck, const std::string& name,
                                std::vector<int64_t> shape) {
  const TensorView& t = ck.get(name);
  if (t.shape != shape)
    fail("{}: tensor '{}' has shape {}, but config.json implies {}", ck.file_of(name), name, t.shape_str(),
         shape_str(shape));
  if (t.dtype != DType::F32 && t.dtype != DType::BF16 && t.dtype != DType::F16)
    fail("{}: tensor '{}' has dtype {}; expected F32, BF16 or F16", ck.file_of(name), name,
         dtype_name(t.dtype));
  return t;
}

std::vector<float> load_vector(const CheckpointTensors& ck, const std::string& name, int64_t n) {
  const TensorView& t = expect_tensor(ck, name, {n});
  std::vector<float> v(n);
  tensor_to_f32(t, v.data(), ck.file_of(name));
  return v;
}

FrozenMatrix load_matrix(const CheckpointTensors& ck, const std::string& name, int64_t rows, int64_t cols,
                         WeightStorage storage, const QuantOptions& q = {}) {
  const TensorView& t = expect_tensor(ck, name, {rows, cols});
  FrozenMatrix m = FrozenMatrix::from_tensor(t, storage, ck.file_of(name), q);
  if (!m.zero_copy()) release_mapped_range(t.data, t.nbytes);  // converted: the source pages are done
  return m;
}

}  // namespace

std::unique_ptr<ModelWeights> ModelWeights::load(const std::string& name_or_path, const LoadOptions& opts) {
  auto m = std::make_unique<ModelWeights>();
  m->dir_ = resolve_model_dir(name_or_path);
  m->opts_ = opts;
  const std::string cfg_path = (std::filesystem::path(m->dir_) / "config.json").string();
  if (!std::filesystem::exists(cfg_path)) fail("{}: missing config.json", m->dir_);
  const auto cfg_json = json_util::parse_file(cfg_path);
  if (cfg_json.is_object() && cfg_json.contains("quantization_config"))
    fail(
        "{}: pre-quantised checkpoints (quantization_config) are not supported; load the original "
        "bf16/f16/f32 "
        "model and pick --quantization nf4 or int8 instead",
        cfg_path);
  m->config_ = ModelConfig::from_json(cfg_json, cfg_path);
  const ModelConfig& c = m->config_;
  m->ckpt_ = std::make_unique<CheckpointTensors>(m->dir_);
  const CheckpointTensors& ck = *m->ckpt_;

  // Embeddings and lm_head are never quantised: bf16 in every compact mode (zero copy from a
  // bf16 checkpoint), f32 in f32 mode. Norms and biases are always f32.
  const WeightStorage dense =
      opts.linear_storage == WeightStorage::F32 ? WeightStorage::F32 : WeightStorage::BF16;
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  m->embed_ = load_matrix(ck, "model.embed_tokens.weight", c.vocab_size, H, dense);
  if (!c.tie_word_embeddings) {
    if (!ck.find("lm_head.weight"))
      fail("{}: missing tensor 'lm_head.weight' (config.json has tie_word_embeddings false)", m->dir_);
    m->lm_head_ = load_matrix(ck, "lm_head.weight", c.vocab_size, H, dense);
  }
  m->final_norm_ = load_vector(ck, "model.norm.weight", H);

  const int64_t out_dims[] = {c.q_dim(), c.kv_dim(), c.kv_dim(), H, I, I, H};
  const int64_t in_dims[] = {H, H, H, c.q_dim(), H, H, I};
  m->layers_.resize(c.num_layers);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    LayerWeights& L = m->layers_[l];
    const std::string p = fmt::format("model.layers.{}.", l);
    L.input_norm = load_vector(ck, p + "input_layernorm.weight", H);
    L.post_norm = load_vector(ck, p + "post_attention_layernorm.weight", H);
    if (c.qk_norm) {
      L.q_norm = load_vector(ck, p + "self_attn.q_norm.weight", c.head_dim);
      L.k_norm = load_vector(ck, p + "self_attn.k_norm.weight", c.head_dim);
    }
    for (int k = 0; k < kNumLinearKinds; ++k) {
      const auto kind = static_cast<LinearKind>(k);
      const std::string base = p + linear_path(kind);
      L.linear[k] =
          load_matrix(ck, base + ".weight", out_dims[k], in_dims[k], opts.linear_storage, opts.quant);
      const bool has_bias = (k <= 2 && c.qkv_bias) || (k == 3 && c.o_bias) || (k >= 4 && c.mlp_bias);
      if (has_bias) L.bias[k] = load_vector(ck, base + ".bias", out_dims[k]);
    }
  }
  return m;
}

size_t ModelWeights::resident_bytes() const {
  size_t total = embed_.bytes() + lm_head_.bytes() + final_norm_.size() * 4;
  for (const auto& L : layers_) {
    total += (L.input_norm.size() + L.post_norm.size() + L.q_norm.size() + L.k_norm.size()) * 4;
    for (int k = 0; k < kNumLinearKinds; ++k) total += L.linear[k].bytes() + L.bias[k].size() * 4;
  }
  return total;
}

}  // namespace bidora
