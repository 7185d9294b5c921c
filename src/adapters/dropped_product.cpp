#include "adapters/dropped_product.h"

#include <algorithm>
#include <cstring>

#include <omp.h>

#include "adapters/dropout.h"
#include "core/error.h"

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

constexpr int64_t kMaxColumnBlock = 128;

// wt[j, o] = w[o, j]·(row_scale ? row_scale[o] : 1) for a [rows, cols] tile, in cache blocks.
void transpose_scaled(const float* w, int64_t rows, int64_t cols, const float* row_scale, float* wt) {
#pragma omp parallel for schedule(static)
  for (int64_t j0 = 0; j0 < cols; j0 += kTransposeBlock) {
    const int64_t j1 = std::min(cols, j0 + kTransposeBlock);
    for (int64_t o0 = 0; o0 < rows; o0 += kTransposeBlock) {
      const int64_t o1 = std::min(rows, o0 + kTransposeBlock);
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t o = o0; o < o1; ++o)
          wt[j * rows + o] = w[o * cols + j] * (row_scale ? row_scale[o] : 1.0f);
    }
  }
}

// Output columns per pass: the transposed block [in, width] should stay in a 1 MB L2 cache
// while every token's dropped rows are read from it.
int64_t column_block(int64_t in) {
  return in * kMaxColumnBlock * static_cast<int64_t>(sizeof(float)) <= (int64_t{512} << 10)
             ? kMaxColumnBlock
             : kMaxColumnBlock / 2;
}

// f(r0, rows, wt): W's rows [r0, r0 + rows) as a transposed f32 tile [in, rows], each row o
// scaled by row_scale[r0 + o] when given. Tiles are no larger than the weight tile, also when
// W is stored as f32 (then for_each_row_tile hands over the whole matrix at once).
template <typename F>
void for_each_transposed_tile(const FrozenMatrix& W, WeightTile& tile, const float* row_scale,
                              std::vector<float>& transposed, F&& f) {
  const int64_t in = W.cols();
  const int64_t max_rows =
      std::max<int64_t>(1, static_cast<int64_t>(tile.capacity()) / std::max<int64_t>(in, 1));
  for_each_row_tile(W, tile, [&](int64_t r0, int64_t rows, const float* w) {
    for (int64_t c0 = 0; c0 < rows; c0 += max_rows) {
      const int64_t m = std::min(max_rows, rows - c0);
      if (transposed.size() < static_cast<size_t>(m * in)) transposed.resize(static_cast<size_t>(m * in));
      transpose_scaled(w + c0 * in, m, in, row_scale ? row_scale + r0 + c0 : nullptr, transposed.data());
      f(r0 + c0, m, static_cast<const float*>(transposed.data()));
    }
  });
}

}  // namespace

void find_dropped(int64_t n, int64_t width, float p, uint64_t stream, int64_t row0, DroppedSet& set) {
  set.n = n;
  set.width = width;
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
      for (int64_t j = 0; j < width; ++j)
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
}

void dropped_times_wt(const float* x, const DroppedSet& set, const FrozenMatrix& W, WeightTile& tile,
                      std::vector<float>& transposed, float* c, int64_t ldc) {
  const int64_t in = W.cols(), n = set.n;
  BIDORA_CHECK(set.width == in, "dropped_times_wt: dropout set over {} columns, weight has {}", set.width,
               in);
  const int64_t block = column_block(in);
  for_each_transposed_tile(W, tile, nullptr, transposed, [&](int64_t r0, int64_t rows, const float* wt) {
#pragma omp parallel
    for (int64_t ob = 0; ob < rows; ob += block) {
      const int64_t width = std::min(block, rows - ob);
#pragma omp for schedule(static)
      for (int64_t t = 0; t < n; ++t) {
        const float* xt = x + t * in;
        float* ct = c + t * ldc + r0 + ob;
        int64_t o = 0;
        for (; o + kLanes * 4 <= width; o += kLanes * 4) {
          // Four vector accumulators stay in registers across the row's dropped inputs.
          Lanes a0{}, a1{}, a2{}, a3{};
          for (int64_t k = set.offsets[t]; k < set.offsets[t + 1]; ++k) {
            const float s = xt[set.cols[k]];
            const float* wr = wt + set.cols[k] * rows + ob + o;
            a0 += s * load(wr);
            a1 += s * load(wr + kLanes);
            a2 += s * load(wr + 2 * kLanes);
            a3 += s * load(wr + 3 * kLanes);
          }
          store(ct + o, a0);
          store(ct + o + kLanes, a1);
          store(ct + o + 2 * kLanes, a2);
          store(ct + o + 3 * kLanes, a3);
        }
        for (; o + kLanes <= width; o += kLanes) {
          Lanes a{};
          for (int64_t k = set.offsets[t]; k < set.offsets[t + 1]; ++k)
            a += xt[set.cols[k]] * load(wt + set.cols[k] * rows + ob + o);
          store(ct + o, a);
        }
        for (; o < width; ++o) {
          float acc = 0.0f;
          for (int64_t k = set.offsets[t]; k < set.offsets[t + 1]; ++k)
            acc += xt[set.cols[k]] * wt[set.cols[k] * rows + ob + o];
          ct[o] = acc;
        }
      }
    }
  });
}

void sampled_dy_times_w(const float* dy, const float* col_scale, const DroppedSet& set, const FrozenMatrix& W,
                        WeightTile& tile, std::vector<float>& transposed, std::vector<float>& acc) {
  const int64_t in = W.cols(), out = W.rows(), n = set.n;
  BIDORA_CHECK(set.width == in, "sampled_dy_times_w: dropout set over {} columns, weight has {}", set.width,
               in);
  acc.assign(static_cast<size_t>(set.nnz()), 0.0f);
  const int64_t block = column_block(in);
  for_each_transposed_tile(W, tile, col_scale, transposed, [&](int64_t r0, int64_t rows, const float* wt) {
#pragma omp parallel
    for (int64_t ob = 0; ob < rows; ob += block) {
      const int64_t width = std::min(block, rows - ob);
#pragma omp for schedule(static)
      for (int64_t t = 0; t < n; ++t) {
        const float* d = dy + t * out + r0 + ob;
        for (int64_t k = set.offsets[t]; k < set.offsets[t + 1]; ++k) {
          const float* wr = wt + set.cols[k] * rows + ob;
          Lanes a0{}, a1{};
          int64_t o = 0;
          for (; o + kLanes * 2 <= width; o += kLanes * 2) {
            a0 += load(d + o) * load(wr + o);
            a1 += load(d + o + kLanes) * load(wr + o + kLanes);
          }
          float s = horizontal_sum(a0 + a1);
          for (; o < width; ++o) s += d[o] * wr[o];
          acc[k] += s;
        }
      }
    }
  });
}

}  // namespace bidora
