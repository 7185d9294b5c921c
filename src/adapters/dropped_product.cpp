#include "adapters/dropped_product.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <type_traits>

#include <omp.h>
#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

#include "adapters/dropout.h"
#include "core/error.h"
#include "core/half.h"

namespace bidora {
namespace {

constexpr int64_t kTransposeBlock = 32;

// 16 floats as a GCC/Clang vector: one AVX-512 register with -march=native on this machine,
// split into narrower registers elsewhere. Loads and stores are unaligned (memcpy).
constexpr int kLanes = 16;
using Lanes = float __attribute__((vector_size(kLanes * sizeof(float))));
inline Lanes load(const float* p) {
  Lanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, Lanes v) {
  std::memcpy(p, &v, sizeof v);
}
// Σ of the 16 lanes as a tree of halving adds (3 vector adds, then 3 scalar ones).
inline float horizontal_sum(Lanes v) {
  using Half = float __attribute__((vector_size(kLanes / 2 * sizeof(float))));
  using Quarter = float __attribute__((vector_size(kLanes / 4 * sizeof(float))));
  Half lo, hi;
  std::memcpy(&lo, &v, sizeof lo);
  std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof lo, sizeof hi);
  const Half h = lo + hi;
  Quarter qlo, qhi;
  std::memcpy(&qlo, &h, sizeof qlo);
  std::memcpy(&qhi, reinterpret_cast<const char*>(&h) + sizeof qlo, sizeof qhi);
  const Quarter q = qlo + qhi;
  return (q[0] + q[2]) + (q[1] + q[3]);
}

// bf16 panels (weights stored bf16): one 64-byte load holds 32 outputs as 16 32-bit words, and
// a bf16 is the top half of a float, so (little-endian) `word << 16` and `word & 0xFFFF0000` are
// two float vectors, exactly, without a widening shuffle. The panel stores each group of 32 outputs
// interleaved (output i at 2i, output 16 + i at 2i + 1) so those two vectors are outputs
// 0..15 and 16..31 in order. Half the bytes per dropped input of float32 panels, which these
// L2-bound kernels are limited by.
using Words = uint32_t __attribute__((vector_size(kLanes * sizeof(uint32_t))));
constexpr int64_t kGroup = 2 * kLanes;
inline void load_bf16_group(const uint16_t* p, Lanes& first, Lanes& second) {
  Words w;
  std::memcpy(&w, p, sizeof w);
  first = __builtin_bit_cast(Lanes, w << 16);
  second = __builtin_bit_cast(Lanes, w & 0xFFFF0000u);
}
// With bf16 compute (the tile's bf16_compute, model.compute_dtype bf16) the products take their
// activations rounded to bf16, as the frozen GEMMs do, and, where the CPU has AVX512_BF16, run on
// its bf16 dot products (two multiply-adds per float lane, summed in f32): the layout kDot below.
#if defined(__AVX512BF16__)
constexpr bool kHaveBf16Dot = true;
#else
constexpr bool kHaveBf16Dot = false;
#endif

// How a bf16 panel orders the outputs of each whole group of 32 in a row (the tail is in order):
//   kWiden: output i at 2i, output 16 + i at 2i + 1 (load_bf16_group's two vectors);
//   kDot:   for each 128-bit lane L, outputs 4L..4L+3 at 8L..8L+3 and 16+4L..16+4L+3 at 8L+4..8L+7,
//           which is how vpunpcklwd / vpunpckhwd of two rows (and vpackusdw of two float vectors
//           of 16 outputs) interleave them: the dot kernels' accumulators then hold outputs in order.
enum class Bf16Layout { kWiden, kDot };
inline int64_t bf16_panel_position(int64_t o, int64_t width, Bf16Layout layout) {
  if (o >= width / kGroup * kGroup) return o;
  const int64_t i = o % kGroup;
  if (layout == Bf16Layout::kWiden) return o - i + (i < kLanes ? 2 * i : 2 * (i - kLanes) + 1);
  const int64_t h = i / kLanes, q = i % kLanes;  // half (0: outputs 0..15, 1: 16..31), index in it
  return o - i + 8 * (q / 4) + 4 * h + q % 4;
}
// Round-to-nearest-even to bf16 as f32_to_bf16 (core/half.h), on 16 lanes (NaN stays NaN).
inline Lanes round_lanes_to_bf16(Lanes v) {
  const Words u = __builtin_bit_cast(Words, v);
  const Words r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  const Words nan = __builtin_bit_cast(Words, v != v);
  return __builtin_bit_cast(Lanes, (r & ~nan) | ((Words{} + 0x7fc00000u) & nan));
}
// A panel element as float (the scalar tails read both panel types through it).
inline float panel_value(float w) {
  return w;
}
inline float panel_value(uint16_t w) {
  return bf16_to_f32(w);
}

// Columns one pass over a token's dropped inputs produces, in registers: 8 vectors of 16.
constexpr int64_t kPass = 8 * kLanes;
// Output columns per panel.
constexpr int64_t kPanelWidth = kPass;
// Inputs per panel chunk: a chunk [rows, kPanelWidth] stays in half the 1 MB L2 cache while the
// tokens' dropped inputs in it are read (wide inputs, e.g. down_proj's 4864, take several).
int64_t chunk_rows(size_t element_bytes) {
  return (int64_t{512} << 10) / (kPanelWidth * static_cast<int64_t>(element_bytes));
}

// The first of a row's (ascending) dropped columns at or after j.
inline int64_t first_at_or_after(const int32_t* cols, int64_t count, int64_t j) {
  return std::lower_bound(cols, cols + count, static_cast<int32_t>(j)) - cols;
}

// A tile of W's rows [r0, r0 + rows) transposed into panels of `width` rows: panel b holds rows
// [b·width, b·width + pw) as a contiguous [in, pw] block at offset b·width·in. Contiguous panels
// keep a panel on few pages and cache sets (a plain [in, rows] transpose put each input's slice
// of a panel on its own page: TLB misses on every dropped input). `src(o, j)` reads
// W[r0 + o, j] as a T: float (stored at position o of a panel row) or bf16 bits (at
// bf16_panel_position(o, layout)).
template <typename T, typename Src>
void transpose_to_panels(Src&& src, int64_t rows, int64_t in, int64_t width, T* panels,
                         Bf16Layout layout = Bf16Layout::kWiden) {
  const int64_t blocks = (rows + width - 1) / width;
  const int64_t jblocks = (in + kTransposeBlock - 1) / kTransposeBlock;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t jb = 0; jb < jblocks; ++jb) {
      const int64_t o0 = b * width, pw = std::min(width, rows - o0);
      T* panel = panels + o0 * in;
      const int64_t j0 = jb * kTransposeBlock, j1 = std::min(in, j0 + kTransposeBlock);
      for (int64_t o = 0; o < pw; ++o) {
        int64_t at = o;
        if constexpr (std::is_same_v<T, uint16_t>) at = bf16_panel_position(o, pw, layout);
        for (int64_t j = j0; j < j1; ++j) panel[j * pw + at] = src(o0 + o, j);
      }
    }
}

// f(r0, rows, panels, width, layout) over W's rows as panels (transpose_to_panels), tiles no
// larger than the weight tile. bf16 weights are read in place into bf16 panels (exact, half the
// bytes), and so are the bf16 rows of the other storages with bf16 compute (the frozen GEMMs'
// rounding, for_each_bf16_row_tile); otherwise float32 row tiles go into float32 panels. f is
// called with a const float* or a const uint16_t* panel pointer.
template <typename F>
void for_each_panel_tile(const FrozenMatrix& W, WeightTile& tile, PanelScratch& scratch, F&& f) {
  const int64_t in = W.cols(), width = kPanelWidth;
  const bool round = tile.bf16_compute();
  const Bf16Layout layout = round && kHaveBf16Dot ? Bf16Layout::kDot : Bf16Layout::kWiden;
  int64_t max_rows = std::max<int64_t>(1, static_cast<int64_t>(tile.capacity()) / std::max<int64_t>(in, 1));
  // Whole panels per tile where the tile holds one: a tile of, say, 215 rows would end in an
  // 87-wide panel whose last columns take the scalar path (row tiles are cut the same way).
  if (max_rows >= width) max_rows -= max_rows % width;
  // Rows [r0, r0 + rows) of W at w ([rows, in], float or bf16) into panel tiles in buf.
  auto panel_tiles = [&](int64_t r0, int64_t rows, const auto* w, auto& buf) {
    using T = std::remove_cv_t<std::remove_pointer_t<decltype(w)>>;
    for (int64_t c0 = 0; c0 < rows; c0 += max_rows) {
      const int64_t m = std::min(max_rows, rows - c0);
      const T* wc = w + c0 * in;
      if (buf.size() < static_cast<size_t>(m * in)) buf.resize(static_cast<size_t>(m * in));
      transpose_to_panels([&](int64_t o, int64_t j) { return wc[o * in + j]; }, m, in, width, buf.data(),
                          layout);
      f(r0 + c0, m, static_cast<const T*>(buf.data()), width, layout);
    }
  };
  if (round || W.bf16_data())
    for_each_bf16_row_tile(
        W, tile,
        [&](int64_t r0, int64_t rows, const uint16_t* w) { panel_tiles(r0, rows, w, scratch.panels16); },
        width);
  else
    for_each_row_tile(
        W, tile, [&](int64_t r0, int64_t rows, const float* w) { panel_tiles(r0, rows, w, scratch.panels); },
        width);
}

// c[t, o0 .. o0 + V·16) (+)= Σ over row t's dropped j in the chunk of x[t, j]·panel[j, o0 ..]:
// V vectors of accumulators stay in registers across the dropped inputs; `add` continues the
// sums of the previous chunks.
template <int V>
inline void dropped_row_pass(const float* xv, const int32_t* cols, int64_t count, const float* wt,
                             int64_t width, bool add, float* ct) {
  Lanes a[V];
#pragma GCC unroll 8
  for (int v = 0; v < V; ++v) a[v] = add ? load(ct + v * kLanes) : Lanes{};
  for (int64_t k = 0; k < count; ++k) {
    const float s = xv[k];
    const float* wr = wt + static_cast<int64_t>(cols[k]) * width;
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) a[v] += s * load(wr + v * kLanes);
  }
#pragma GCC unroll 8
  for (int v = 0; v < V; ++v) store(ct + v * kLanes, a[v]);
}

// dropped_row_pass on a bf16 panel: G groups of 32 columns (2·G vectors of accumulators).
template <int G>
inline void dropped_row_pass_bf16(const float* xv, const int32_t* cols, int64_t count, const uint16_t* wt,
                                  int64_t width, bool add, float* ct) {
  Lanes a[2 * G];
#pragma GCC unroll 8
  for (int v = 0; v < 2 * G; ++v) a[v] = add ? load(ct + v * kLanes) : Lanes{};
  for (int64_t k = 0; k < count; ++k) {
    const float s = xv[k];
    const uint16_t* wr = wt + static_cast<int64_t>(cols[k]) * width;
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) {
      Lanes first, second;
      load_bf16_group(wr + g * kGroup, first, second);
      a[2 * g] += s * first;
      a[2 * g + 1] += s * second;
    }
  }
#pragma GCC unroll 8
  for (int v = 0; v < 2 * G; ++v) store(ct + v * kLanes, a[v]);
}

// Calls f(t, k0, k1, wt) for the rows t of this thread and each chunk of inputs of each panel:
// wt is the panel's [in, width] block (row j at wt + j·width), k0..k1 row t's dropped entries in
// the chunk. Loop order panel → chunk → token keeps one chunk in L2 while the tokens pass.
template <typename T, typename F>
void for_each_panel_chunk(const DroppedSet& set, const T* tile_panels, int64_t rows, int64_t in,
                          int64_t block, int64_t chunk, F&& f) {
  const int64_t n = set.n;
#pragma omp parallel
  for (int64_t ob = 0; ob < rows; ob += block) {
    const int64_t width = std::min(block, rows - ob);
    const T* wt = tile_panels + ob * in;  // [in, width]
    for (int64_t j0 = 0; j0 < in; j0 += chunk) {
      const int64_t j1 = std::min(in, j0 + chunk);
      // nowait: schedule(static) gives every thread the same rows in every panel and chunk, and
      // a row's results belong to its thread alone, so the panels need no barrier between them
      // (a barrier per panel made the threads wait on each other dozens of times per call).
#pragma omp for schedule(static) nowait
      for (int64_t t = 0; t < n; ++t) {
        const int32_t* cols = set.cols.data() + set.offsets[t];
        const int64_t count = set.offsets[t + 1] - set.offsets[t];
        const int64_t k0 = j0 == 0 ? 0 : first_at_or_after(cols, count, j0);
        const int64_t k1 = j1 == in ? count : first_at_or_after(cols, count, j1);
        f(t, ob, width, j0 == 0, set.offsets[t] + k0, set.offsets[t] + k1, wt);
      }
    }
  }
}

#if defined(__AVX512BF16__)
// dropped_row_pass on a kDot panel with bf16 dot products: the (already bf16-rounded) dropped
// inputs go in pairs, whose two panel rows vpunpck{l,h}wd interleaves so that each float lane
// gets x_a·W[o, a] + x_b·W[o, b] (a lone last input pairs with zeros). G groups of 32 columns.
template <int G>
inline void dropped_row_pass_dot(const float* xv, const int32_t* cols, int64_t count, const uint16_t* wt,
                                 int64_t width, bool add, float* ct) {
  __m512 a[2 * G];
#pragma GCC unroll 8
  for (int v = 0; v < 2 * G; ++v) a[v] = add ? _mm512_loadu_ps(ct + v * kLanes) : _mm512_setzero_ps();
  auto bits = [](float f) { return std::bit_cast<uint32_t>(f) >> 16; };
  for (int64_t k = 0; k < count; k += 2) {
    const bool pair = k + 1 < count;
    const uint32_t xs = bits(xv[k]) | (pair ? bits(xv[k + 1]) << 16 : 0u);
    const __m512bh xp = (__m512bh)_mm512_set1_epi32(static_cast<int>(xs));
    const uint16_t* ra = wt + static_cast<int64_t>(cols[k]) * width;
    const uint16_t* rb = pair ? wt + static_cast<int64_t>(cols[k + 1]) * width : nullptr;
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) {
      const __m512i wa = _mm512_loadu_si512(ra + g * kGroup);
      const __m512i wb = pair ? _mm512_loadu_si512(rb + g * kGroup) : _mm512_setzero_si512();
      a[2 * g] = _mm512_dpbf16_ps(a[2 * g], (__m512bh)_mm512_unpacklo_epi16(wa, wb), xp);
      a[2 * g + 1] = _mm512_dpbf16_ps(a[2 * g + 1], (__m512bh)_mm512_unpackhi_epi16(wa, wb), xp);
    }
  }
#pragma GCC unroll 8
  for (int v = 0; v < 2 * G; ++v) _mm512_storeu_ps(ct + v * kLanes, a[v]);
}

// 16 floats rounded to bf16, as 32-bit lanes holding the bf16 in their low half.
inline __m512i bf16_bits_low(Lanes v) {
  return __builtin_bit_cast(__m512i, __builtin_bit_cast(Words, round_lanes_to_bf16(v)) >> 16);
}

// sampled_row_pass on a kDot panel: dy·scale for the block's 32·G outputs, rounded to bf16 and
// packed in the panel's order (vpackusdw of two vectors of 16 outputs), dotted with each dropped
// input's panel row by bf16 dot products.
template <int G>
inline void sampled_row_pass_dot(const float* d, const float* scale, const int32_t* cols, int64_t count,
                                 const uint16_t* wt, int64_t width, float* acc) {
  __m512bh ds[G];
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g) {
    Lanes lo = load(d + g * kGroup), hi = load(d + g * kGroup + kLanes);
    if (scale) {
      lo *= load(scale + g * kGroup);
      hi *= load(scale + g * kGroup + kLanes);
    }
    ds[g] = (__m512bh)_mm512_packus_epi32(bf16_bits_low(lo), bf16_bits_low(hi));
  }
  for (int64_t k = 0; k < count; ++k) {
    const uint16_t* wr = wt + static_cast<int64_t>(cols[k]) * width;
    __m512 a = _mm512_dpbf16_ps(_mm512_setzero_ps(), ds[0], (__m512bh)_mm512_loadu_si512(wr));
#pragma GCC unroll 4
    for (int g = 1; g < G; ++g) a = _mm512_dpbf16_ps(a, ds[g], (__m512bh)_mm512_loadu_si512(wr + g * kGroup));
    acc[k] += horizontal_sum(__builtin_bit_cast(Lanes, a));
  }
}
#endif

void dropped_times_wt_panels(const float* x, const DroppedSet& set, const FrozenMatrix& W, WeightTile& tile,
                             PanelScratch& scratch, float* c, int64_t ldc) {
  const int64_t in = W.cols();
  // The dropped inputs' values, gathered once: every panel then reads them contiguously instead
  // of touching a cache line of x per dropped input (for wide inputs, a stream of random lines
  // that evicted the panel from L2).
  std::vector<float>& gathered = scratch.gathered;
  gathered.resize(static_cast<size_t>(set.nnz()));
  const bool round = tile.bf16_compute();  // the inputs as the bf16 frozen GEMM takes them
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < set.n; ++t)
    for (int64_t k = set.offsets[t]; k < set.offsets[t + 1]; ++k) {
      const float v = x[t * in + set.cols[k]];
      gathered[k] = round ? round_to_bf16(v) : v;
    }
  for_each_panel_tile(
      W, tile, scratch,
      [&](int64_t r0, int64_t rows, const auto* tile_panels, int64_t block,
          [[maybe_unused]] Bf16Layout layout) {
        using T = std::remove_cv_t<std::remove_pointer_t<decltype(tile_panels)>>;
        for_each_panel_chunk(
            set, tile_panels, rows, in, block, chunk_rows(sizeof(T)),
            [&](int64_t t, int64_t ob, int64_t width, bool first, int64_t k0, int64_t k1, const T* wt) {
              const float* xv = gathered.data() + k0;
              const int32_t* cols = set.cols.data() + k0;
              const int64_t count = k1 - k0;
              float* ct = c + t * ldc + r0 + ob;
              const bool add = !first;
              int64_t o = 0;
              if constexpr (std::is_same_v<T, uint16_t>) {
#if defined(__AVX512BF16__)
                if (layout == Bf16Layout::kDot) {
                  for (; o + 4 * kGroup <= width; o += 4 * kGroup)
                    dropped_row_pass_dot<4>(xv, cols, count, wt + o, width, add, ct + o);
                  for (; o + kGroup <= width; o += kGroup)
                    dropped_row_pass_dot<1>(xv, cols, count, wt + o, width, add, ct + o);
                }
#endif
                for (; o + 4 * kGroup <= width; o += 4 * kGroup)
                  dropped_row_pass_bf16<4>(xv, cols, count, wt + o, width, add, ct + o);
                for (; o + kGroup <= width; o += kGroup)
                  dropped_row_pass_bf16<1>(xv, cols, count, wt + o, width, add, ct + o);
              } else {
                for (; o + kPass <= width; o += kPass)
                  dropped_row_pass<8>(xv, cols, count, wt + o, width, add, ct + o);
                for (; o + kLanes <= width; o += kLanes)
                  dropped_row_pass<1>(xv, cols, count, wt + o, width, add, ct + o);
              }
              for (; o < width; ++o) {  // the tail (a bf16 panel stores it in order)
                float acc = add ? ct[o] : 0.0f;
                for (int64_t k = 0; k < count; ++k) acc += xv[k] * panel_value(wt[cols[k] * width + o]);
                ct[o] = acc;
              }
            });
      });
}

// acc[k] += Σ_o d[o]·scale[o]·panel[j_k, o] over the V·16 columns at d, for the dropped j_k:
// the scaled dy block stays in registers across the dropped inputs.
template <int V>
inline void sampled_row_pass(const float* d, const float* scale, const int32_t* cols, int64_t count,
                             const float* wt, int64_t width, float* acc) {
  Lanes ds[V];
#pragma GCC unroll 8
  for (int v = 0; v < V; ++v)
    ds[v] = scale ? load(d + v * kLanes) * load(scale + v * kLanes) : load(d + v * kLanes);
  for (int64_t k = 0; k < count; ++k) {
    const float* wr = wt + static_cast<int64_t>(cols[k]) * width;
    Lanes a = ds[0] * load(wr);
#pragma GCC unroll 8
    for (int v = 1; v < V; ++v) a += ds[v] * load(wr + v * kLanes);
    acc[k] += horizontal_sum(a);
  }
}

// sampled_row_pass on a kWiden bf16 panel: G groups of 32 columns (round: dy·scale rounded to
// bf16 first). The products are summed in the same order as the float32 kernel's (vectors of
// columns 0..15, 16..31, ...).
template <int G>
inline void sampled_row_pass_bf16(const float* d, const float* scale, const int32_t* cols, int64_t count,
                                  const uint16_t* wt, int64_t width, bool round, float* acc) {
  Lanes ds[2 * G];
#pragma GCC unroll 8
  for (int v = 0; v < 2 * G; ++v) {
    ds[v] = scale ? load(d + v * kLanes) * load(scale + v * kLanes) : load(d + v * kLanes);
    if (round) ds[v] = round_lanes_to_bf16(ds[v]);
  }
  for (int64_t k = 0; k < count; ++k) {
    const uint16_t* wr = wt + static_cast<int64_t>(cols[k]) * width;
    Lanes first, second;
    load_bf16_group(wr, first, second);
    Lanes a = ds[0] * first;
    a += ds[1] * second;
#pragma GCC unroll 4
    for (int g = 1; g < G; ++g) {
      load_bf16_group(wr + g * kGroup, first, second);
      a += ds[2 * g] * first;
      a += ds[2 * g + 1] * second;
    }
    acc[k] += horizontal_sum(a);
  }
}

void sampled_dy_times_w_panels(const float* dy, const float* col_scale, const DroppedSet& set,
                               const FrozenMatrix& W, WeightTile& tile, PanelScratch& scratch,
                               std::vector<float>& acc) {
  const int64_t in = W.cols(), out = W.rows();
  acc.assign(static_cast<size_t>(set.nnz()), 0.0f);
  const bool round = tile.bf16_compute();  // dy·scale as the bf16 frozen GEMM takes it
  for_each_panel_tile(
      W, tile, scratch,
      [&](int64_t r0, int64_t rows, const auto* tile_panels, int64_t block,
          [[maybe_unused]] Bf16Layout layout) {
        using T = std::remove_cv_t<std::remove_pointer_t<decltype(tile_panels)>>;
        for_each_panel_chunk(
            set, tile_panels, rows, in, block, chunk_rows(sizeof(T)),
            [&](int64_t t, int64_t ob, int64_t width, bool, int64_t k0, int64_t k1, const T* wt) {
              const float* d = dy + t * out + r0 + ob;
              const float* scale = col_scale ? col_scale + r0 + ob : nullptr;
              const int32_t* cols = set.cols.data() + k0;
              const int64_t count = k1 - k0;
              float* a = acc.data() + k0;
              int64_t o = 0;
              if constexpr (std::is_same_v<T, uint16_t>) {
#if defined(__AVX512BF16__)
                if (layout == Bf16Layout::kDot) {
                  for (; o + 4 * kGroup <= width; o += 4 * kGroup)
                    sampled_row_pass_dot<4>(d + o, scale ? scale + o : nullptr, cols, count, wt + o, width,
                                            a);
                  for (; o + kGroup <= width; o += kGroup)
                    sampled_row_pass_dot<1>(d + o, scale ? scale + o : nullptr, cols, count, wt + o, width,
                                            a);
                }
#endif
                for (; o + 4 * kGroup <= width; o += 4 * kGroup)
                  sampled_row_pass_bf16<4>(d + o, scale ? scale + o : nullptr, cols, count, wt + o, width,
                                           round, a);
                for (; o + kGroup <= width; o += kGroup)
                  sampled_row_pass_bf16<1>(d + o, scale ? scale + o : nullptr, cols, count, wt + o, width,
                                           round, a);
              } else {
                for (; o + kPass <= width; o += kPass)
                  sampled_row_pass<8>(d + o, scale ? scale + o : nullptr, cols, count, wt + o, width, a);
                for (; o + kLanes <= width; o += kLanes)
                  sampled_row_pass<1>(d + o, scale ? scale + o : nullptr, cols, count, wt + o, width, a);
              }
              for (; o < width; ++o) {  // the tail (a bf16 panel stores it in order)
                const float ds = scale ? d[o] * scale[o] : d[o];
                const float dso = round ? round_to_bf16(ds) : ds;
                for (int64_t k = 0; k < count; ++k) a[k] += dso * panel_value(wt[cols[k] * width + o]);
              }
            });
      });
}

}  // namespace

void find_dropped(int64_t n, int64_t width, float p, uint64_t stream, int64_t row0, DroppedSet& set) {
  if (set.valid && set.n == n && set.width == width && set.p == p && set.stream == stream && set.row0 == row0)
    return;
  set.valid = false;  // until the lists below are complete
  set.n = n;
  set.width = width;
  set.p = p;
  set.stream = stream;
  set.row0 = row0;
  set.offsets.assign(static_cast<size_t>(n + 1), 0);
  const int max_threads = omp_get_max_threads();
  if (set.per_thread.size() < static_cast<size_t>(max_threads)) set.per_thread.resize(max_threads);
  int team = 1;
  // One pass over the counter-based mask: each thread lists the dropped columns of its rows
  // (schedule(static) hands out contiguous row ranges in thread order, so the lists concatenate
  // in row order). A row's mask is evaluated into flags first, a loop that vectorises.
#pragma omp parallel
  {
    DroppedSet::ThreadList& local = set.per_thread[omp_get_thread_num()];
    local.cols.clear();
    local.flags.resize(static_cast<size_t>(width));
    uint8_t* flags = local.flags.data();
#pragma omp single
    team = omp_get_num_threads();
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t j = 0; j < width; ++j) flags[j] = dropout_keep(stream, row0, t, j, width, p) ? 0 : 1;
      const size_t before = local.cols.size();
      // Eight flags at a time: a word of zeros (two thirds of them at p = 0.05) is skipped, and
      // the others' flags are gathered into 8 bits (byte i's low bit to bit i: the multiply sums
      // shifted copies whose top byte holds them) that are walked lowest first. A branch per
      // flag instead mispredicted at every dropped input.
      int64_t j = 0;
      for (; j + 8 <= width; j += 8) {
        uint64_t word;
        std::memcpy(&word, flags + j, sizeof word);
        if (word == 0) continue;
        uint32_t bits = static_cast<uint32_t>(((word & 0x0101010101010101ull) * 0x0102040810204080ull) >> 56);
        for (; bits != 0; bits &= bits - 1)
          local.cols.push_back(static_cast<int32_t>(j + std::countr_zero(bits)));
      }
      for (; j < width; ++j)
        if (flags[j]) local.cols.push_back(static_cast<int32_t>(j));
      set.offsets[t + 1] = static_cast<int64_t>(local.cols.size() - before);
    }
  }
  for (int64_t t = 0; t < n; ++t) set.offsets[t + 1] += set.offsets[t];
  set.cols.resize(static_cast<size_t>(set.offsets[n]));
  size_t at = 0;
  for (int i = 0; i < team; ++i) {
    std::copy(set.per_thread[i].cols.begin(), set.per_thread[i].cols.end(), set.cols.begin() + at);
    at += set.per_thread[i].cols.size();
  }
  BIDORA_CHECK(at == set.cols.size(), "find_dropped: {} dropped positions listed, {} counted", at,
               set.cols.size());
  set.valid = true;
}

void dropout_apply_dropped(const float* x, const DroppedSet& set, float p, float* out) {
  const int64_t n = set.n, w = set.width;
  const float keep_scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * w;
    float* ot = out + t * w;
    for (int64_t j = 0; j < w; ++j) ot[j] = xt[j] * keep_scale;
    for (int64_t k = set.offsets[t]; k < set.offsets[t + 1]; ++k) ot[set.cols[k]] = 0.0f;
  }
}

void dropout_backward_add_dropped(const float* g, const float* sampled, const DroppedSet& set, float p,
                                  float* acc) {
  const int64_t n = set.n, w = set.width;
  const float keep_scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const float* gt = g + t * w;
    float* at = acc + t * w;
    int64_t j = 0;
    // The kept runs between dropped columns (ascending in the set) vectorise.
    for (int64_t k = set.offsets[t]; k <= set.offsets[t + 1]; ++k) {
      const int64_t end = k < set.offsets[t + 1] ? set.cols[k] : w;
      for (; j < end; ++j) at[j] += gt[j] * keep_scale;
      if (k < set.offsets[t + 1]) {
        at[j] -= sampled[k] * keep_scale;
        ++j;
      }
    }
  }
}

void dropped_times_wt(const float* x, const DroppedSet& set, const FrozenMatrix& W, WeightTile& tile,
                      PanelScratch& scratch, float* c, int64_t ldc) {
  BIDORA_CHECK(set.width == W.cols(), "dropped_times_wt: dropout set over {} columns, weight has {}",
               set.width, W.cols());
  dropped_times_wt_panels(x, set, W, tile, scratch, c, ldc);
}

void sampled_dy_times_w(const float* dy, const float* col_scale, const DroppedSet& set, const FrozenMatrix& W,
                        WeightTile& tile, PanelScratch& scratch, std::vector<float>& acc) {
  BIDORA_CHECK(set.width == W.cols(), "sampled_dy_times_w: dropout set over {} columns, weight has {}",
               set.width, W.cols());
  sampled_dy_times_w_panels(dy, col_scale, set, W, tile, scratch, acc);
}

}  // namespace bidora
