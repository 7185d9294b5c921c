#include "quant/nf4.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/error.h"
#include "quant/blockwise8.h"
#include "quant/chunked.h"
#include "quant/exact_mean.h"

namespace bidora::quant {
namespace {

bool valid_blocksize(int64_t bs) {
  return bs >= 32 && bs <= 4096 && (bs & (bs - 1)) == 0;
}

// bitsandbytes computes code8 * absmax2 in dequantize_blockwise and adds the offset in a separate
// torch op: two roundings. The empty asm hides the product from the optimiser so it cannot be fused
// into one FMA (GCC contracts a*b+c even in ISO mode).
inline float mul_then_add(float a, float b, float c) {
  float p = a * b;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  asm("" : "+x"(p));
#elif defined(__GNUC__)
  asm("" : "+m"(p));
#else
  volatile float v = p;
  p = v;
#endif
  return p + c;
}

int64_t first_non_finite(const float* w, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(w[i])) return i;
  return -1;
}

}  // namespace

Nf4Matrix::Nf4Matrix(Nf4Parts parts)
    : p_(std::move(parts)), nblocks_(quant::num_blocks(numel(), p_.blocksize)) {}

Nf4Matrix Nf4Matrix::quantize(const float* w, int64_t rows, int64_t cols, const Nf4Options& options,
                              std::string_view what) {
  BIDORA_CHECK(rows >= 0 && cols >= 0, "{}: invalid shape [{}, {}] for NF4 quantisation", what, rows, cols);
  BIDORA_CHECK(valid_blocksize(options.blocksize), "{}: NF4 blocksize {} is not a power of two in [32, 4096]",
               what, options.blocksize);
  const int64_t n = rows * cols;
  if (const int64_t bad = first_non_finite(w, n); bad >= 0)
    fail("{}: cannot quantise a non-finite value ({}) at row {}, column {}", what, w[bad], bad / cols,
         bad % cols);

  Nf4Parts p;
  p.rows = rows;
  p.cols = cols;
  p.blocksize = options.blocksize;
  const int64_t bs = options.blocksize;
  const int64_t nb = quant::num_blocks(n, bs);
  p.packed.assign(static_cast<size_t>((n + 1) / 2), 0);
  std::vector<float> absmax(static_cast<size_t>(nb));

  // The pad element of an odd n is a 0.0, which normalises to 0 -> code 7 in every kind of block.
  static constexpr uint8_t kZeroCode = 7;
#pragma omp parallel for schedule(static) if (n >= (int64_t{1} << 16))
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t begin = b * bs;  // even: blocksizes are even, so a byte never straddles blocks
    const int64_t end = std::min(n, begin + bs);
    const BlockScale s = block_scale(quant::block_absmax(w + begin, end - begin));
    absmax[static_cast<size_t>(b)] = s.absmax;
    for (int64_t i = begin; i < end; i += 2) {
      const uint8_t hi = nf4_quantize_value(s.normalise(w[i]));
      const uint8_t lo = i + 1 < end ? nf4_quantize_value(s.normalise(w[i + 1])) : kZeroCode;
      p.packed[static_cast<size_t>(i / 2)] = static_cast<uint8_t>(hi << 4 | lo);
    }
  }

  if (options.double_quant && nb > 0) {
    p.double_quant = true;
    p.code8 = dynamic_map_signed();
    p.nested_blocksize = 256;
    p.offset = exact_mean_f32(absmax.data(), absmax.size());
    for (float& a : absmax) a -= p.offset;
    p.absmax_q.resize(absmax.size());
    p.absmax2.resize(static_cast<size_t>(quant::num_blocks(nb, p.nested_blocksize)));
    quantize_blockwise(absmax, p.code8, p.nested_blocksize, p.absmax_q, p.absmax2);
  } else {
    p.absmax = std::move(absmax);
  }
  return Nf4Matrix(std::move(p));
}

Nf4Matrix Nf4Matrix::from_parts(Nf4Parts p, std::string_view what) {
  BIDORA_CHECK(p.rows >= 0 && p.cols >= 0, "{}: invalid NF4 shape [{}, {}]", what, p.rows, p.cols);
  BIDORA_CHECK(valid_blocksize(p.blocksize), "{}: NF4 blocksize {} is not a power of two in [32, 4096]", what,
               p.blocksize);
  const int64_t n = p.rows * p.cols;
  const int64_t nb = quant::num_blocks(n, p.blocksize);
  BIDORA_CHECK(static_cast<int64_t>(p.packed.size()) == (n + 1) / 2,
               "{}: {} packed NF4 bytes for shape [{}, {}], expected (n+1)/2 = {}", what, p.packed.size(),
               p.rows, p.cols, (n + 1) / 2);
  if (p.double_quant) {
    BIDORA_CHECK(p.nested_blocksize >= 1, "{}: nested blocksize {} must be positive", what,
                 p.nested_blocksize);
    BIDORA_CHECK(static_cast<int64_t>(p.absmax_q.size()) == nb,
                 "{}: {} quantised absmax values, expected one per block of {}: {}", what, p.absmax_q.size(),
                 p.blocksize, nb);
    BIDORA_CHECK(static_cast<int64_t>(p.absmax2.size()) == quant::num_blocks(nb, p.nested_blocksize),
                 "{}: {} nested absmax values, expected {} (one per {} blocks)", what, p.absmax2.size(),
                 quant::num_blocks(nb, p.nested_blocksize), p.nested_blocksize);
    BIDORA_CHECK(p.absmax.empty(), "{}: double-quantised NF4 must not also carry float32 absmax", what);
  } else {
    BIDORA_CHECK(static_cast<int64_t>(p.absmax.size()) == nb,
                 "{}: {} absmax values, expected one per block: {}", what, p.absmax.size(), nb);
  }
  return Nf4Matrix(std::move(p));
}

float Nf4Matrix::block_absmax(int64_t b) const {
  if (!p_.double_quant) return p_.absmax[static_cast<size_t>(b)];
  return mul_then_add(p_.code8[p_.absmax_q[static_cast<size_t>(b)]],
                      p_.absmax2[static_cast<size_t>(b / p_.nested_blocksize)], p_.offset);
}

void Nf4Matrix::dequantize_chunk(int64_t begin, int64_t end, float* out, const detail::KernelTable& k) const {
  const int64_t b0 = begin / p_.blocksize, b1 = (end - 1) / p_.blocksize;
  float scales[detail::kMaxChunkBlocks];
  for (int64_t b = b0; b <= b1; ++b) scales[b - b0] = block_absmax(b);
  k.nf4(p_.packed.data(), begin, end - begin, p_.blocksize, scales, p_.code.data(), out);
}

void Nf4Matrix::dequantize_elements(int64_t begin, int64_t end, float* out, Kernel kernel) const {
  BIDORA_CHECK(begin >= 0 && begin <= end && end <= numel(),
               "NF4 dequantisation: element range [{}, {}) outside a [{}, {}] matrix", begin, end, rows(),
               cols());
  const detail::KernelTable& k = detail::kernel_table(kernel);
  detail::for_each_chunk(begin, end, p_.blocksize,
                         [&](int64_t cb, int64_t ce) { dequantize_chunk(cb, ce, out + (cb - begin), k); });
}

void Nf4Matrix::dequantize_rows(int64_t r0, int64_t n, float* out, Kernel kernel) const {
  BIDORA_CHECK(r0 >= 0 && n >= 0 && r0 + n <= rows(),
               "NF4 dequantisation: rows [{}, {}) outside a [{}, {}] matrix", r0, r0 + n, rows(), cols());
  dequantize_elements(r0 * cols(), (r0 + n) * cols(), out, kernel);
}

size_t Nf4Matrix::bytes() const {
  size_t b = p_.packed.size() + p_.absmax.size() * sizeof(float) + sizeof(p_.code);
  if (p_.double_quant)
    b += p_.absmax_q.size() + p_.absmax2.size() * sizeof(float) + sizeof(p_.offset) + sizeof(p_.code8);
  return b;
}

}  // namespace bidora::quant
