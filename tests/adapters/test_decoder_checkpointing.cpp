// training.gradient_checkpointing = false with real adapters: the decoder keeps every layer's
// activations and the AdapterRuntime every adapted linear's saved state (u, DoRA's z, g and
// norm, the dropout key), so no layer is replayed. Loss and every A, B and m gradient must equal
// the checkpointed pass bit for bit, for LoRA and DoRA with dropout, over several families and
// storages, over accumulated micro-batches with different dropout keys and batch sizes, and
// again after the factors change.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "adapter_test_util.h"
#include "adapters/adapter_runtime.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "model/reference_cases.h"
#include "test_support.h"

namespace bidora {
namespace {

struct Case {
  const char* model;
  LoraVariant method;
  double dropout;
  WeightStorage storage;
};

class CheckpointingOff : public ::testing::TestWithParam<Case> {};

struct Grads {
  std::vector<double> loss;  // per micro-batch
  std::vector<std::vector<float>> dA, dB, dm;
};

TEST_P(CheckpointingOff, SameLossAndAdapterGradientsAsCheckpointed) {
  const Case c = GetParam();
  auto w = ModelWeights::load(test::reference_model_dir(c.model), LoadOptions(c.storage));
  AdapterConfig cfg;
  cfg.method = c.method;
  cfg.r = 4;
  cfg.alpha = 8;
  cfg.dropout = c.dropout;
  cfg.targets = {LinearKind::Q,    LinearKind::K,  LinearKind::V,   LinearKind::O,
                 LinearKind::Gate, LinearKind::Up, LinearKind::Down};
  AdapterSet set(cfg, w->layers(), 29);
  // B = 0 after PEFT init would make every dA zero: random B and m exercise each term.
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  for (LoraLayer* l : set.all()) {
    for (float& v : l->B) v = nd(rng);
    for (float& v : l->m) v *= 1.0f + nd(rng);
  }
  AdapterRuntime runtime(set);

  // Two micro-batches of one step (different dropout keys and sizes, gradients accumulated):
  // the full reference batch, then its first row alone.
  const TokenBatch full = test::reference_batch(c.model);
  TokenBatch row = full;
  row.rows = 1;
  for (auto* v : {&row.input_ids, &row.position_ids, &row.labels}) v->resize(full.seq_len);

  auto run = [&](Decoder& dec) {
    for (LoraLayer* l : set.all()) l->zero_grad();
    Grads g;
    uint64_t step = 0;
    for (const TokenBatch* b : {&full, static_cast<const TokenBatch*>(&row)}) {
      runtime.set_mode({.training = true, .dropout = {.seed = 5, .step = step++, .row0 = 0}});
      g.loss.push_back(dec.forward_backward(*b, 1.0f / 64).sum);
    }
    for (LoraLayer* l : set.all()) {
      g.dA.push_back(l->dA);
      g.dB.push_back(l->dB);
      g.dm.push_back(l->dm);
    }
    return g;
  };

  Decoder on(*w), off(*w);
  on.set_adapters(&runtime);
  off.set_adapters(&runtime);
  off.set_gradient_checkpointing(false);
  const Grads a = run(on);
  const Grads b = run(off);
  const Grads a2 = run(on);  // on again after off: the shared per-kind state is still right

  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.loss, a2.loss);
  const std::vector<LoraLayer*> layers = set.all();
  double gmax = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string where = std::string(c.model) + " layer " + std::to_string(layers[i]->layer()) + " " +
                              linear_name(layers[i]->kind());
    // Bitwise; rel_error reports how far apart they are if not.
    EXPECT_EQ(a.dA[i], b.dA[i]) << where << " dA rel error " << test::rel_error(b.dA[i], a.dA[i]);
    EXPECT_EQ(a.dB[i], b.dB[i]) << where << " dB rel error " << test::rel_error(b.dB[i], a.dB[i]);
    EXPECT_EQ(a.dm[i], b.dm[i]) << where << " dm rel error " << test::rel_error(b.dm[i], a.dm[i]);
    EXPECT_EQ(a.dA[i], a2.dA[i]) << where;
    for (float v : a.dA[i]) gmax = std::max(gmax, std::abs(static_cast<double>(v)));
  }
  EXPECT_GT(gmax, 0.0);  // equal zeros would prove nothing

  // The factors change between passes, as after an optimiser step: a checkpointed replay must
  // not reuse the previous pass's state (DoRA's row norms are kept from the first forward).
  for (LoraLayer* l : set.all())
    for (float& v : l->B) v += nd(rng);
  const Grads a3 = run(on);
  const Grads b3 = run(off);
  EXPECT_EQ(a3.loss, b3.loss);
  EXPECT_NE(a3.loss, a.loss);
  for (size_t i = 0; i < layers.size(); ++i) {
    EXPECT_EQ(a3.dA[i], b3.dA[i]) << "after the change, layer " << layers[i]->layer();
    EXPECT_EQ(a3.dm[i], b3.dm[i]) << "after the change, layer " << layers[i]->layer();
  }

  // Dropout really was on: the same parameters in eval mode give another loss.
  if (c.dropout > 0) {
    runtime.set_mode({});
    EXPECT_NE(off.loss(full).sum, a.loss[0]);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Methods, CheckpointingOff,
    ::testing::Values(Case{"llama_bias_linear_rope_f32", LoraVariant::LoRA, 0.1, WeightStorage::F32},
                      Case{"qwen3_headdim_f32", LoraVariant::DoRA, 0.1, WeightStorage::F32},
                      Case{"mistral_window_f16", LoraVariant::DoRA, 0.05, WeightStorage::BF16},
                      Case{"qwen2_tied_sharded_f32", LoraVariant::LoRA, 0.1, WeightStorage::F32},
                      Case{"qwen2_tied_sharded_f32", LoraVariant::DoRA, 0.0, WeightStorage::F32},
                      Case{"llama_f32", LoraVariant::DoRA, 0.1, WeightStorage::NF4}),
    [](const auto& info) {
      const Case& c = info.param;
      return std::string(c.model) + (c.method == LoraVariant::DoRA ? "_dora" : "_lora") +
             (c.dropout > 0 ? "_dropout" : "") + "_" + storage_name(c.storage);
    });

}  // namespace
}  // namespace bidora
