// SwiGLU (silu(gate) ⊙ up) forward and backward against double references and finite
// differences, including saturated gates where exp overflows in float.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "model/swiglu.h"
#include "test_kernels_support.h"

namespace bidora {
namespace {

double ref_silu(double g) {
  return g / (1.0 + std::exp(-g));
}

std::vector<double> ref_swiglu(const std::vector<double>& gate, const std::vector<double>& up) {
  std::vector<double> a(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) a[i] = ref_silu(gate[i]) * up[i];
  return a;
}

// Inputs spanning the interesting range of silu, plus saturated values: exp(-g) overflows
// float for g < -88.7 and underflows to a subnormal/zero for g > 87.
std::vector<float> gate_values(size_t n, uint32_t seed) {
  auto g = kt::random_floats(n, seed, -8.0f, 8.0f);
  const float extremes[] = {-200.0f, -100.0f, -89.0f, -88.0f, -30.0f, -1e-20f,
                            0.0f,    1e-20f,  30.0f,  89.0f,  120.0f};
  for (size_t i = 0; i < std::size(extremes) && i < n; ++i) g[i * 3 % n] = extremes[i];
  return g;
}

TEST(SwiGlu, ForwardMatchesDoubleReference) {
  for (int64_t n : {1, 7, 1001}) {
    const auto gate = gate_values(n, 1), up = kt::random_floats(n, 2, -3.0f, 3.0f);
    std::vector<float> act(n);
    swiglu_forward(gate.data(), up.data(), n, act.data());
    const auto want = ref_swiglu(kt::to_double(gate), kt::to_double(up));
    kt::expect_close(act, want, 1e-30, 1e-6, "act_n" + std::to_string(n));
  }
}

TEST(SwiGlu, BackwardMatchesAnalyticAndFiniteDifferences) {
  const int64_t n = 513;
  const auto gate = gate_values(n, 3), up = kt::random_floats(n, 4, -3.0f, 3.0f);
  const auto r = kt::random_floats(n, 5);  // L = Σ r ⊙ act
  std::vector<float> dgate(n), dup(n);
  swiglu_backward(gate.data(), up.data(), r.data(), n, dgate.data(), dup.data());

  std::vector<double> g = kt::to_double(gate), u = kt::to_double(up);
  const std::vector<double> rd = kt::to_double(r);
  std::vector<double> want_dgate(n), want_dup(n);
  for (int64_t i = 0; i < n; ++i) {
    const double sig = 1.0 / (1.0 + std::exp(-g[i]));
    want_dup[i] = rd[i] * g[i] * sig;
    want_dgate[i] = rd[i] * u[i] * (sig + g[i] * sig * (1.0 - sig));  // d silu/dg = σ + g σ (1 − σ)
  }
  // dgate crosses zero near g = −1.28 (silu's minimum), where only an absolute bound is meaningful.
  kt::expect_close(dgate, want_dgate, 1e-6, 2e-6, "dgate_vs_analytic");
  kt::expect_close(dup, want_dup, 1e-30, 2e-6, "dup_vs_analytic");

  // Every element only depends on its own inputs, so one finite-difference sweep per input
  // vector checks all of them.
  const auto loss = [&] { return kt::dot(rd, ref_swiglu(g, u)); };
  kt::expect_close(dgate, kt::numeric_grad(g, loss), 1e-7, 1e-5, "dgate_vs_finite_diff");
  kt::expect_close(dup, kt::numeric_grad(u, loss), 1e-7, 1e-5, "dup_vs_finite_diff");
}

TEST(SwiGlu, BackwardMayWriteOverItsInputs) {
  const int64_t n = 77;
  const auto gate = gate_values(n, 6), up = kt::random_floats(n, 7), dact = kt::random_floats(n, 8);
  std::vector<float> dgate(n), dup(n);
  swiglu_backward(gate.data(), up.data(), dact.data(), n, dgate.data(), dup.data());
  std::vector<float> g = gate, u = up;
  swiglu_backward(g.data(), u.data(), dact.data(), n, g.data(), u.data());
  EXPECT_EQ(g, dgate);
  EXPECT_EQ(u, dup);
}

}  // namespace
}  // namespace bidora
