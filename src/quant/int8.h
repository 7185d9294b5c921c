#pragma once
// int8 frozen weights: symmetric absmax quantisation, in two layouts.
//
// RowWise (the default): bitsandbytes' LLM.int8 weight format (Linear8bitLt with
//   has_fp16_weights=False, `load_in_8bit`; formats.md §3.6), reproduced byte for byte:
//   Int8Params._quantize first casts the weight to float16, then int8_vectorwise_quant computes
//     SCB[row] = max |w16[row, :]|            (float32)
//     CB       = round(w16 * (127.0 / SCB))   (torch evaluates 127.0 / SCB as SCB.reciprocal() * 127;
//                                             round = half to even)
//   and int8_vectorwise_dequant gives W = (CB * SCB) * 7.874015718698502e-3 (two float32 products).
//   It is the default because it is what `load_in_8bit` users (and the Python tool) get, and its
//   P.weight / P.SCB tensors can be read from and written to bitsandbytes checkpoints as they are.
//   Weights beyond the float16 range (|w| >= 65520) are an error. (bitsandbytes' forward then
//   multiplies int8 activations with CB; we dequantise W and run the float32 GEMM instead.)
// Blockwise: the same arithmetic per block of `blocksize` consecutive elements of the flattened
//   tensor, on the float32 values (no float16 cast): a finer scale (0.5 bit/weight of overhead at
//   blocksize 64) that contains outliers to their block.
// All-zero row/block: CB = 0 (bitsandbytes would compute 0 * inf = NaN). A block whose
//   reciprocal overflows (absmax < 2^-128, blockwise only) uses round(w / absmax * 127).
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "quant/kernels.h"

namespace bidora::quant {

enum class Int8Layout { RowWise, Blockwise };

struct Int8Options {
  Int8Layout layout = Int8Layout::RowWise;
  int64_t blocksize = 64;  // Blockwise only: a power of two in [32, 4096]
};

class Int8Matrix {
 public:
  Int8Matrix() = default;

  // Quantises the row-major float32 matrix w[rows * cols]; errors name `what` and the element.
  static Int8Matrix quantize(const float* w, int64_t rows, int64_t cols, const Int8Options& options = {},
                             std::string_view what = "weight");
  // A bitsandbytes LLM.int8 weight as stored in checkpoints: P.weight (int8 [rows, cols]) and P.SCB
  // (float32 [rows]).
  static Int8Matrix from_rowwise(std::vector<int8_t> cb, std::vector<float> scb, int64_t rows, int64_t cols,
                                 std::string_view what);

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t numel() const { return rows_ * cols_; }
  Int8Layout layout() const { return layout_; }
  int64_t blocksize() const { return blocksize_; }             // cols for RowWise
  const std::vector<int8_t>& data() const { return q_; }       // CB, row-major
  const std::vector<float>& scales() const { return scale_; }  // SCB per row, or absmax per block

  // out[n * cols] = rows [r0, r0 + n) as float32. Single-threaded; safe to call concurrently.
  void dequantize_rows(int64_t r0, int64_t n, float* out, Kernel kernel = Kernel::Auto) const;
  void dequantize_elements(int64_t begin, int64_t end, float* out, Kernel kernel = Kernel::Auto) const;

  size_t bytes() const { return q_.size() + scale_.size() * sizeof(float); }

 private:
  int64_t rows_ = 0, cols_ = 0;
  Int8Layout layout_ = Int8Layout::RowWise;
  int64_t blocksize_ = 0;
  std::vector<int8_t> q_;
  std::vector<float> scale_;
};

}  // namespace bidora::quant
