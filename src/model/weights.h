#pragma once
// The frozen base model: config.json + safetensors → weights in the chosen storage.
// Embeddings, norms and biases are never quantised (as bitsandbytes/transformers do); the
// Linear layers inside the blocks are stored as f32, bf16, NF4 or int8.
#include <memory>
#include <string>
#include <vector>

#include "io/model_files.h"
#include "model/frozen_matrix.h"
#include "model/model_config.h"

namespace bidora {

struct LoadOptions {
  LoadOptions() = default;
  explicit LoadOptions(WeightStorage storage) : linear_storage(storage) {}
  WeightStorage linear_storage = WeightStorage::BF16;  // storage of the Linear layers inside the blocks
  QuantOptions quant;                                  // used when that storage is NF4 or INT8
};

enum class LinearKind { Q, K, V, O, Gate, Up, Down };
constexpr int kNumLinearKinds = 7;
const char* linear_name(LinearKind k);  // "q_proj", ... "down_proj"
const char* linear_path(LinearKind k);  // "self_attn.q_proj", ... "mlp.down_proj"

struct LayerWeights {
  std::vector<float> input_norm, post_norm;  // [H]
  std::vector<float> q_norm, k_norm;         // [hd], Qwen3 only
  FrozenMatrix linear[kNumLinearKinds];      // indexed by LinearKind
  std::vector<float> bias[kNumLinearKinds];  // empty when the projection has no bias

  const FrozenMatrix& W(LinearKind k) const { return linear[static_cast<int>(k)]; }
  const float* b(LinearKind k) const {
    const auto& v = bias[static_cast<int>(k)];
    return v.empty() ? nullptr : v.data();
  }
};

class ModelWeights {
 public:
  // `name_or_path`: a model directory or a Hugging Face id in the local cache.
  static std::unique_ptr<ModelWeights> load(const std::string& name_or_path, const LoadOptions& opts = {});

  const ModelConfig& config() const { return config_; }
  const std::string& dir() const { return dir_; }
  const LoadOptions& options() const { return opts_; }
  const FrozenMatrix& embed() const { return embed_; }
  const FrozenMatrix& lm_head() const { return config_.tie_word_embeddings ? embed_ : lm_head_; }
  const std::vector<float>& final_norm() const { return final_norm_; }
  const std::vector<LayerWeights>& layers() const { return layers_; }
  const CheckpointTensors& checkpoint() const { return *ckpt_; }
  // Bytes of weights kept resident (mapped zero-copy or owned).
  size_t resident_bytes() const;

 private:
  ModelConfig config_;
  std::string dir_;
  LoadOptions opts_;
  std::unique_ptr<CheckpointTensors> ckpt_;  // keeps zero-copy tensors mapped
  FrozenMatrix embed_, lm_head_;
  std::vector<float> final_norm_;
  std::vector<LayerWeights> layers_;
};

}  // namespace bidora
