// BiDoRA's hypergradient and bi-level steps against PyTorch (tests/reference/bidora_reference.py,
// computed in float64 so that the measured error is bidora's float32 error alone).
//   hypergradient cases: magnitude_hypergradient from a non-trivial DoRA state (B ≠ 0, m ≠ ‖W‖)
//     must give h = ∂L_val/∂m − (g⁺ − g⁻)/(2ε) within 1e-4 relative in norm, and the validation
//     loss, ‖v‖ and ε within 1e-5. The reference also holds the exact mixed derivative (double
//     backward), so the finite difference's own truncation error is reported next to bidora's.
//   bilevel_steps: 3 upper steps of K = 2 lower steps (train_step with the direction regulariser,
//     then upper_step), as the trainer chains them; every loss and norm, and the final A, B, m.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "adapters/direction_regulariser.h"
#include "adapters/peft_io.h"
#include "core/files.h"
#include "io/safetensors.h"
#include "test_support.h"
#include "train/bilevel.h"
#include "train/optim_adamw.h"
#include "train/train_step.h"

namespace bidora::train {
namespace {

// One case directory: the model, the initial adapter running inside the decoder, the batches and
// the expected values. Heap-allocated pieces keep the references between them stable.
struct Case {
  std::string dir;
  nlohmann::json cfg;
  std::unique_ptr<ModelWeights> weights;
  std::unique_ptr<AdapterSet> set;
  std::unique_ptr<AdapterRuntime> runtime;
  std::unique_ptr<Decoder> decoder;
  std::unique_ptr<SafetensorsFile> batches, expected;

  explicit Case(const std::string& name) : dir(test::reference_dir() + "/bidora/" + name) {
    if (!std::filesystem::exists(dir + "/case.json"))
      throw std::runtime_error("missing " + dir + "/case.json: run tests/reference/generate.sh");
    cfg = nlohmann::json::parse(read_file(dir + "/case.json"));
    weights =
        ModelWeights::load(dir + "/" + cfg["model_dir"].get<std::string>(), LoadOptions(WeightStorage::F32));
    set = std::make_unique<AdapterSet>(read_peft_adapter(dir + "/initial_adapter", weights->layers()));
    runtime = std::make_unique<AdapterRuntime>(*set);
    decoder = std::make_unique<Decoder>(*weights);
    decoder->set_adapters(runtime.get());
    batches = std::make_unique<SafetensorsFile>(dir + "/batches.safetensors");
    expected = std::make_unique<SafetensorsFile>(dir + "/expected.safetensors");
  }

  // The micro-batches of step `step` of `prefix` ("train_": lower steps, "val_": upper steps),
  // stored as int32 [steps, micro-batches, rows, seq_len].
  std::vector<TokenBatch> micro(const std::string& prefix, int64_t step) const {
    const int64_t rows = cfg["rows"], seq = cfg["seq_len"];
    std::vector<TokenBatch> out;
    using Field = std::vector<int32_t> TokenBatch::*;
    const std::pair<const char*, Field> fields[] = {{"input_ids", &TokenBatch::input_ids},
                                                    {"position_ids", &TokenBatch::position_ids},
                                                    {"labels", &TokenBatch::labels}};
    for (const auto& [key, field] : fields) {
      const TensorView& t = batches->get(prefix + key);
      if (t.dtype != DType::I32 || t.shape.size() != 4 || step >= t.shape[0] || t.shape[2] != rows ||
          t.shape[3] != seq)
        throw std::runtime_error(batches->path() + ": " + t.name + " is " + dtype_name(t.dtype) + " " +
                                 t.shape_str() + ", expected I32 [>" + std::to_string(step) +
                                 ", micro-batches, " + std::to_string(rows) + ", " + std::to_string(seq) +
                                 "]");
      out.resize(t.shape[1]);
      const int64_t n = rows * seq;
      for (int64_t i = 0; i < t.shape[1]; ++i) {
        TokenBatch& b = out[i];
        b.rows = rows;
        b.seq_len = seq;
        std::vector<int32_t>& v = b.*field;
        v.resize(n);
        std::memcpy(v.data(), t.data + (step * t.shape[1] + i) * n * sizeof(int32_t), n * sizeof(int32_t));
      }
    }
    return out;
  }

  std::vector<double> f64(const std::string& key) const {
    const TensorView& t = expected->get(key);
    if (t.dtype != DType::F64)
      throw std::runtime_error(expected->path() + ": " + key + " is " + dtype_name(t.dtype) +
                               ", expected F64");
    std::vector<double> v(t.numel());
    std::memcpy(v.data(), t.data, t.nbytes);
    return v;
  }

  double scalar(const std::string& key) const { return f64(key).at(0); }
};

double relative(double ours, double ref) {
  return std::abs(ours - ref) / std::abs(ref);
}

// ‖a − b‖ and ‖b‖ accumulated over several tensors.
struct NormDiff {
  double err_sq = 0, ref_sq = 0;
  template <typename A>
  void add(const A& ours, const std::vector<double>& ref) {
    ASSERT_EQ(ours.size(), ref.size());
    for (size_t i = 0; i < ref.size(); ++i) {
      const double d = static_cast<double>(ours[i]) - ref[i];
      err_sq += d * d;
      ref_sq += ref[i] * ref[i];
    }
  }
  double rel() const { return std::sqrt(err_sq / ref_sq); }
};

std::string sci(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3e", x);
  return buf;
}

class BidoraHypergradient : public ::testing::TestWithParam<const char*> {};

TEST_P(BidoraHypergradient, MatchesPyTorch) {
  const Case c(GetParam());
  const std::vector<TokenBatch> train = c.micro("train_", 0), val = c.micro("val_", 0);
  std::vector<std::vector<float>> a_before, b_before;
  for (const LoraLayer* l : c.set->all()) {
    ASSERT_TRUE(l->dora());
    a_before.push_back(l->A);
    b_before.push_back(l->B);
  }

  HypergradientOptions opts;
  opts.fd_alpha = c.cfg["fd_alpha"];
  opts.train_step = 0;
  const HypergradientResult r = magnitude_hypergradient(*c.decoder, *c.runtime, train, val, opts);

  const double val_err = relative(r.val_loss, c.scalar("val_loss"));
  const double v_norm_err = relative(r.v_norm, c.scalar("v_norm"));
  const double eps_err = relative(r.eps, c.scalar("eps"));
  EXPECT_LT(val_err, 1e-5) << r.val_loss << " vs " << c.scalar("val_loss");
  EXPECT_LT(v_norm_err, 1e-5) << r.v_norm << " vs " << c.scalar("v_norm");
  EXPECT_LT(eps_err, 1e-5) << r.eps << " vs " << c.scalar("eps");
  EXPECT_LT(relative(r.direct_norm, c.scalar("direct_norm")), 1e-5);
  EXPECT_LT(relative(r.implicit_norm, c.scalar("implicit_norm")), 1e-4);
  EXPECT_LT(relative(r.hypergrad_norm, c.scalar("hypergrad_norm")), 1e-4);

  // h against the reference's h; bidora's implicit term (recovered as the reference's direct term
  // minus our h: the direct term is an ordinary f32 gradient, good to ~1e-6) against the
  // reference's finite difference and against the exact mixed derivative.
  NormDiff h_err, implicit_vs_fd, implicit_vs_exact, ref_fd_vs_exact;
  double worst_layer = 0;
  for (const LoraLayer* l : c.set->all()) {
    const std::string key = peft_tensor_key(l->layer(), l->kind(), AdapterTensor::Magnitude);
    const std::vector<double> h = c.f64(key), g_dir = c.f64("g_dir." + key);
    const std::vector<double> fd = c.f64("implicit." + key), exact = c.f64("implicit_exact." + key);
    std::vector<double> implicit(h.size());
    for (size_t i = 0; i < h.size(); ++i) implicit[i] = g_dir[i] - l->dm[i];
    NormDiff layer;
    layer.add(l->dm, h);
    worst_layer = std::max(worst_layer, layer.rel());
    h_err.add(l->dm, h);
    implicit_vs_fd.add(implicit, fd);
    implicit_vs_exact.add(implicit, exact);
    ref_fd_vs_exact.add(fd, exact);
  }
  // The issue asks for 1e-4. At the default fd_alpha 0.01 float32 cannot always give it: g⁺ − g⁻
  // is under 1% of g± here (fd_ratio), so the ~1e-6 relative rounding noise of each float32
  // gradient is amplified ~100× in the implicit term. The reference ran the same computation in
  // float32 PyTorch: its h error (1.2e-4 and 6.3e-5 on the fd_alpha 0.01 cases) is that floor.
  // Asserted: 1e-4 with fd_alpha 0.05 (the fd05 case: the same model and targets as hyper_qwen2_qkvo); at
  // 0.01, 1e-4 or, where float32 PyTorch itself misses it, at most twice PyTorch's error.
  const double torch_f32 = c.scalar("torch_f32_h_error");
  const double bound = c.cfg["fd_alpha"].get<double>() >= 0.05 ? 1e-4 : std::max(1e-4, 2 * torch_f32);
  RecordProperty("bound", sci(bound));
  EXPECT_LT(h_err.rel(), bound) << "float32 PyTorch: " << torch_f32;
  // The finite difference's truncation error is O((ε‖v‖)²) = O(1e-4) relative: 4e-5 measured on
  // both cases. A wrong finite difference (the ξ factor, θ± about another point, a detached-norm
  // "exact" value, which is 12-14% away) fails this by orders of magnitude.
  // It grows as fd_alpha²: 9e-4 at fd_alpha 0.05.
  const double fd_alpha = c.cfg["fd_alpha"].get<double>();
  const double truncation_bound = 1e-3 * std::max(1.0, std::pow(fd_alpha / 0.02, 2));
  EXPECT_LT(ref_fd_vs_exact.rel(), truncation_bound);
  EXPECT_NEAR(ref_fd_vs_exact.rel(), c.scalar("fd_vs_exact"), 1e-6 * c.scalar("fd_vs_exact") + 1e-12);
  EXPECT_LT(implicit_vs_exact.rel(), truncation_bound);

  // The finite-difference passes restore θ by copy and leave dA, dB zeroed (bilevel.h).
  size_t i = 0;
  for (const LoraLayer* l : c.set->all()) {
    EXPECT_EQ(std::memcmp(l->A.data(), a_before[i].data(), l->A.size() * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(l->B.data(), b_before[i].data(), l->B.size() * sizeof(float)), 0);
    for (float g : l->dA) ASSERT_EQ(g, 0.0f);
    for (float g : l->dB) ASSERT_EQ(g, 0.0f);
    ++i;
  }

  RecordProperty("hypergrad_rel_error", sci(h_err.rel()));
  RecordProperty("hypergrad_rel_error_torch_f32", sci(torch_f32));
  RecordProperty("fd_difference_over_gradient", sci(c.scalar("fd_ratio")));
  RecordProperty("hypergrad_worst_layer_rel_error", sci(worst_layer));
  RecordProperty("implicit_rel_error_vs_reference_fd", sci(implicit_vs_fd.rel()));
  RecordProperty("implicit_rel_error_vs_exact", sci(implicit_vs_exact.rel()));
  RecordProperty("reference_fd_vs_exact", sci(ref_fd_vs_exact.rel()));
  RecordProperty("val_loss_rel_error", sci(val_err));
  RecordProperty("v_norm_rel_error", sci(v_norm_err));
  RecordProperty("eps_rel_error", sci(eps_err));
  std::cout << GetParam() << ": |h - h_ref|/|h_ref| " << sci(h_err.rel()) << " (worst layer "
            << sci(worst_layer) << "; float32 PyTorch " << sci(torch_f32) << ", |g+ - g-|/|g+| "
            << sci(c.scalar("fd_ratio")) << "); implicit term vs the reference's finite difference "
            << sci(implicit_vs_fd.rel()) << ", vs the exact mixed derivative " << sci(implicit_vs_exact.rel())
            << " (reference finite difference vs exact " << sci(ref_fd_vs_exact.rel()) << "); |implicit|/|h| "
            << sci(c.scalar("implicit_norm") / c.scalar("hypergrad_norm")) << "; val_loss " << sci(val_err)
            << ", |v| " << sci(v_norm_err) << ", eps " << sci(eps_err) << "\n";
}

INSTANTIATE_TEST_SUITE_P(Cases, BidoraHypergradient,
                         ::testing::Values("hyper_qwen2_qkvo", "hyper_llama_all_rslora",
                                           "hyper_qwen2_qkvo_fd05"),
                         [](const auto& info) { return std::string(info.param); });

TEST(BidoraReference, BilevelStepsMatchPyTorch) {
  const Case c("bilevel_steps");
  const nlohmann::json& cfg = c.cfg;
  const int64_t K = cfg["lower_steps"], U = cfg["upper_steps"];

  AdamWConfig ac;
  ac.beta1 = cfg["adam_beta1"];
  ac.beta2 = cfg["adam_beta2"];
  ac.eps = cfg["adam_epsilon"];
  ac.weight_decay = cfg["weight_decay"];
  AdamW lower(direction_params(*c.set), ac);
  AdamW upper(magnitude_params(*c.set), ac);
  // The schedules as the trainer builds them: the upper one over upper steps, base lr scaled
  // and warmup divided by K (the reference wrote the numbers it used; they must agree).
  LrSchedule lower_schedule, upper_schedule;
  lower_schedule.kind = upper_schedule.kind = *schedule_kind_from_string(cfg["schedule"].get<std::string>());
  lower_schedule.base_lr = cfg["lr"];
  lower_schedule.warmup_steps = cfg["warmup"];
  lower_schedule.total_steps = K * U;
  upper_schedule.base_lr = lower_schedule.base_lr * cfg["upper_lr_mult"].get<double>();
  upper_schedule.warmup_steps = lower_schedule.warmup_steps / K;
  upper_schedule.total_steps = lower_schedule.total_steps / K;
  ASSERT_DOUBLE_EQ(upper_schedule.base_lr, cfg["upper_lr"].get<double>());
  ASSERT_EQ(upper_schedule.warmup_steps, cfg["upper_warmup"].get<int64_t>());
  ASSERT_EQ(upper_schedule.total_steps, cfg["upper_total_steps"].get<int64_t>());

  const double gamma = cfg["gamma"];
  const uint64_t seed = cfg["seed"];
  RegulariserScratch scratch;
  const std::vector<double> ref_loss = c.f64("lower_loss"), ref_reg = c.f64("lower_reg"),
                            ref_norm = c.f64("lower_grad_norm"), ref_lr = c.f64("lower_lr"),
                            ref_val = c.f64("val_loss"), ref_v = c.f64("v_norm"), ref_eps = c.f64("eps"),
                            ref_h = c.f64("hypergrad_norm"), ref_upper_lr = c.f64("upper_lr");
  double worst_loss = 0, worst_hyper = 0;
  for (int64_t u = 0; u < U; ++u) {
    std::vector<TokenBatch> last;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t step = u * K + k;
      last = c.micro("train_", step);
      StepOptions so;
      so.step = step;
      so.max_grad_norm = cfg["max_grad_norm"];
      so.seed = seed;
      so.wants = {.directions = true, .magnitude = false};
      so.regulariser = [&] {
        return direction_regulariser(*c.set, c.weights->layers(), gamma, true, scratch);
      };
      const StepResult r = train_step(*c.decoder, *c.runtime, last, lower, lower_schedule, so);
      worst_loss = std::max(worst_loss, relative(r.loss, ref_loss[step]));
      EXPECT_LT(relative(r.loss, ref_loss[step]), 1e-5) << "lower step " << step;
      EXPECT_LT(relative(r.regulariser, ref_reg[step]), 1e-5) << "lower step " << step;
      EXPECT_LT(relative(r.grad_norm, ref_norm[step]), 1e-4) << "lower step " << step;
      EXPECT_NEAR(r.lr, ref_lr[step], 1e-12) << "lower step " << step;
    }
    HypergradientOptions ho;
    ho.fd_alpha = cfg["fd_alpha"];
    ho.seed = seed;
    ho.train_step = u * K + K - 1;
    const UpperStepResult r = upper_step(*c.decoder, *c.runtime, last, c.micro("val_", u), upper,
                                         upper_schedule.lr(u), cfg["upper_max_grad_norm"], ho);
    worst_loss = std::max(worst_loss, relative(r.hyper.val_loss, ref_val[u]));
    worst_hyper = std::max(worst_hyper, relative(r.grad_norm, ref_h[u]));
    EXPECT_LT(relative(r.hyper.val_loss, ref_val[u]), 1e-5) << "upper step " << u;
    EXPECT_LT(relative(r.hyper.v_norm, ref_v[u]), 1e-5) << "upper step " << u;
    EXPECT_LT(relative(r.hyper.eps, ref_eps[u]), 1e-5) << "upper step " << u;
    EXPECT_LT(relative(r.grad_norm, ref_h[u]), 1e-4) << "upper step " << u;
    // clip_grad_norm rounds each tensor's norm to float (as torch); hypergrad_norm is all double.
    EXPECT_LT(relative(r.grad_norm, r.hyper.hypergrad_norm), 1e-6) << "upper step " << u;
    EXPECT_NEAR(r.lr, ref_upper_lr[u], 1e-12) << "upper step " << u;
  }

  // Final adapter: ‖ours − ref‖ / ‖ref‖ per tensor, as test_train_reference.cpp.
  double worst = 0;
  for (const Optimizer* opt : {static_cast<const Optimizer*>(&lower), static_cast<const Optimizer*>(&upper)})
    for (const ParamRef& p : opt->params()) {
      const std::vector<double> ref = c.f64(p.name);
      ASSERT_EQ(static_cast<int64_t>(ref.size()), p.numel) << p.name;
      NormDiff d;
      d.add(std::vector<float>(p.value, p.value + p.numel), ref);
      worst = std::max(worst, d.rel());
      EXPECT_LT(d.rel(), 1e-4) << p.name;
    }
  RecordProperty("worst_relative_adapter_error", sci(worst));
  RecordProperty("worst_relative_loss_error", sci(worst_loss));
  RecordProperty("worst_relative_hypergrad_norm_error", sci(worst_hyper));
  std::cout << "bilevel_steps: worst adapter tensor " << sci(worst) << ", worst loss " << sci(worst_loss)
            << ", worst hypergradient norm " << sci(worst_hyper) << "\n";
}

}  // namespace
}  // namespace bidora::train
