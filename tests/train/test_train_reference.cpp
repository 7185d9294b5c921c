// bidora's training step against PyTorch (tests/reference/train_reference.py): the same initial
// PEFT adapter, the same micro-batches, HF Trainer's accumulation / clipping / AdamW / schedule.
// Step losses, gradient norms, learning rates and the final adapter tensors must agree to f32
// precision (relative error < 1e-4 on the adapter, as the issue asks).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "adapters/peft_io.h"
#include "core/files.h"
#include "io/safetensors.h"
#include "test_support.h"
#include "train/optim_adamw.h"
#include "train/train_step.h"

namespace bidora::train {
namespace {

class TrainReference : public ::testing::TestWithParam<const char*> {};

TEST_P(TrainReference, StepsMatchPyTorch) {
  const std::string dir = test::reference_dir() + "/train/" + GetParam();
  if (!std::filesystem::exists(dir + "/train.json"))
    throw std::runtime_error("missing " + dir + ": run tests/reference/generate.sh");
  const auto cfg = nlohmann::json::parse(read_file(dir + "/train.json"));
  auto weights =
      ModelWeights::load(dir + "/" + cfg["model_dir"].get<std::string>(), LoadOptions(WeightStorage::F32));
  AdapterSet set = read_peft_adapter(dir + "/initial_adapter", weights->layers());
  AdapterRuntime runtime(set);
  Decoder decoder(*weights);
  decoder.set_adapters(&runtime);

  AdamWConfig ac;
  ac.beta1 = cfg["adam_beta1"];
  ac.beta2 = cfg["adam_beta2"];
  ac.eps = cfg["adam_epsilon"];
  ac.weight_decay = cfg["weight_decay"];
  AdamW optimizer(adapter_params(set), ac);
  LrSchedule schedule;
  schedule.kind = *schedule_kind_from_string(cfg["schedule"].get<std::string>());
  schedule.base_lr = cfg["lr"];
  schedule.warmup_steps = cfg["warmup"];
  schedule.total_steps = cfg["steps"];

  SafetensorsFile batches(dir + "/batches.safetensors");
  SafetensorsFile expected(dir + "/expected.safetensors");
  const int64_t steps = cfg["steps"], accum = cfg["accum"], rows = cfg["rows"], seq = cfg["seq_len"];
  auto i32 = [&](const char* key, int64_t index) {
    const TensorView& t = batches.get(key);
    std::vector<int32_t> v(rows * seq);
    std::memcpy(v.data(), t.data + index * rows * seq * 4, rows * seq * 4);
    return v;
  };
  auto f64 = [&](const char* key) {
    const TensorView& t = expected.get(key);
    std::vector<double> v(t.numel());
    std::memcpy(v.data(), t.data, t.nbytes);
    return v;
  };
  const auto ref_loss = f64("step_loss"), ref_norm = f64("grad_norm"), ref_lr = f64("lr");

  for (int64_t step = 0; step < steps; ++step) {
    std::vector<TokenBatch> micro(accum);
    for (int64_t i = 0; i < accum; ++i) {
      micro[i].rows = rows;
      micro[i].seq_len = seq;
      micro[i].input_ids = i32("input_ids", step * accum + i);
      micro[i].position_ids = i32("position_ids", step * accum + i);
      micro[i].labels = i32("labels", step * accum + i);
    }
    StepOptions so;
    so.step = step;
    so.max_grad_norm = cfg["max_grad_norm"];
    const StepResult r = train_step(decoder, runtime, micro, optimizer, schedule, so);
    EXPECT_NEAR(r.loss, ref_loss[step], 1e-5 * ref_loss[step]) << "step " << step;
    EXPECT_NEAR(r.grad_norm, ref_norm[step], 1e-4 * ref_norm[step]) << "step " << step;
    EXPECT_NEAR(r.lr, ref_lr[step], 1e-12) << "step " << step;
  }

  // Final adapter: every tensor within 1e-4 relative error in norm, ‖ours − ref‖ / ‖ref‖. (An
  // elementwise bound is the wrong yardstick here: Adam divides by √v + 1e-8, so where a
  // gradient is ~1e-8 an f32 rounding difference of 1e-12 in it — e.g. from another summation
  // order in attention — moves that element by lr·1e-4 however exact both sides are.)
  double worst = 0, worst_elementwise = 0;
  for (const ParamRef& p : optimizer.params()) {
    const TensorView& t = expected.get(p.name);
    ASSERT_EQ(t.numel(), p.numel) << p.name;
    std::vector<float> ref(t.numel());
    tensor_to_f32(t, ref.data(), expected.path());
    double ref_sq = 0, err_sq = 0, scale = 0, err_max = 0;
    for (int64_t i = 0; i < p.numel; ++i) {
      const double d = static_cast<double>(ref[i]) - p.value[i];
      ref_sq += static_cast<double>(ref[i]) * ref[i];
      err_sq += d * d;
      scale = std::max(scale, std::abs(static_cast<double>(ref[i])));
      err_max = std::max(err_max, std::abs(d));
    }
    const double rel = ref_sq > 0 ? std::sqrt(err_sq / ref_sq) : std::sqrt(err_sq);
    worst = std::max(worst, rel);
    worst_elementwise = std::max(worst_elementwise, scale > 0 ? err_max / scale : err_max);
    EXPECT_LT(rel, 1e-4) << p.name;
  }
  RecordProperty("worst_elementwise_error_over_max", std::to_string(worst_elementwise));
  RecordProperty("worst_relative_adapter_error", std::to_string(worst));
}

INSTANTIATE_TEST_SUITE_P(Cases, TrainReference,
                         ::testing::Values("llama_lora", "qwen3_rslora_all", "qwen2_dora"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace bidora::train
