// The backend's row-major sgemm against a naive double GEMM: all four transpose combinations,
// leading dimensions larger than the logical widths (padding filled with NaN, so reading it
// would show), alpha/beta != 1, beta = 0 over NaN (C must be overwritten, not scaled), and
// C's padding left untouched.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/error.h"

namespace bidora {
namespace {

struct GemmCase {
  int64_t M, N, K;
};

// A stored matrix of `rows` x `cols` (row stride ld >= cols) with NaN in the padding.
std::vector<float> padded_random(int64_t rows, int64_t cols, int64_t ld, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> m(rows * ld, std::nanf(""));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) m[r * ld + c] = dist(rng);
  return m;
}

void check_gemm(bool ta, bool tb, const GemmCase& g, float alpha, float beta, int64_t pad, uint32_t seed) {
  const auto [M, N, K] = g;
  SCOPED_TRACE("transA " + std::to_string(ta) + " transB " + std::to_string(tb) + " M " + std::to_string(M) +
               " N " + std::to_string(N) + " K " + std::to_string(K) + " alpha " + std::to_string(alpha) +
               " beta " + std::to_string(beta) + " pad " + std::to_string(pad));
  std::mt19937 rng(seed);
  // As stored: op(A) = A is [M, K]; op(A) = Aᵀ means A is stored [K, M]. Same for B [K, N].
  const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
  const int64_t lda = a_cols + pad, ldb = b_cols + 2 * pad, ldc = N + 3 * pad;
  const auto A = padded_random(a_rows, a_cols, lda, rng);
  const auto B = padded_random(b_rows, b_cols, ldb, rng);
  std::vector<float> C = padded_random(M, N, ldc, rng);
  if (beta == 0.0f)
    for (int64_t r = 0; r < M; ++r)
      for (int64_t c = 0; c < N; ++c) C[r * ldc + c] = std::nanf("");  // must be ignored
  const std::vector<float> C0 = C;

  sgemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);

  double worst = 0;
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double s = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double a = ta ? A[k * lda + i] : A[i * lda + k];
        const double b = tb ? B[j * ldb + k] : B[k * ldb + j];
        s += a * b;
        mag += std::abs(a * b);
      }
      const double want = alpha * s + (beta == 0.0f ? 0.0 : beta * static_cast<double>(C0[i * ldc + j]));
      const double got = C[i * ldc + j];
      const double err = std::abs(got - want);
      // Float accumulation over K terms: error bounded by ~K·ε·Σ|a·b| in the worst case.
      ASSERT_LE(err, 1e-6 + 2e-7 * (K + 1) * (std::abs(alpha) * mag + std::abs(beta)))
          << "C[" << i << ", " << j << "]";
      worst = std::max(worst, err);
    }
    for (int64_t j = N; j < ldc; ++j)  // the padding of C is not written
      ASSERT_EQ(std::bit_cast<uint32_t>(C[i * ldc + j]), std::bit_cast<uint32_t>(C0[i * ldc + j]))
          << i << ", " << j;
  }
  ::testing::Test::RecordProperty("max_abs_err", std::to_string(worst));
}

TEST(Sgemm, AllTransposeCombinationsWithLeadingDimensions) {
  const GemmCase shapes[] = {{1, 1, 1}, {7, 5, 3}, {1, 33, 17}, {33, 17, 65}, {64, 128, 96}, {129, 3, 257}};
  uint32_t seed = 1;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (const GemmCase& g : shapes)
        for (int64_t pad : {0, 3})
          for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, std::pair{-0.75f, 0.5f}, std::pair{1.0f, 1.0f}})
            check_gemm(ta, tb, g, alpha, beta, pad, seed++);
}

TEST(Sgemm, EmptyProductsOnlyScaleC) {
  // K = 0: C = beta·C. M or N = 0: nothing to do (and nothing may be touched).
  std::vector<float> C = {1, 2, 3, 4, 5, 6};
  const float dummy = 0;
  sgemm(false, false, 2, 3, 0, 1.0f, &dummy, 1, &dummy, 3, 0.5f, C.data(), 3);
  EXPECT_EQ(C, (std::vector<float>{0.5f, 1, 1.5f, 2, 2.5f, 3}));
  sgemm(false, false, 0, 3, 4, 1.0f, nullptr, 4, nullptr, 3, 0.0f, nullptr, 3);
  sgemm(false, false, 2, 0, 4, 1.0f, nullptr, 4, nullptr, 1, 0.0f, nullptr, 1);
}

TEST(Sgemm, InvalidLeadingDimensionIsAnError) {
  // lda smaller than the row width is a caller bug; the backend reports it instead of reading
  // out of bounds.
  std::vector<float> A(12), B(12), C(9);
  EXPECT_THROW(sgemm(false, false, 3, 3, 4, 1.0f, A.data(), 2, B.data(), 3, 0.0f, C.data(), 3), Error);
}

TEST(Backend, ReportsThreadsAndName) {
  EXPECT_GE(num_threads(), 1);
  EXPECT_NE(std::string(backend().name()), "");
}

}  // namespace
}  // namespace bidora
