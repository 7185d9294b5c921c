#pragma once
// NF4 frozen weights with optional double quantisation, laid out exactly like bitsandbytes'
// Params4bit (shared/reference/formats.md §3.2-3.4), dequantised by row ranges for the GEMMs.
//
// Quantise (quantize_4bit, quant_type="nf4"), over the row-major tensor flattened to n elements:
//   blocks of `blocksize` consecutive elements (default 64; the last block may be partial);
//   absmax[b] = max |w| (float32); x = w * (1/absmax) (float32 reciprocal, then multiply, as the
//   CUDA kernel); code = dQuantizeNF4(x) (strict > against the midpoints, so a tie goes down);
//   byte k = code(2k) << 4 | code(2k+1) (first element in the HIGH nibble), (n+1)/2 bytes, an odd
//   n padded with a 0.0 element (code 7).
// All-zero block: we follow the bitsandbytes CPU path (absmax clamped to 1e-38, so every code is 7,
//   the value 0.0) and store absmax 0; the CUDA kernel gets NaN -> code 0 instead (-1.0 * 0 = 0:
//   the same dequantised values, different bytes). A block whose 1/absmax overflows
//   (absmax < 2^-128) divides instead of multiplying (CUDA would produce NaN codes).
// Double quantisation (compress_statistics, bnb_4bit_use_double_quant):
//   offset = mean(absmax), rounded exactly once to float32 (see exact_mean.h for why not torch's
//   float32 mean); absmax - offset quantised with 8-bit blockwise quantisation (blocksize 256, the
//   signed dynamic map; blockwise8.h) into absmax_q (uint8 per block) and absmax2 (float32 per 256
//   blocks).
// Dequantise (float32, bit-identical to bitsandbytes' float32 dequantize_4bit):
//   absmax_b = code8[absmax_q[b]] * absmax2[b / 256] + offset (a multiply and a separate add)
//   w = code4[nibble] * absmax_b.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "quant/dynamic_map.h"
#include "quant/kernels.h"
#include "quant/nf4_code.h"

namespace bidora::quant {

struct Nf4Options {
  int64_t blocksize = 64;    // a power of two in [32, 4096]
  bool double_quant = true;  // QLoRA's bnb_4bit_use_double_quant
};

// Everything a quantised NF4 matrix consists of (also what a pre-quantised checkpoint holds).
struct Nf4Parts {
  int64_t rows = 0, cols = 0;
  int64_t blocksize = 64;
  std::vector<uint8_t> packed;            // (n + 1) / 2 bytes
  std::array<float, 16> code = kNf4Code;  // quant_map
  bool double_quant = false;
  std::vector<float> absmax;      // float32 [nblocks] when !double_quant
  std::vector<uint8_t> absmax_q;  // uint8 [nblocks] when double_quant
  std::vector<float> absmax2;     // float32 [ceil(nblocks / nested_blocksize)]
  float offset = 0.0f;
  int64_t nested_blocksize = 256;
  Code256 code8{};  // nested_quant_map
};

class Nf4Matrix {
 public:
  Nf4Matrix() = default;

  // Quantises the row-major float32 matrix w[rows * cols] (values converted exactly from the
  // checkpoint). Non-finite values are an error naming `what` and the element.
  static Nf4Matrix quantize(const float* w, int64_t rows, int64_t cols, const Nf4Options& options = {},
                            std::string_view what = "weight");
  // Takes parts (e.g. read from a bitsandbytes checkpoint) after checking every size; errors name
  // `what`.
  static Nf4Matrix from_parts(Nf4Parts parts, std::string_view what);

  int64_t rows() const { return p_.rows; }
  int64_t cols() const { return p_.cols; }
  int64_t numel() const { return p_.rows * p_.cols; }
  int64_t blocksize() const { return p_.blocksize; }
  int64_t num_blocks() const { return nblocks_; }
  bool double_quant() const { return p_.double_quant; }
  const Nf4Parts& parts() const { return p_; }

  // The absmax of block b as bitsandbytes dequantises it.
  float block_absmax(int64_t b) const;

  // out[n * cols] = rows [r0, r0 + n) as float32. Single-threaded; const, so any number of
  // threads may dequantise (different or the same) ranges concurrently.
  void dequantize_rows(int64_t r0, int64_t n, float* out, Kernel kernel = Kernel::Auto) const;
  // out[end - begin] = flattened elements [begin, end).
  void dequantize_elements(int64_t begin, int64_t end, float* out, Kernel kernel = Kernel::Auto) const;

  // Bytes held: packed codes, statistics and code tables.
  size_t bytes() const;

 private:
  explicit Nf4Matrix(Nf4Parts parts);
  void dequantize_chunk(int64_t begin, int64_t end, float* out, const detail::KernelTable& k) const;

  Nf4Parts p_;
  int64_t nblocks_ = 0;
};

}  // namespace bidora::quant
