#include "model/linear.h"

#include <algorithm>

#include "core/backend.h"

namespace bidora {

int64_t WeightTile::rows_per_tile(int64_t cols) {
  if (static_cast<int64_t>(buf_.size()) < cols) buf_.resize(cols);  // else rows_f32 overruns the tile
  return std::max<int64_t>(1, static_cast<int64_t>(buf_.size()) / std::max<int64_t>(cols, 1));
}

void linear_forward(const float* x, int64_t n, const FrozenMatrix& W, const float* bias, float* y,
                    WeightTile& tile) {
  const int64_t out = W.rows(), in = W.cols();
  if (const float* w = W.f32_data()) {
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
