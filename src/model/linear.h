#pragma once
// y = x Wᵀ (+ b) for a frozen weight in any storage, and the input gradient dx = dy W.
// Non-f32 weights are expanded to float32 a tile of rows at a time into `tile`, so no full
// float32 copy of a weight ever exists.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "model/frozen_matrix.h"

namespace bidora {

// Scratch for weight tiles; sized once (max_floats) and reused by every call.
class WeightTile {
 public:
  explicit WeightTile(size_t max_floats = size_t{1} << 21) : buf_(max_floats) {}
  float* data() { return buf_.data(); }
  size_t capacity() const { return buf_.size(); }
  // Rows per tile for a matrix with `cols` columns (at least 1: a capacity below one row grows
  // to one row, once).
  int64_t rows_per_tile(int64_t cols);

 private:
  std::vector<float> buf_;
};

// Calls f(r0, rows, w) over row tiles of W as float32 [rows, W.cols()] (W's own data in one call
// when it is stored as f32).
template <typename F>
void for_each_row_tile(const FrozenMatrix& W, WeightTile& tile, F&& f) {
  if (const float* w = W.f32_data()) {
    f(int64_t{0}, W.rows(), w);
    return;
  }
  const int64_t step = std::min(W.rows(), tile.rows_per_tile(W.cols()));
  for (int64_t r0 = 0; r0 < W.rows(); r0 += step) {
    const int64_t m = std::min(step, W.rows() - r0);
    W.rows_f32(r0, m, tile.data());
    f(r0, m, static_cast<const float*>(tile.data()));
  }
}

// y[n, out] += bias[out] on every row.
void add_bias(float* y, int64_t n, int64_t out, const float* bias);

// x: [n, in], y: [n, out] (overwritten), bias: [out] or nullptr.
void linear_forward(const float* x, int64_t n, const FrozenMatrix& W, const float* bias, float* y,
                    WeightTile& tile);
// dx[n, in] = beta * dx + dy[n, out] · W.
void linear_backward_input(const float* dy, int64_t n, const FrozenMatrix& W, float* dx, float beta,
                           WeightTile& tile);

}  // namespace bidora
