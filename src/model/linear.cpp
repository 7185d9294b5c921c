#include "model/linear.h"

#include <algorithm>

#include "core/backend.h"
#include "core/half.h"

namespace bidora {

int64_t WeightTile::rows_per_tile(int64_t cols) {
  if (static_cast<int64_t>(buf_.size()) < cols) buf_.resize(cols);  // else rows_f32 overruns the tile
  return std::max<int64_t>(1, static_cast<int64_t>(buf_.size()) / std::max<int64_t>(cols, 1));
}

uint16_t* WeightTile::bf16_acts(size_t n) {
  if (acts_.size() < n) acts_.resize(n);
  return acts_.data();
}

uint16_t* WeightTile::bf16_weights() {
  if (weights_.size() < buf_.size()) weights_.resize(buf_.size());
  return weights_.data();
}

void round_to_bf16_rows(const float* src, int64_t rows, int64_t cols, int64_t ld_src, uint16_t* dst,
                        int64_t ld_dst) {
  // Split long rows too, so a single activation row (generation) still uses every thread.
  constexpr int64_t kChunk = 4096;
  const int64_t chunks_per_row = (cols + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (rows * cols >= (int64_t{1} << 15))
  for (int64_t i = 0; i < rows * chunks_per_row; ++i) {
    const int64_t r = i / chunks_per_row, c0 = (i % chunks_per_row) * kChunk;
    f32_to_bf16_n(src + r * ld_src + c0, dst + r * ld_dst + c0,
                  static_cast<size_t>(std::min(kChunk, cols - c0)));
  }
}

void linear_forward(const float* x, int64_t n, const FrozenMatrix& W, const float* bias, float* y,
                    WeightTile& tile) {
  const int64_t out = W.rows(), in = W.cols();
  if (n == 0) return;  // no rows (y may be null: no pointer arithmetic on it)
  if (tile.bf16_compute()) {
    uint16_t* xb = tile.bf16_acts(static_cast<size_t>(n * in));
    round_to_bf16_rows(x, n, in, in, xb, in);
    for_each_bf16_row_tile(W, tile, [&](int64_t r0, int64_t m, const uint16_t* w) {
      gemm_bf16(true, n, m, in, xb, in, w, in, 0.0f, y + r0, out);
    });
  } else if (const float* w = W.f32_data()) {
    sgemm(false, true, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
  } else {
    const int64_t step = std::min(out, tile.rows_per_tile(in));
    for (int64_t r0 = 0; r0 < out; r0 += step) {
      const int64_t m = std::min(step, out - r0);
      W.rows_f32(r0, m, tile.data());
      sgemm(false, true, n, m, in, 1.0f, x, in, tile.data(), in, 0.0f, y + r0, out);
    }
  }
  if (bias) add_bias(y, n, out, bias);
}

void add_bias(float* y, int64_t n, int64_t out, const float* bias) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t)
    for (int64_t o = 0; o < out; ++o) y[t * out + o] += bias[o];
}

void linear_backward_input(const float* dy, int64_t n, const FrozenMatrix& W, float* dx, float beta,
                           WeightTile& tile) {
  const int64_t out = W.rows(), in = W.cols();
  if (n == 0) return;  // no rows (dx may be null: no pointer arithmetic on it)
  if (tile.bf16_compute()) {
    uint16_t* dyb = tile.bf16_acts(static_cast<size_t>(n * out));
    round_to_bf16_rows(dy, n, out, out, dyb, out);
    for_each_bf16_row_tile(W, tile, [&](int64_t r0, int64_t m, const uint16_t* w) {
      gemm_bf16(false, n, in, m, dyb + r0, out, w, in, r0 == 0 ? beta : 1.0f, dx, in);
    });
    return;
  }
  if (const float* w = W.f32_data()) {
    sgemm(false, false, n, in, out, 1.0f, dy, out, w, in, beta, dx, in);
    return;
  }
  const int64_t step = std::min(out, tile.rows_per_tile(in));
  for (int64_t r0 = 0; r0 < out; r0 += step) {
    const int64_t m = std::min(step, out - r0);
    W.rows_f32(r0, m, tile.data());
    sgemm(false, false, n, in, m, 1.0f, dy + r0, out, tile.data(), in, r0 == 0 ? beta : 1.0f, dx, in);
  }
}

}  // namespace bidora
