#pragma once
// y = x Wᵀ (+ b) for a frozen weight in any storage, and the input gradient dx = dy W.
// Non-f32 weights are expanded to float32 a tile of rows at a time into `tile`, so no full
// float32 copy of a weight ever exists.
// With bf16 compute (WeightTile::set_bf16_compute, model.compute_dtype bf16) these products run
// as torch.autocast runs them: x (or dy) and W rounded to bfloat16, products summed in float32,
// the result in float32. BF16-stored weights are then used in place (no expansion at all);
// NF4/int8 tiles are expanded and rounded to bf16, as bitsandbytes does with a bf16 compute dtype.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "model/frozen_matrix.h"

namespace bidora {

// Scratch for weight tiles; sized once (max_floats) and reused by every call. Also carries the
// precision of the frozen products that use it.
class WeightTile {
 public:
  explicit WeightTile(size_t max_floats = size_t{1} << 21) : buf_(max_floats) {}
  float* data() { return buf_.data(); }
  size_t capacity() const { return buf_.size(); }
  // Rows per tile for a matrix with `cols` columns (at least 1: a capacity below one row grows
  // to one row, once).
  int64_t rows_per_tile(int64_t cols);

  // Frozen-weight products in bf16 (see the top of this file) instead of float32.
  void set_bf16_compute(bool on) { bf16_ = on; }
  bool bf16_compute() const { return bf16_; }
  // Grow-only bf16 buffers: `acts` for a GEMM's rounded activations, `weights` for a tile of
  // rounded weight rows (capacity() values at most).
  uint16_t* bf16_acts(size_t n);
  uint16_t* bf16_weights();
  // Bytes held by the bf16 buffers (the memory model counts them).
  size_t bf16_bytes() const { return (acts_.capacity() + weights_.capacity()) * sizeof(uint16_t); }

 private:
  std::vector<float> buf_;
  bool bf16_ = false;
  std::vector<uint16_t> acts_, weights_;
};

// dst[rows, cols] (row stride ld_dst) = src[rows, cols] (row stride ld_src) rounded to bf16 to
// nearest even, by all threads.
void round_to_bf16_rows(const float* src, int64_t rows, int64_t cols, int64_t ld_src, uint16_t* dst,
                        int64_t ld_dst);

// Rows per tile of W for the row-tile walkers below: the tile's capacity, cut to a whole
// multiple of row_multiple rows where the tile holds that many (callers that cut tiles into
// fixed-width blocks avoid a narrow block per tile), at most W's rows.
inline int64_t row_tile_step(const FrozenMatrix& W, WeightTile& tile, int64_t row_multiple) {
  int64_t step = tile.rows_per_tile(W.cols());
  if (step >= row_multiple) step -= step % row_multiple;
  return std::min(W.rows(), step);
}

// Calls f(r0, rows, w) over row tiles of W as bf16 [rows, W.cols()] (W's own data in one call
// when it is stored as bf16; other storages as float32 rounded to nearest even). row_multiple:
// see row_tile_step.
template <typename F>
void for_each_bf16_row_tile(const FrozenMatrix& W, WeightTile& tile, F&& f, int64_t row_multiple = 1) {
  if (const uint16_t* w = W.bf16_data()) {
    f(int64_t{0}, W.rows(), w);
    return;
  }
  const int64_t step = row_tile_step(W, tile, row_multiple);
  uint16_t* wb = tile.bf16_weights();
  for (int64_t r0 = 0; r0 < W.rows(); r0 += step) {
    const int64_t m = std::min(step, W.rows() - r0);
    const float* w = W.f32_data() ? W.f32_data() + r0 * W.cols() : tile.data();
    if (!W.f32_data()) W.rows_f32(r0, m, tile.data());
    round_to_bf16_rows(w, m, W.cols(), W.cols(), wb, W.cols());
    f(r0, m, static_cast<const uint16_t*>(wb));
  }
}

// Calls f(r0, rows, w) over row tiles of W as float32 [rows, W.cols()] (W's own data in one call
// when it is stored as f32). row_multiple: see row_tile_step.
template <typename F>
void for_each_row_tile(const FrozenMatrix& W, WeightTile& tile, F&& f, int64_t row_multiple = 1) {
  if (const float* w = W.f32_data()) {
    f(int64_t{0}, W.rows(), w);
    return;
  }
  const int64_t step = row_tile_step(W, tile, row_multiple);
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
