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

TEST(MemoryModel, AdapterAndOptimizerBytesForRank16OnAllLinear) {
  const ModelConfig& c = catalog_config("Qwen/Qwen2.5-0.5B");
  const MemoryEstimate e = estimate_training_memory(c, WeightStorage::BF16);
  // Per block: q,o 16*(896+896); k,v 16*(896+128); gate,up 16*(896+4864); down 16*(4864+896).
  const int64_t per_layer = 2 * 16 * 1792 + 2 * 16 * 1024 + 3 * 16 * 5760;
  EXPECT_EQ(e.trainable_params, 24 * per_layer);
  EXPECT_EQ(e.trainable_params, 8'798'208);
  EXPECT_EQ(e.adapter, 8 * e.trainable_params);    // f32 value + gradient
  EXPECT_EQ(e.optimizer, 8 * e.trainable_params);  // AdamW m and v in f32

  TrainingShape dora;
  dora.dora = true;
  const int64_t magnitudes = 24 * (896 + 128 + 128 + 896 + 4864 + 4864 + 896);
  const MemoryEstimate d = estimate_training_memory(c, WeightStorage::BF16, dora);
  EXPECT_EQ(d.trainable_params, e.trainable_params + magnitudes);
  EXPECT_EQ(d.adapter, 8 * d.trainable_params + 8 * magnitudes);  // + the cached ‖W_i‖² in f64
  EXPECT_EQ(d.optimizer, 8 * d.trainable_params);

  // BiDoRA: a copy of A, B and v (f32), the direct and finite-difference magnitude gradients
  // (f64); with the regulariser, D and the smaller Gram of the largest Linear (gate/up/down:
  // 4864 x 896 and 896²) and its 4 MB gradient tile.
  TrainingShape bidora = dora;
  bidora.bilevel = true;
  const MemoryEstimate b = estimate_training_memory(c, WeightStorage::BF16, bidora);
  EXPECT_EQ(b.adapter - d.adapter, 8'798'208 * 4 * 2 + magnitudes * 8 * 2);
  EXPECT_EQ(b.scratch, d.scratch);
  bidora.orth_regulariser = true;
  EXPECT_EQ(estimate_training_memory(c, WeightStorage::BF16, bidora).scratch - d.scratch,
            (4864 * 896 + 896 * 896) * 4 + (4 << 20));
}

TEST(MemoryModel, EightBitAdamStates) {
  // bitsandbytes: one byte per moment and an f32 absmax per 256 values for tensors of >= 4096
  // values; smaller tensors keep f32 moments.
  EXPECT_EQ(optimizer_state_bytes(4095, false), 8 * 4095);
  EXPECT_EQ(optimizer_state_bytes(4095, true), 8 * 4095);
  EXPECT_EQ(optimizer_state_bytes(4096, true), 2 * (4096 + 16 * 4));
  EXPECT_EQ(optimizer_state_bytes(100'000, true), 2 * (100'000 + 391 * 4));  // 391 blocks, the last partial

  // Qwen2.5-0.5B, r 16: 8-bit states for every A and most B; k/v's B [128, 16] (2048 values)
  // and the magnitudes of 896 or 128 values stay f32 (only gate/up's 4864 reach 4096).
  const ModelConfig& c = catalog_config("Qwen/Qwen2.5-0.5B");
  TrainingShape s;
  s.dora = true;
  s.adam_8bit = true;
  const MemoryEstimate e = estimate_training_memory(c, WeightStorage::BF16, s);
  auto q8 = [](int64_t n) { return 2 * (n + (n + 255) / 256 * 4); };
  const int64_t q = q8(16 * 896) + q8(896 * 16) + 8 * 896;  // A, B, m of q_proj (and o_proj)
  const int64_t kv = q8(16 * 896) + 8 * (128 * 16) + 8 * 128;
  const int64_t mlp = q8(16 * 896) + q8(4864 * 16) + q8(4864);  // gate, up
  const int64_t down = q8(16 * 4864) + q8(896 * 16) + 8 * 896;
  EXPECT_EQ(e.optimizer, 24 * (2 * q + 2 * kv + 2 * mlp + down));
  s.adam_8bit = false;
  const MemoryEstimate f = estimate_training_memory(c, WeightStorage::BF16, s);
  EXPECT_LT(e.optimizer, f.optimizer / 3);
  EXPECT_EQ(e.adapter, f.adapter);  // the parameters and gradients stay f32
}

ModelConfig tiny_config() {
  ModelConfig c;
  c.hidden_size = 8, c.intermediate_size = 16, c.num_layers = 2, c.num_heads = 2, c.num_kv_heads = 1,
  c.head_dim = 4;
  c.vocab_size = 32;
  return c;
}

TEST(MemoryModel, PartsOfATinyModelByHand) {
  const ModelConfig c = tiny_config();  // H 8, I 16, Q 8, KV 4, 2 layers, 2 heads
  TrainingShape s;
  s.lora_rank = 2, s.targets = {"q_proj", "v_proj"}, s.batch = 1, s.seq_len = 4;  // N = 4, dropout 0.05
  const MemoryEstimate e = estimate_training_memory(c, WeightStorage::F32, s);
  EXPECT_EQ(e.weights, frozen_weight_bytes(c, WeightStorage::F32));
  // q: 2*(8+8), v: 2*(8+4) per layer.
  EXPECT_EQ(e.trainable_params, 2 * (32 + 24));
  EXPECT_EQ(e.adapter, 112 * 8);
  EXPECT_EQ(e.optimizer, 112 * 8);
  // Checkpoints: one [N, H] per layer.
  EXPECT_EQ(e.activations, 2 * 4 * 8 * 4);
  // One layer per token: residual + o/down output 16, activation block 100, gradient buffers
  // dx/dmid/dxn 24 + accumulator max(H, I, Q) 16 + dq 8 + dk/dv 8 + dact/dgate/dup 48, saved
  // x·Aᵀ of q and v 4, dropped input and its gradient 2 x max in 8.
  EXPECT_EQ(layer_activation_floats(c), 100);
  EXPECT_EQ(e.layer, 4 * (16 + 100 + 24 + 16 + 8 + 8 + 48 + 4 + 16) * 4);
  // Attention: K, V packed per row to 64 keys x KV 4, delta [N, heads].
  EXPECT_EQ(e.attention, (2 * 64 * 4 + 4 * 2) * 4);
  // Loss: a chunk of min(256, N) = 4 tokens: hidden + gradient 2 x 8, a logits tile of the whole
  // vocabulary 32, row max/sum/target 3.
  EXPECT_EQ(e.loss, 4 * (16 + 32 + 3) * 4);
  // A checkpoint's copy of the adapter values and the optimiser state; the final adapter alone.
  EXPECT_EQ(e.checkpoint, 112 * 4 + 112 * 8);
  EXPECT_EQ(e.scratch, 3 * (int64_t{1} << 21) * 4);  // three weight tiles, whatever the storage
  EXPECT_EQ(e.overhead, kRuntimeOverheadBytes + 32 * kTokenizerBytesPerToken);
  int64_t sum = 0;
  for (const auto& p : e.parts()) sum += p.bytes;
  EXPECT_EQ(sum, e.total());
  EXPECT_EQ(e.per_batch(), e.activations + e.layer + e.attention + e.loss);
  TrainingShape no_checkpoints = s;
  no_checkpoints.saves_optimizer = false;
  EXPECT_EQ(estimate_training_memory(c, WeightStorage::F32, no_checkpoints).checkpoint, 112 * 4);

  // Without checkpointing every layer also stores its activation block and x·Aᵀ of q and v; the
  // one-layer slots of the adapters are not used.
  s.gradient_checkpointing = false;
  const MemoryEstimate n = estimate_training_memory(c, WeightStorage::F32, s);
  EXPECT_EQ(n.activations, 2 * 4 * 8 * 4 + 2 * 4 * (100 + 4) * 4);
  EXPECT_EQ(n.layer, e.layer - 4 * 4 * 4);

  // DoRA also keeps z [N, out] per adapted Linear (q 8, v 4), its row-scaled gradient and the
  // forward's s·u Bᵀ block (both [N, max out 8]), and with dropout the dropped positions: a set
  // per adapted kind, int(0.05 * 4 * (8 + 8)) + 1 = 4 int32 columns and 2 x (N + 1) offsets of
  // 8 B, the widest's int(0.05 * 4 * 8) + 1 = 2 sampled products and gathered inputs (2 x 4 B)
  // and the panels of the largest matrix, 8 x 8 floats.
  s.dora = true;
  const MemoryEstimate d = estimate_training_memory(c, WeightStorage::F32, s);
  EXPECT_EQ(d.activations, 2 * 4 * 8 * 4 + 2 * 4 * (100 + 4 + 12) * 4);
  EXPECT_EQ(d.layer, n.layer + 2 * 4 * 8 * 4 + 4 * 4 + 2 * 5 * 8 + 2 * 8 + 8 * 8 * 4);
  EXPECT_EQ(d.adapter, (112 + 24) * 8 + 24 * 8);
  // bf16 weights are transposed into bf16 panels: 8 x 8 x 2 B.
  EXPECT_EQ(estimate_training_memory(c, WeightStorage::BF16, s).layer, d.layer - 8 * 8 * 2);
  s.dropout = 0;  // no dropped copies at all
  EXPECT_EQ(estimate_training_memory(c, WeightStorage::F32, s).layer, n.layer + 2 * 4 * 8 * 4 - 4 * 16 * 4);
}

TEST(MemoryModel, AttentionIsLinearInTheSequenceLength) {
  // At a constant number of tokens the per-batch parts do not grow with the sequence length:
  // no [T, T] term anywhere (the attention keeps only the log-sum-exp).
  const ModelConfig& c = catalog_config("Qwen/Qwen2.5-0.5B");
  TrainingShape s;
  std::vector<int64_t> per_batch;
  for (int64_t t : {256, 512, 1024, 2048, 4096, 8192}) {
    s.seq_len = t;
    s.batch = 8192 / t;
    const MemoryEstimate e = estimate_training_memory(c, WeightStorage::BF16, s);
    per_batch.push_back(e.per_batch());
    EXPECT_EQ(e.attention, (2 * 8192 * 128 + 8192 * 14) * 4) << t;
  }
  for (int64_t b : per_batch) EXPECT_EQ(b, per_batch.front());
}

TEST(MemoryModel, ActivationsScaleWithBatchAndCheckpointingHelps) {
  const ModelConfig& c = catalog_config("Qwen/Qwen2.5-1.5B");
  TrainingShape s;
  const int64_t base = estimate_training_memory(c, WeightStorage::BF16, s).per_batch();
  s.batch = 8;
  EXPECT_EQ(
      estimate_training_memory(c, WeightStorage::BF16, s).per_batch() - 2 * base,
      -estimate_training_memory(c, WeightStorage::BF16, TrainingShape{}).loss);  // the loss chunk is fixed
  s.batch = 4;
  s.gradient_checkpointing = false;
  EXPECT_GT(estimate_training_memory(c, WeightStorage::BF16, s).per_batch(), 3 * base);
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
