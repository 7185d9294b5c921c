// Checkpoint round trips: a resumed optimiser continues bit-identically; bad files are rejected
// with errors naming the file and the tensor/field.
#include <gtest/gtest.h>

#include <omp.h>

#include <random>

#include "core/error.h"
#include "optim_test_util.h"
#include "train/optim_adamw8bit.h"
#include "train/optim_clip.h"
#include "train/optim_state.h"

namespace bidora::train {
namespace {

// Two 8-bit-sized tensors (one with a partial block) and a small one; deterministic gradients
// as a function of (step, tensor, index) so two runs see the same data.
test_util::ParamSet make_params() {
  test_util::ParamSet ps;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  for (auto [name, n, decay] :
       {std::tuple{"l0.lora_A.weight", 5000, true}, std::tuple{"l0.lora_B.weight", 4096, true},
        std::tuple{"l0.lora_magnitude_vector", 64, true}, std::tuple{"norm.weight", 32, false}}) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = nd(rng);
    ps.add(name, std::move(v), decay);
  }
  return ps;
}

void fill_grads(test_util::ParamSet& ps, int step) {
  std::mt19937 rng(1000u + static_cast<uint32_t>(step));
  std::normal_distribution<float> nd(0.0f, 0.3f);
  for (auto& g : ps.grads)
    for (float& x : g) x = nd(rng);
}

const LrSchedule kSchedule{ScheduleKind::Linear, 5e-3, 2, 12};

void run(Optimizer& opt, test_util::ParamSet& ps, int from, int to) {
  for (int k = from; k < to; ++k) {
    fill_grads(ps, k);
    clip_grad_norm(opt.params(), 1.0);
    opt.step(kSchedule.lr(k));
  }
}

class OptimResume : public ::testing::TestWithParam<const char*> {};

TEST_P(OptimResume, InterruptedAndResumedRunEndsBitIdentical) {
  AdamWConfig cfg;
  cfg.weight_decay = 0.05;
  auto full = make_params();
  auto opt_full = make_optimizer(GetParam(), full.refs(), cfg);
  run(*opt_full, full, 0, 12);

  auto first = make_params();
  const std::string path = bidora::test::make_temp_dir("optim-resume") + "/optimizer.safetensors";
  {
    auto opt = make_optimizer(GetParam(), first.refs(), cfg);
    run(*opt, first, 0, 5);
    save_optimizer_state(path, *opt, kSchedule);
  }
  // A fresh process would reload the adapter; here the parameter values carry over in `first`.
  auto opt = make_optimizer(GetParam(), first.refs(), cfg);
  EXPECT_EQ(load_optimizer_state(path, *opt, kSchedule), 5);
  EXPECT_EQ(opt->step_count(), 5);
  run(*opt, first, 5, 12);
  for (size_t i = 0; i < full.values.size(); ++i) EXPECT_EQ(first.values[i], full.values[i]) << full.names[i];

  // Without the restored state the continuation would differ (the test can fail).
  auto fresh = make_params();
  {
    auto o = make_optimizer(GetParam(), fresh.refs(), cfg);
    run(*o, fresh, 0, 5);
  }
  auto o2 = make_optimizer(GetParam(), fresh.refs(), cfg);
  o2->set_step_count(5);
  run(*o2, fresh, 5, 12);
  EXPECT_NE(fresh.values[0], full.values[0]);
}

TEST_P(OptimResume, ResultsDoNotDependOnTheThreadCount) {
  // Large tensors so that the parallel paths (blocks, chunks) really split the work.
  auto make = [] {
    test_util::ParamSet ps;
    std::mt19937 rng(3);
    std::normal_distribution<float> nd;
    for (const char* name : {"a", "b"}) {
      std::vector<float> v(70001);
      for (float& x : v) x = nd(rng);
      ps.add(name, std::move(v));
    }
    return ps;
  };
  const int saved = omp_get_max_threads();
  std::vector<std::vector<float>> results[2];
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    auto ps = make();
    AdamWConfig cfg;
    cfg.weight_decay = 0.01;
    auto opt = make_optimizer(GetParam(), ps.refs(), cfg);
    run(*opt, ps, 0, 4);
    results[threads - 1] = ps.values;
  }
  omp_set_num_threads(saved);
  EXPECT_EQ(results[0], results[1]);
}

INSTANTIATE_TEST_SUITE_P(Kinds, OptimResume, ::testing::Values("adamw_torch", "adamw_bnb_8bit"));

std::string expect_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected bidora::Error";
  return "";
}

// Writes a state file with one tensor altered by `edit` (name -> replacement or removal).
std::string write_variant(
    const std::string& dir, const std::string& tag, const Optimizer& opt,
    const std::function<void(SafetensorsWriter&, const std::string&, const TensorView&)>& edit,
    std::map<std::string, std::string> md_override = {}) {
  const std::string good = dir + "/good.safetensors";
  save_optimizer_state(good, opt, kSchedule);
  const SafetensorsFile f(good);
  SafetensorsWriter w;
  for (const TensorView& t : f.tensors()) edit(w, t.name, t);
  auto md = f.metadata();
  for (auto& [k, v] : md_override) md[k] = v;
  w.set_metadata(md);
  const std::string path = dir + "/" + tag + ".safetensors";
  w.write(path);
  return path;
}

void keep(SafetensorsWriter& w, const std::string& name, const TensorView& t) {
  w.add(name, t.dtype, t.shape, {t.data, t.nbytes});
}

TEST(OptimStateErrors, NamesFileTensorAndExpectation) {
  const std::string dir = bidora::test::make_temp_dir("optim-bad");
  auto ps = make_params();
  AdamW8bit opt(ps.refs(), AdamWConfig{});
  run(opt, ps, 0, 2);
  const std::string a = "l0.lora_A.weight";

  auto missing = write_variant(dir, "missing", opt,
                               [&](SafetensorsWriter& w, const std::string& n, const TensorView& t) {
                                 if (n != a + ".absmax2") keep(w, n, t);
                               });
  std::string msg = expect_error([&] { load_optimizer_state(missing, opt, kSchedule); });
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing optimizer state tensor 'l0.lora_A.weight.absmax2'"), std::string::npos) << msg;

  auto dtype =
      write_variant(dir, "dtype", opt, [&](SafetensorsWriter& w, const std::string& n, const TensorView& t) {
        if (n == a + ".state1") {
          std::vector<float> f(static_cast<size_t>(t.numel()), 0.0f);
          w.add_f32(n, t.shape, f);
        } else {
          keep(w, n, t);
        }
      });
  msg = expect_error([&] { load_optimizer_state(dtype, opt, kSchedule); });
  EXPECT_NE(msg.find("'l0.lora_A.weight.state1' has dtype F32 (expected U8)"), std::string::npos) << msg;

  auto shape =
      write_variant(dir, "shape", opt, [&](SafetensorsWriter& w, const std::string& n, const TensorView& t) {
        if (n == a + ".absmax1")
          w.add(n, t.dtype, {t.numel() - 1}, {t.data, t.nbytes - 4});
        else
          keep(w, n, t);
      });
  msg = expect_error([&] { load_optimizer_state(shape, opt, kSchedule); });
  EXPECT_NE(msg.find("has shape [19] (expected [20])"), std::string::npos) << msg;

  auto extra =
      write_variant(dir, "extra", opt, [&](SafetensorsWriter& w, const std::string& n, const TensorView& t) {
        keep(w, n, t);
        if (n == a + ".state1") w.add("l9.lora_A.weight.state1", t.dtype, t.shape, {t.data, t.nbytes});
      });
  msg = expect_error([&] { load_optimizer_state(extra, opt, kSchedule); });
  EXPECT_NE(msg.find("'l9.lora_A.weight.state1' does not belong"), std::string::npos) << msg;

  auto bad_step = write_variant(dir, "step", opt, keep, {{"bidora.optimizer.step", "12x"}});
  msg = expect_error([&] { load_optimizer_state(bad_step, opt, kSchedule); });
  EXPECT_NE(msg.find("'bidora.optimizer.step' is '12x'"), std::string::npos) << msg;

  auto beta = write_variant(dir, "beta", opt, keep, {{"bidora.optimizer.beta2", "0.98"}});
  msg = expect_error([&] { load_optimizer_state(beta, opt, kSchedule); });
  EXPECT_NE(msg.find("beta2"), std::string::npos) << msg;

  // An fp32 AdamW checkpoint cannot be resumed with the 8-bit optimiser.
  auto ps2 = make_params();
  auto fp32 = make_optimizer("adamw_torch", ps2.refs(), AdamWConfig{});
  save_optimizer_state(dir + "/fp32.safetensors", *fp32, kSchedule);
  msg = expect_error([&] { load_optimizer_state(dir + "/fp32.safetensors", opt, kSchedule); });
  EXPECT_NE(msg.find("'bidora.optimizer' is 'adamw_torch' but this run uses 'adamw_bnb_8bit'"),
            std::string::npos)
      << msg;

  LrSchedule other = kSchedule;
  other.kind = ScheduleKind::Cosine;
  msg = expect_error([&] { load_optimizer_state(dir + "/good.safetensors", opt, other); });
  EXPECT_NE(msg.find("bidora.scheduler.type"), std::string::npos) << msg;

  EXPECT_THROW(make_optimizer("sgd", ps2.refs(), AdamWConfig{}), Error);
  EXPECT_EQ(opt.step_count(), 2);  // failed loads did not change the step count
}

}  // namespace
}  // namespace bidora::train
