// The layer against PyTorch autograd (tests/reference/adapter_reference.py re-states PEFT's
// LoRA/DoRA forward in plain torch, float32), and the PEFT adapter files that script writes.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <filesystem>
#include <stdexcept>

#include "adapter_test_util.h"
#include "adapters/lora_layer.h"
#include "adapters/peft_io.h"
#include "core/files.h"
#include "io/safetensors.h"
#include "model/linear.h"
#include "test_support.h"

namespace bidora {
namespace {

std::string adapters_ref_dir() {
  const std::string dir = test::reference_dir() + "/adapters";
  if (!std::filesystem::exists(dir + "/cases/dora.safetensors"))
    throw std::runtime_error("missing reference " + dir +
                             ": run tests/reference/generate.sh (scripts/test.sh does)");
  return dir;
}

std::vector<float> f32(const SafetensorsFile& f, const std::string& name) {
  const TensorView& t = f.get(name);
  std::vector<float> v(static_cast<size_t>(t.numel()));
  tensor_to_f32(t, v.data(), f.path());
  return v;
}

class TorchReference : public ::testing::TestWithParam<const char*> {};

TEST_P(TorchReference, ForwardAndGradientsMatchAutograd) {
  const SafetensorsFile ref(adapters_ref_dir() + "/cases/" + GetParam() + ".safetensors");
  const TensorView& wt = ref.get("W");
  const int64_t out = wt.shape[0], in = wt.shape[1];
  const int64_t n = ref.get("x").shape[0];
  AdapterConfig cfg;
  cfg.r = std::stoll(ref.metadata().at("r"));
  cfg.alpha = std::stod(ref.metadata().at("alpha"));
  cfg.use_rslora = ref.metadata().at("use_rslora") == "true";
  cfg.method = ref.metadata().at("use_dora") == "true" ? LoraVariant::DoRA : LoraVariant::LoRA;
  const FrozenMatrix W = FrozenMatrix::from_f32(f32(ref, "W"), out, in, WeightStorage::F32);
  WeightTile tile;
  AdapterScratch scratch;
  LoraLayer layer(cfg, W, 0, LinearKind::Q, 1, tile);
  layer.A = f32(ref, "A");
  layer.B = f32(ref, "B");
  if (layer.dora()) layer.m = f32(ref, "m");

  const auto x = f32(ref, "x"), dy = f32(ref, "dy");
  std::vector<float> y(n * out), dx(n * in);
  LoraSaved saved;
  linear_forward(x.data(), n, W, nullptr, y.data(), tile);
  layer.forward(x.data(), n, W, y.data(), AdapterMode{.training = true, .dropout = {}}, saved, scratch, tile);
  layer.backward(x.data(), dy.data(), n, W, saved, dx.data(), {}, scratch, tile);

  // Each error is also recorded (--gtest_output=json) so the achieved accuracy can be reported.
  auto check = [&](const char* what, double err) {
    RecordProperty(what, fmt::format("{:.3g}", err));
    EXPECT_LT(err, 1e-5) << what;
  };
  check("y", test::rel_error(y, f32(ref, "y")));
  check("dA", test::rel_error(layer.dA, f32(ref, "dA")));
  check("dB", test::rel_error(layer.dB, f32(ref, "dB")));
  check("dx", test::rel_error(dx, f32(ref, "dx")));
  if (layer.dora()) {
    check("norm", test::rel_error(saved.norm, f32(ref, "norm")));
    check("dm", test::rel_error(layer.dm, f32(ref, "dm")));
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, TorchReference, ::testing::Values("lora", "rslora", "dora", "dora_rslora"));

std::vector<LayerWeights> peft_base_layers(const std::string& dir) {
  const SafetensorsFile base(dir + "/peft_base.safetensors");
  std::vector<LayerWeights> layers(2);
  for (int l = 0; l < 2; ++l)
    for (LinearKind k : {LinearKind::Q, LinearKind::V}) {
      const TensorView& t = base.get(fmt::format("model.layers.{}.{}.weight", l, linear_path(k)));
      layers[l].linear[static_cast<int>(k)] =
          FrozenMatrix::from_f32(f32(base, t.name), t.shape[0], t.shape[1], WeightStorage::F32);
    }
  return layers;
}

// A directory shaped like PEFT's output (full 0.19 key set, ".default" names, BF16) loads exactly.
TEST(PeftReference, ReadsPeftStyleDirectory) {
  const std::string dir = adapters_ref_dir();
  const auto layers = peft_base_layers(dir);
  const AdapterSet set = read_peft_adapter(dir + "/peft_dir", layers);
  EXPECT_EQ(set.config().method, LoraVariant::DoRA);
  EXPECT_EQ(set.config().r, 4);
  EXPECT_DOUBLE_EQ(set.config().alpha, 8.0);
  EXPECT_DOUBLE_EQ(set.config().dropout, 0.05);
  ASSERT_EQ(set.all().size(), 4u);
  const SafetensorsFile st(dir + "/peft_dir/adapter_model.safetensors");
  for (const LoraLayer* l : set.all()) {
    const std::string p =
        fmt::format("base_model.model.model.layers.{}.{}.", l->layer(), linear_path(l->kind()));
    EXPECT_EQ(l->A, f32(st, p + "lora_A.default.weight"));
    EXPECT_EQ(l->B, f32(st, p + "lora_B.default.weight"));
    EXPECT_EQ(l->m, f32(st, p + "lora_magnitude_vector"));
  }
  EXPECT_EQ(set.find(0, LinearKind::K), nullptr);
}

// Our adapter_config.json is byte-identical to Python's json.dumps(indent=2, sort_keys=True).
TEST(PeftReference, ConfigTextMatchesPythonJsonDumps) {
  AdapterConfig cfg;
  cfg.method = LoraVariant::DoRA;
  cfg.r = 16;
  cfg.alpha = 32;
  cfg.dropout = 0.05;
  cfg.use_rslora = true;
  cfg.targets = {LinearKind::Q,    LinearKind::K,  LinearKind::V,   LinearKind::O,
                 LinearKind::Gate, LinearKind::Up, LinearKind::Down};
  EXPECT_EQ(adapter_config_json(cfg, "Qwen/Qwen2.5-0.5B"),
            read_file(adapters_ref_dir() + "/expected_adapter_config.json"));
}

}  // namespace
}  // namespace bidora
