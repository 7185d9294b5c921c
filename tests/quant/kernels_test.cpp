// SIMD dequantisation == scalar dequantisation, bit for bit, for random data and random ranges;
// nothing is written outside the requested output; multi-threaded == single-threaded.
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "core/backend.h"
#include "core/error.h"
#include "quant/int8.h"
#include "quant/kernels.h"
#include "quant/nf4.h"
#include "quant_ref.h"

namespace bidora::quant {
namespace {

std::vector<float> gaussian(size_t n, uint32_t seed, float scale = 0.02f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

constexpr float kGuard = -12345.0f;

// Dequantises [begin, end) with kernel k into a buffer with guard values on both sides.
template <class M>
std::vector<float> dequant(const M& m, int64_t begin, int64_t end, Kernel k) {
  std::vector<float> buf(static_cast<size_t>(end - begin) + 32, kGuard);
  m.dequantize_elements(begin, end, buf.data() + 16, k);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(buf[static_cast<size_t>(i)], kGuard) << "wrote before the output";
    EXPECT_EQ(buf[buf.size() - 1 - static_cast<size_t>(i)], kGuard) << "wrote past the output";
  }
  return std::vector<float>(buf.begin() + 16, buf.end() - 16);
}

class SimdVsScalar : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!avx512_available()) GTEST_SKIP() << "no AVX-512 on this CPU/build: only the scalar kernels run";
  }
};

TEST_F(SimdVsScalar, Nf4RandomMatricesAndRanges) {
  std::mt19937 rng(42);
  const int64_t shapes[][2] = {{1, 1}, {1, 3}, {3, 17}, {7, 45}, {16, 64}, {5, 100}, {33, 333}, {64, 896}};
  for (auto [rows, cols] : shapes) {
    for (int64_t bs : {32, 64, 128, 4096}) {
      for (bool dq : {false, true}) {
        SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols) + " bs" + std::to_string(bs) +
                     (dq ? " nested" : ""));
        const auto w = gaussian(static_cast<size_t>(rows * cols), static_cast<uint32_t>(rows * cols + bs));
        const Nf4Matrix m = Nf4Matrix::quantize(w.data(), rows, cols, {bs, dq});
        const int64_t n = rows * cols;
        ASSERT_TRUE(test::bits_equal(dequant(m, 0, n, Kernel::Avx512), dequant(m, 0, n, Kernel::Scalar)));
        for (int t = 0; t < 40; ++t) {
          const int64_t a = std::uniform_int_distribution<int64_t>(0, n)(rng);
          const int64_t b = std::uniform_int_distribution<int64_t>(a, std::min(n, a + 200))(rng);
          ASSERT_TRUE(test::bits_equal(dequant(m, a, b, Kernel::Avx512), dequant(m, a, b, Kernel::Scalar)))
              << "elements [" << a << ", " << b << ")";
        }
        for (int t = 0; t < 10; ++t) {
          const int64_t r0 = std::uniform_int_distribution<int64_t>(0, rows - 1)(rng);
          const int64_t nr = std::uniform_int_distribution<int64_t>(1, rows - r0)(rng);
          std::vector<float> s(static_cast<size_t>(nr * cols)), v(s.size());
          m.dequantize_rows(r0, nr, s.data(), Kernel::Scalar);
          m.dequantize_rows(r0, nr, v.data(), Kernel::Avx512);
          ASSERT_TRUE(test::bits_equal(v, s)) << "rows [" << r0 << ", " << r0 + nr << ")";
        }
      }
    }
  }
}

TEST_F(SimdVsScalar, Int8RandomMatricesAndRanges) {
  std::mt19937 rng(43);
  const int64_t shapes[][2] = {{1, 1}, {2, 15}, {3, 17}, {7, 45}, {16, 64}, {33, 333}};
  for (auto [rows, cols] : shapes) {
    const auto w = gaussian(static_cast<size_t>(rows * cols), static_cast<uint32_t>(rows + cols), 1.0f);
    for (Int8Options opt : {Int8Options{Int8Layout::RowWise, 0}, Int8Options{Int8Layout::Blockwise, 32},
                            Int8Options{Int8Layout::Blockwise, 256}}) {
      SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols) + " bs" + std::to_string(opt.blocksize));
      const Int8Matrix m = Int8Matrix::quantize(w.data(), rows, cols, opt);
      const int64_t n = rows * cols;
      ASSERT_TRUE(test::bits_equal(dequant(m, 0, n, Kernel::Avx512), dequant(m, 0, n, Kernel::Scalar)));
      for (int t = 0; t < 40; ++t) {
        const int64_t a = std::uniform_int_distribution<int64_t>(0, n)(rng);
        const int64_t b = std::uniform_int_distribution<int64_t>(a, std::min(n, a + 100))(rng);
        ASSERT_TRUE(test::bits_equal(dequant(m, a, b, Kernel::Avx512), dequant(m, a, b, Kernel::Scalar)))
            << "elements [" << a << ", " << b << ")";
      }
    }
  }
}

TEST(Kernels, ScalarRangesAreSlicesOfTheWhole) {
  // The scalar kernels' own consistency (runs on every CPU): any range equals the same slice of a
  // full dequantisation, including odd starts and ends inside a byte and ranges inside one block.
  const auto w = gaussian(37 * 45, 9);
  const Nf4Matrix m = Nf4Matrix::quantize(w.data(), 37, 45, {64, true});
  const auto whole = dequant(m, 0, m.numel(), Kernel::Scalar);
  std::mt19937 rng(10);
  for (int t = 0; t < 500; ++t) {
    const int64_t a = std::uniform_int_distribution<int64_t>(0, m.numel())(rng);
    const int64_t b = std::uniform_int_distribution<int64_t>(a, std::min(m.numel(), a + 150))(rng);
    ASSERT_TRUE(test::bits_equal(dequant(m, a, b, Kernel::Scalar),
                                 std::vector<float>(whole.begin() + a, whole.begin() + b)));
  }
}

TEST(Kernels, ParallelQuantisationEqualsSerial) {
  const int64_t rows = 300, cols = 1000;  // 300k elements: quantisation runs on all threads
  const auto w = gaussian(static_cast<size_t>(rows * cols), 12);
  const int saved = num_threads();
  set_num_threads(1);
  const Nf4Matrix nf4_1 = Nf4Matrix::quantize(w.data(), rows, cols);
  const Int8Matrix i8_1 = Int8Matrix::quantize(w.data(), rows, cols);
  set_num_threads(2);
  const Nf4Matrix nf4_2 = Nf4Matrix::quantize(w.data(), rows, cols);
  const Int8Matrix i8_2 = Int8Matrix::quantize(w.data(), rows, cols);
  set_num_threads(saved);
  EXPECT_TRUE(test::bytes_equal<uint8_t>(nf4_2.parts().packed, nf4_1.parts().packed));
  EXPECT_TRUE(test::bytes_equal<uint8_t>(nf4_2.parts().absmax_q, nf4_1.parts().absmax_q));
  EXPECT_TRUE(test::bits_equal(nf4_2.parts().absmax2, nf4_1.parts().absmax2));
  EXPECT_EQ(nf4_2.parts().offset, nf4_1.parts().offset);
  EXPECT_TRUE(test::bytes_equal<int8_t>(i8_2.data(), i8_1.data()));
  EXPECT_TRUE(test::bits_equal(i8_2.scales(), i8_1.scales()));
}

TEST(Kernels, ConcurrentDequantisationIsIdentical) {
  // Callers parallelise by giving threads different row ranges of the same (immutable) matrix.
  const int64_t rows = 256, cols = 896;
  const auto w = gaussian(static_cast<size_t>(rows * cols), 13);
  const Nf4Matrix m = Nf4Matrix::quantize(w.data(), rows, cols);
  const auto serial = dequant(m, 0, m.numel(), Kernel::Auto);
  std::vector<float> out(serial.size());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] { m.dequantize_rows(t * 64, 64, out.data() + t * 64 * cols); });
  for (auto& th : threads) th.join();
  EXPECT_TRUE(test::bits_equal(out, serial));
}

TEST(Kernels, Selection) {
  EXPECT_EQ(resolve_kernel(Kernel::Scalar), Kernel::Scalar);
  EXPECT_EQ(resolve_kernel(Kernel::Auto), avx512_available() ? Kernel::Avx512 : Kernel::Scalar);
  if (!avx512_available()) {
    EXPECT_THROW(resolve_kernel(Kernel::Avx512), Error);
  }
  EXPECT_STREQ(kernel_name(Kernel::Avx512), "avx512");
  EXPECT_EQ(kInv127, 1.0f / 127.0f);
}

}  // namespace
}  // namespace bidora::quant
