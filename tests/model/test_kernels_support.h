#pragma once
// Shared helpers of the kernel tests (tests/model/test_kernels_*.cpp): deterministic random
// inputs, element-wise comparison of a float kernel against a double reference (the measured
// error is recorded as a gtest property, so --gtest_output=json reports the figures), and
// central finite differences of a double re-implementation.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace bidora::kt {

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

inline std::vector<double> to_double(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

inline double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

struct ErrorStats {
  double max_abs = 0;     // max |got - want|
  double normalised = 0;  // max_abs / max |want|: the error relative to the data's scale
};

// Expects |got[i] - want[i]| <= atol + rtol * |want[i]| for every i (NaN fails) and records the
// worst error under `what` as test properties.
inline ErrorStats expect_close(const float* got, const double* want, size_t n, double atol, double rtol,
                               const std::string& what) {
  ErrorStats s;
  double scale = 0;
  size_t bad = 0, first_bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const double err = std::abs(static_cast<double>(got[i]) - want[i]);
    if (!(err <= atol + rtol * std::abs(want[i])) && bad++ == 0) first_bad = i;
    if (!(err <= s.max_abs)) s.max_abs = err;
    scale = std::max(scale, std::abs(want[i]));
  }
  s.normalised = scale > 0 ? s.max_abs / scale : s.max_abs;
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << n << " values outside atol " << atol << " + rtol "
                     << rtol << "; first at [" << first_bad << "]: got " << got[first_bad] << ", want "
                     << want[first_bad] << "; max abs error " << s.max_abs;
  ::testing::Test::RecordProperty(what + ".max_abs_err", fmt::format("{:.3g}", s.max_abs));
  ::testing::Test::RecordProperty(what + ".rel_to_scale", fmt::format("{:.3g}", s.normalised));
  return s;
}

inline ErrorStats expect_close(const std::vector<float>& got, const std::vector<double>& want, double atol,
                               double rtol, const std::string& what) {
  EXPECT_EQ(got.size(), want.size()) << what;
  return expect_close(got.data(), want.data(), std::min(got.size(), want.size()), atol, rtol, what);
}

// Same, with the absolute tolerance taken relative to the reference's largest magnitude: the
// right yardstick for sums whose terms cancel (gradients), where a per-element rtol is meaningless.
inline ErrorStats expect_close_scaled(const std::vector<float>& got, const std::vector<double>& want,
                                      double tol, const std::string& what) {
  return expect_close(got, want, tol * std::max(max_abs(want), 1e-30), tol, what);
}

// ∂f/∂x[i] for every i by central differences. f reads x, which is perturbed in place and
// restored. In double with h = 1e-6 the truncation (h²·f''') and rounding (ε·|f|/h) errors are
// both around 1e-10, far below the float kernels' errors being checked.
inline std::vector<double> numeric_grad(std::vector<double>& x, const std::function<double()>& f,
                                        double h = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = f();
    x[i] = x0 - h;
    const double fm = f();
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

}  // namespace bidora::kt
