// RMSNorm forward and input gradient against a double re-implementation, its analytic gradient
// and central finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "model/rmsnorm.h"
#include "test_kernels_support.h"

namespace bidora {
namespace {

// y = w ⊙ x / sqrt(mean(x²) + eps), row by row, in double.
std::vector<double> ref_rmsnorm(const std::vector<double>& x, const std::vector<double>& w, int64_t n,
                                int64_t dim, double eps, std::vector<double>* inv_rms = nullptr) {
  std::vector<double> y(x.size());
  if (inv_rms) inv_rms->resize(n);
  for (int64_t r = 0; r < n; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += x[r * dim + i] * x[r * dim + i];
    const double inv = 1.0 / std::sqrt(ss / dim + eps);
    if (inv_rms) (*inv_rms)[r] = inv;
    for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = w[i] * x[r * dim + i] * inv;
  }
  return y;
}

// ∂(Σ r ⊙ y)/∂x derived by hand: dx = inv·(w⊙r) − x·inv³·mean(x ⊙ w ⊙ r).
std::vector<double> ref_rmsnorm_grad(const std::vector<double>& x, const std::vector<double>& w,
                                     const std::vector<double>& r, int64_t n, int64_t dim, double eps) {
  std::vector<double> dx(x.size());
  for (int64_t row = 0; row < n; ++row) {
    const double* xr = x.data() + row * dim;
    const double* rr = r.data() + row * dim;
    double ss = 0, xwr = 0;
    for (int64_t i = 0; i < dim; ++i) {
      ss += xr[i] * xr[i];
      xwr += xr[i] * w[i] * rr[i];
    }
    const double inv = 1.0 / std::sqrt(ss / dim + eps);
    for (int64_t i = 0; i < dim; ++i)
      dx[row * dim + i] = inv * w[i] * rr[i] - xr[i] * inv * inv * inv * xwr / dim;
  }
  return dx;
}

struct NormCase {
  int64_t n, dim;
  float eps, x_scale;
};

class RmsNormTest : public ::testing::TestWithParam<NormCase> {};

TEST_P(RmsNormTest, ForwardMatchesDoubleReference) {
  const auto [n, dim, eps, x_scale] = GetParam();
  const auto x = kt::random_floats(n * dim, 1, -x_scale, x_scale);
  const auto w = kt::random_floats(dim, 2, -2.0f, 2.0f);
  std::vector<double> want_inv;
  const auto want = ref_rmsnorm(kt::to_double(x), kt::to_double(w), n, dim, eps, &want_inv);

  std::vector<float> y(n * dim), inv(n);
  rmsnorm_forward(x.data(), w.data(), n, dim, eps, y.data(), inv.data());
  kt::expect_close(y, want, 1e-6, 2e-6, "y");
  kt::expect_close(inv, want_inv, 0, 2e-6, "inv_rms");

  // Without inv_rms, and in place (y aliasing x), the output is the same.
  std::vector<float> inplace = x;
  rmsnorm_forward(inplace.data(), w.data(), n, dim, eps, inplace.data(), nullptr);
  EXPECT_EQ(inplace, y);
}

TEST_P(RmsNormTest, BackwardMatchesAnalyticAndFiniteDifferences) {
  const auto [n, dim, eps, x_scale] = GetParam();
  const auto x = kt::random_floats(n * dim, 3, -x_scale, x_scale);
  const auto w = kt::random_floats(dim, 4, -2.0f, 2.0f);
  const auto r = kt::random_floats(n * dim, 5);  // L = Σ r ⊙ y, so dL/dy = r

  std::vector<float> y(n * dim), inv(n), dx(n * dim);
  rmsnorm_forward(x.data(), w.data(), n, dim, eps, y.data(), inv.data());
  rmsnorm_backward(x.data(), w.data(), inv.data(), r.data(), n, dim, dx.data());

  std::vector<double> xd = kt::to_double(x);
  const std::vector<double> wd = kt::to_double(w), rd = kt::to_double(r);
  // dx is a difference of two terms of size ~inv·|w ⊙ dy|; when they nearly cancel (dim = 1:
  // dx = w·dy·eps/(x²+eps)^1.5) float keeps only an absolute accuracy relative to the terms.
  std::vector<double> inv_d;
  ref_rmsnorm(xd, wd, n, dim, eps, &inv_d);
  double term_scale = 0;
  for (int64_t row = 0; row < n; ++row)
    for (int64_t i = 0; i < dim; ++i)
      term_scale = std::max(term_scale, std::abs(inv_d[row] * wd[i] * rd[row * dim + i]));
  const double atol = 2e-6 * term_scale;

  const auto analytic = ref_rmsnorm_grad(xd, wd, rd, n, dim, eps);
  kt::expect_close(dx, analytic, atol, 2e-5, "dx_vs_analytic");

  const auto numeric = kt::numeric_grad(
      // Explicit init-captures: clang 14 (the TSan build) cannot capture structured bindings.
      xd, [&, n = n, dim = dim, eps = eps] { return kt::dot(rd, ref_rmsnorm(xd, wd, n, dim, eps)); },
      1e-6 * x_scale);
  kt::expect_close(dx, numeric, atol, 2e-5, "dx_vs_finite_diff");

  // dx may alias dy.
  std::vector<float> alias = r;
  rmsnorm_backward(x.data(), w.data(), inv.data(), alias.data(), n, dim, alias.data());
  EXPECT_EQ(alias, dx);
}

INSTANTIATE_TEST_SUITE_P(Shapes, RmsNormTest,
                         ::testing::Values(NormCase{1, 1, 1e-6f, 1.0f},      // a single element
                                           NormCase{5, 7, 1e-5f, 1.0f},      // odd width
                                           NormCase{3, 96, 1e-6f, 1e-3f},    // tiny inputs: eps matters
                                           NormCase{4, 897, 1e-6f, 300.0f},  // wide row, large values
                                           NormCase{9, 24, 1e-5f, 2.0f}));

TEST(RmsNorm, ZeroRowGivesZeroOutputAndFiniteGradient) {
  // mean(x²) = 0: the result is 0·rsqrt(eps), not NaN, and the gradient is w ⊙ dy / sqrt(eps).
  const int64_t dim = 6;
  const std::vector<float> x(dim, 0.0f), w = kt::random_floats(dim, 6), dy = kt::random_floats(dim, 7);
  std::vector<float> y(dim, 1.0f), inv(1), dx(dim);
  rmsnorm_forward(x.data(), w.data(), 1, dim, 1e-6f, y.data(), inv.data());
  for (float v : y) EXPECT_EQ(v, 0.0f);
  rmsnorm_backward(x.data(), w.data(), inv.data(), dy.data(), 1, dim, dx.data());
  for (int64_t i = 0; i < dim; ++i) {
    const double want = w[i] * dy[i] / std::sqrt(static_cast<double>(1e-6f));
    EXPECT_NEAR(dx[i], want, 1e-6 * std::abs(want) + 1e-6);
  }
}

}  // namespace
}  // namespace bidora
