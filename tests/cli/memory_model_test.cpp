#include "model/memory_model.h"

#include <gtest/gtest.h>

#include <map>

#include "cli/model_catalog.h"
#include "core/error.h"
#include "model/decoder.h"

namespace bidora {
namespace {

const ModelConfig& catalog_config(const std::string& id) {
  for (const auto& e : cli::model_catalog()) {
    if (e.id == id) return e.config;
  }
  throw std::runtime_error("not in catalogue: " + id);
}

// Parameter counts published for these checkpoints (HF model cards / safetensors metadata).
TEST(MemoryModel, ParameterCountsOfKnownModels) {
  const std::map<std::string, int64_t> expected = {
      {"HuggingFaceTB/SmolLM2-135M", 134'515'008}, {"Qwen/Qwen2.5-0.5B", 494'032'768},
      {"Qwen/Qwen2.5-7B", 7'615'616'512},          {"Qwen/Qwen3-0.6B", 596'049'920},
      {"TinyLlama/TinyLlama_v1.1", 1'100'048'384}, {"meta-llama/Llama-3.2-1B", 1'235'814'400},
      {"meta-llama/Llama-3.1-8B", 8'030'261'248},  {"mistralai/Mistral-7B-v0.1", 7'241'732'096},
  };
  for (const auto& [id, n] : expected) {
    const ModelConfig& c = catalog_config(id);
    EXPECT_EQ(count_parameters(c).total(), n) << id;
    EXPECT_EQ(c.num_parameters(), n) << id;  // the loader's own count agrees
  }
}

TEST(MemoryModel, BreakdownAgreesWithModelConfigForTheWholeCatalogue) {
  for (const auto& e : cli::model_catalog()) {
    const ParameterBreakdown p = count_parameters(e.config);
    EXPECT_EQ(p.total(), e.config.num_parameters()) << e.id;
    EXPECT_EQ(p.block_linear, e.config.num_block_linear_parameters()) << e.id;
    EXPECT_EQ(p.lm_head == 0, e.config.tie_word_embeddings) << e.id;
  }
}

TEST(MemoryModel, Qwen25HalfBBreakdown) {
  const ParameterBreakdown p = count_parameters(catalog_config("Qwen/Qwen2.5-0.5B"));
  EXPECT_EQ(p.embedding, 151936 * 896);
  EXPECT_EQ(p.lm_head, 0);  // tied
  EXPECT_EQ(p.block_linear, 24 * (896 * 896 * 2 + 128 * 896 * 2 + 3 * 896 * 4864));
  EXPECT_EQ(p.block_bias, 24 * (896 + 128 + 128));  // q/k/v biases only
  EXPECT_EQ(p.norms, 24 * 2 * 896 + 896);
}

TEST(MemoryModel, LinearStorageBytes) {
  // NF4 for a 896x896 weight: 401408 packed bytes, 12544 u8 absmax, 49 f32 second-level absmax,
  // one f32 offset, the 16- and 256-entry f32 code tables.
  constexpr int64_t kTables = (16 + 256) * 4;
  EXPECT_EQ(linear_weight_bytes(896, 896, WeightStorage::NF4), 401408 + 12544 + 49 * 4 + 4 + kTables);
  EXPECT_EQ(linear_weight_bytes(3, 3, WeightStorage::NF4), 5 + 1 + 4 + 4 + kTables);  // odd n is padded
  const double bits = 8.0 *
                      static_cast<double>(linear_weight_bytes(4864, 896, WeightStorage::NF4) - kTables) /
                      (4864.0 * 896);
  EXPECT_NEAR(bits, 4.127, 0.001);  // formats.md §3.3
  EXPECT_EQ(linear_weight_bytes(896, 896, WeightStorage::INT8), 802816 + 802816 / kInt8ScaleBlock * 4);
  EXPECT_EQ(linear_weight_bytes(896, 896, WeightStorage::BF16), 802816 * 2);
  EXPECT_EQ(linear_weight_bytes(896, 896, WeightStorage::F32), 802816 * 4);
}

TEST(MemoryModel, LinearBytesMatchTheRealFrozenMatrices) {
  // The estimate per matrix is exactly what the loader's quantised storage keeps resident.
  for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{64, 64}, {96, 80}, {7, 9}, {300, 257}}) {
    std::vector<float> w(static_cast<size_t>(rows * cols));
    for (size_t i = 0; i < w.size(); ++i)
      w[i] = static_cast<float>((static_cast<int64_t>(i) * 37 % 101) - 50) / 64.0f;
    for (WeightStorage s :
         {WeightStorage::F32, WeightStorage::BF16, WeightStorage::NF4, WeightStorage::INT8}) {
      const FrozenMatrix m = FrozenMatrix::from_f32(w, rows, cols, s);
      EXPECT_EQ(linear_weight_bytes(rows, cols, s), static_cast<int64_t>(m.bytes()))
          << storage_name(s) << " " << rows << "x" << cols;
    }
  }
}

TEST(MemoryModel, FrozenWeightBytesByStorage) {
  const ModelConfig& c = catalog_config("Qwen/Qwen2.5-0.5B");
  const ParameterBreakdown p = count_parameters(c);
  const int64_t small_f32 = (p.block_bias + p.norms) * 4;
  EXPECT_EQ(frozen_weight_bytes(c, WeightStorage::BF16), (p.embedding + p.block_linear) * 2 + small_f32);
  EXPECT_EQ(frozen_weight_bytes(c, WeightStorage::F32), p.total() * 4);
  int64_t nf4_linears = 0;
  for (const auto& l : block_linear_shapes(c))
    nf4_linears += linear_weight_bytes(l.out, l.in, WeightStorage::NF4);
  EXPECT_EQ(frozen_weight_bytes(c, WeightStorage::NF4), p.embedding * 2 + 24 * nf4_linears + small_f32);
  // Ordering holds for every model.
  for (const auto& e : cli::model_catalog()) {
    const int64_t nf4 = frozen_weight_bytes(e.config, WeightStorage::NF4);
    const int64_t int8 = frozen_weight_bytes(e.config, WeightStorage::INT8);
    const int64_t bf16 = frozen_weight_bytes(e.config, WeightStorage::BF16);
    EXPECT_LT(nf4, int8) << e.id;
    EXPECT_LT(int8, bf16) << e.id;
    EXPECT_LT(bf16, frozen_weight_bytes(e.config, WeightStorage::F32)) << e.id;
  }
}

TEST(MemoryModel, AdapterBytesForRank16OnAllLinear) {
  const ModelConfig& c = catalog_config("Qwen/Qwen2.5-0.5B");
  const MemoryEstimate e = estimate_training_memory(c, WeightStorage::BF16);
  // Per block: q,o 16*(896+896); k,v 16*(896+128); gate,up 16*(896+4864); down 16*(4864+896).
  const int64_t per_layer = 2 * 16 * 1792 + 2 * 16 * 1024 + 3 * 16 * 5760;
  EXPECT_EQ(e.trainable_params, 24 * per_layer);
  EXPECT_EQ(e.trainable_params, 8'798'208);
  EXPECT_EQ(e.adapter, 16 * e.trainable_params);  // f32 value + grad + 2 AdamW moments

  TrainingShape dora;
  dora.dora = true;
  EXPECT_EQ(estimate_training_memory(c, WeightStorage::BF16, dora).trainable_params,
            e.trainable_params + 24 * (896 + 128 + 128 + 896 + 4864 + 4864 + 896));

  // BiDoRA: a copy of A, B and v (f32), the direct and finite-difference magnitude gradients
  // (f64); with the regulariser, D and the smaller Gram of the largest Linear (gate/up/down:
  // 4864 x 896 and 896²) and its 4 MB gradient tile.
  TrainingShape bidora = dora;
  bidora.bilevel = true;
  const MemoryEstimate d = estimate_training_memory(c, WeightStorage::BF16, dora);
  const MemoryEstimate b = estimate_training_memory(c, WeightStorage::BF16, bidora);
  const int64_t magnitudes = 24 * (896 + 128 + 128 + 896 + 4864 + 4864 + 896);
  EXPECT_EQ(b.adapter - d.adapter, 8'798'208 * 4 * 2 + magnitudes * 8 * 2);
  EXPECT_EQ(b.scratch, d.scratch);
  bidora.orth_regulariser = true;
  EXPECT_EQ(estimate_training_memory(c, WeightStorage::BF16, bidora).scratch - d.scratch,
            (4864 * 896 + 896 * 896) * 4 + (4 << 20));
}

TEST(MemoryModel, ActivationsOfATinyModelByHand) {
  ModelConfig c;
  c.hidden_size = 8, c.intermediate_size = 16, c.num_layers = 2, c.num_heads = 2, c.num_kv_heads = 1,
  c.head_dim = 4;
  c.vocab_size = 32;
  TrainingShape s;
  s.lora_rank = 2, s.targets = {"q_proj", "v_proj"}, s.batch = 1, s.seq_len = 4;
  const MemoryEstimate e = estimate_training_memory(c, WeightStorage::F32, s);
  // Floats per token of one layer: norms 16, q/k/v 16, roped q/k 12, attention out 8, residual 8,
  // gate/up/act 48, LoRA (x·Aᵀ 2 + dropped input 8) for q and v 20 -> 128.
  const int64_t layer_set = 4 * 128 * 4 + 1 * 2 * 4 * 4 * 4;  // tokens*floats*4 B + probabilities
  const int64_t residual = 4 * 8 * 4;
  const int64_t checkpointed = 3 * residual + 2 * layer_set;
  const int64_t loss = 256 * (2 * 8 + 32) * 4;
  EXPECT_EQ(e.activations, checkpointed + loss + 2 * residual);
  EXPECT_EQ(e.scratch, 0);  // f32 weights are used in place
  EXPECT_EQ(e.overhead, kRuntimeOverheadBytes);
  EXPECT_EQ(e.total(), e.weights + e.adapter + e.activations + e.scratch + e.overhead);

  // Without checkpointing every layer also stores, per token, the decoder's activations
  // (norm outputs 24, q/att 16, k/v 8, gate/up/act 48, lse 2, inverse rms 2 = 100) and the
  // LoRA state x·Aᵀ of q and v (2 + 2).
  s.gradient_checkpointing = false;
  EXPECT_EQ(layer_activation_floats(c), 100);
  EXPECT_EQ(estimate_training_memory(c, WeightStorage::F32, s).activations,
            checkpointed + loss + 2 * residual + 2 * 4 * (100 + 4) * 4);
  s.dora = true;  // DoRA keeps its pre-scale output [out] per adapted linear: q 8, v 4
  EXPECT_EQ(estimate_training_memory(c, WeightStorage::F32, s).activations,
            checkpointed + loss + 2 * residual + 2 * 4 * (100 + 4 + 12) * 4);
}

TEST(MemoryModel, ActivationsScaleWithBatchAndCheckpointingHelps) {
  const ModelConfig& c = catalog_config("Qwen/Qwen2.5-1.5B");
  TrainingShape s;
  const int64_t base = estimate_training_memory(c, WeightStorage::BF16, s).activations;
  s.batch = 8;
  EXPECT_GT(estimate_training_memory(c, WeightStorage::BF16, s).activations, base);
  s.batch = 4;
  s.gradient_checkpointing = false;
  EXPECT_GT(estimate_training_memory(c, WeightStorage::BF16, s).activations, 3 * base);
}

TEST(MemoryModel, RecommendationPicksBestStorageThatFits) {
  const ModelConfig& c = catalog_config("meta-llama/Llama-3.1-8B");
  const int64_t bf16 = estimate_training_memory(c, WeightStorage::BF16).total();
  const int64_t int8 = estimate_training_memory(c, WeightStorage::INT8).total();
  const int64_t nf4 = estimate_training_memory(c, WeightStorage::NF4).total();
  auto ram_for = [](int64_t need) {
    return static_cast<int64_t>(static_cast<double>(need) / kFitMargin) + 1;
  };
  EXPECT_EQ(recommend_storage(c, ram_for(bf16)), WeightStorage::BF16);
  EXPECT_EQ(recommend_storage(c, ram_for(bf16) - 2), WeightStorage::INT8);
  EXPECT_EQ(recommend_storage(c, ram_for(int8)), WeightStorage::INT8);
  EXPECT_EQ(recommend_storage(c, ram_for(int8) - 2), WeightStorage::NF4);
  EXPECT_EQ(recommend_storage(c, ram_for(nf4) - 2), std::nullopt);
  EXPECT_EQ(recommend_storage(c, 0), std::nullopt);
  // Sanity of the magnitudes: an 8B model in bf16 needs its 16 GB of weights and more.
  EXPECT_GT(bf16, int64_t{16'000'000'000});
  EXPECT_LT(bf16, int64_t{24'000'000'000});
}

TEST(MemoryModel, RejectsEmptyConfigAndShape) {
  EXPECT_THROW(estimate_training_memory(ModelConfig{}, WeightStorage::BF16), Error);
  TrainingShape s;
  s.batch = 0;
  EXPECT_THROW(estimate_training_memory(catalog_config("Qwen/Qwen2.5-0.5B"), WeightStorage::BF16, s), Error);
}

}  // namespace
}  // namespace bidora
