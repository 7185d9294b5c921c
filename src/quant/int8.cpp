#include "quant/int8.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/error.h"
#include "quant/blockwise8.h"
#include "quant/chunked.h"
#include "quant/float16_round.h"

namespace bidora::quant {
namespace {

// round half to even (torch.round), clamped to the symmetric int8 range.
inline int8_t round_to_int8(float v) {
  return static_cast<int8_t>(std::clamp(std::nearbyint(v), -127.0f, 127.0f));
}

// Quantises n values that share one absmax (already computed) into q.
void quantize_group(const float* w, int64_t n, float absmax, int8_t* q) {
  const BlockScale s = block_scale(absmax);
  if (s.absmax == 0.0f) {
    std::fill(q, q + n, int8_t{0});
  } else if (s.divide) {
    for (int64_t i = 0; i < n; ++i) q[i] = round_to_int8((w[i] / s.absmax) * 127.0f);
  } else {
    const float scale = s.reciprocal * 127.0f;  // `127.0 / absmax` as torch evaluates it
    for (int64_t i = 0; i < n; ++i) q[i] = round_to_int8(w[i] * scale);
  }
}

}  // namespace

Int8Matrix Int8Matrix::quantize(const float* w, int64_t rows, int64_t cols, const Int8Options& options,
                                std::string_view what) {
  BIDORA_CHECK(rows >= 0 && cols >= 0, "{}: invalid shape [{}, {}] for int8 quantisation", what, rows, cols);
  const bool rowwise = options.layout == Int8Layout::RowWise;
  BIDORA_CHECK(rowwise || (options.blocksize >= 32 && options.blocksize <= 4096 &&
                           (options.blocksize & (options.blocksize - 1)) == 0),
               "{}: int8 blocksize {} is not a power of two in [32, 4096]", what, options.blocksize);
  const int64_t n = rows * cols;
  for (int64_t i = 0; i < n; ++i) {
    BIDORA_CHECK(std::isfinite(w[i]), "{}: cannot quantise a non-finite value ({}) at row {}, column {}",
                 what, w[i], i / cols, i % cols);
    BIDORA_CHECK(
        !rowwise || std::isfinite(round_to_f16(w[i])),
        "{}: value {} at row {}, column {} exceeds the float16 range that bitsandbytes' row-wise int8 "
        "(LLM.int8) quantisation rounds through; use the blockwise int8 layout",
        what, w[i], i / cols, i % cols);
  }

  Int8Matrix m;
  m.rows_ = rows;
  m.cols_ = cols;
  m.layout_ = options.layout;
  m.blocksize_ = rowwise ? std::max<int64_t>(cols, 1) : options.blocksize;
  m.q_.resize(static_cast<size_t>(n));
  const int64_t nb = rowwise ? rows : quant::num_blocks(n, m.blocksize_);
  m.scale_.resize(static_cast<size_t>(nb));
#pragma omp parallel if (n >= (int64_t{1} << 16))
  {
    std::vector<float> w16;  // one row rounded to float16, per thread
#pragma omp for schedule(static)
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t begin = b * m.blocksize_;
      const int64_t len = std::min(m.blocksize_, n - begin);
      const float* src = w + begin;
      if (rowwise) {
        w16.resize(static_cast<size_t>(len));
        for (int64_t i = 0; i < len; ++i) w16[static_cast<size_t>(i)] = round_to_f16(src[i]);
        src = w16.data();
      }
      const float absmax = block_absmax(src, len);
      m.scale_[static_cast<size_t>(b)] = absmax;
      quantize_group(src, len, absmax, m.q_.data() + begin);
    }
  }
  return m;
}

Int8Matrix Int8Matrix::from_rowwise(std::vector<int8_t> cb, std::vector<float> scb, int64_t rows,
                                    int64_t cols, std::string_view what) {
  BIDORA_CHECK(rows >= 0 && cols >= 0, "{}: invalid int8 shape [{}, {}]", what, rows, cols);
  BIDORA_CHECK(static_cast<int64_t>(cb.size()) == rows * cols,
               "{}: {} int8 values for shape [{}, {}], expected {}", what, cb.size(), rows, cols,
               rows * cols);
  BIDORA_CHECK(static_cast<int64_t>(scb.size()) == rows, "{}: SCB has {} values, expected one per row: {}",
               what, scb.size(), rows);
  for (size_t r = 0; r < scb.size(); ++r)
    BIDORA_CHECK(std::isfinite(scb[r]) && scb[r] >= 0.0f,
                 "{}: SCB[{}] = {} is not a finite non-negative scale", what, r, scb[r]);
  Int8Matrix m;
  m.rows_ = rows;
  m.cols_ = cols;
  m.layout_ = Int8Layout::RowWise;
  m.blocksize_ = std::max<int64_t>(cols, 1);
  m.q_ = std::move(cb);
  m.scale_ = std::move(scb);
  return m;
}

void Int8Matrix::dequantize_elements(int64_t begin, int64_t end, float* out, Kernel kernel) const {
  BIDORA_CHECK(begin >= 0 && begin <= end && end <= numel(),
               "int8 dequantisation: element range [{}, {}) outside a [{}, {}] matrix", begin, end, rows_,
               cols_);
  const detail::KernelTable& k = detail::kernel_table(kernel);
  detail::for_each_chunk(begin, end, blocksize_, [&](int64_t cb, int64_t ce) {
    k.int8(q_.data(), cb, ce - cb, blocksize_, scale_.data() + cb / blocksize_, out + (cb - begin));
  });
}

void Int8Matrix::dequantize_rows(int64_t r0, int64_t n, float* out, Kernel kernel) const {
  BIDORA_CHECK(r0 >= 0 && n >= 0 && r0 + n <= rows_,
               "int8 dequantisation: rows [{}, {}) outside a [{}, {}] matrix", r0, r0 + n, rows_, cols_);
  dequantize_elements(r0 * cols_, (r0 + n) * cols_, out, kernel);
}

}  // namespace bidora::quant
