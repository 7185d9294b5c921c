#pragma once
// Products restricted to the inputs dropout zeroes, for DoRA with dropout.
//
// DoRA's output has a term (g − 1) ⊙ (xd Wᵀ) on the DROPPED input xd = x ⊙ keep / (1 − p)
// (lora_layer.h). Computed directly it is a second frozen GEMM in the forward, the checkpoint
// replay and the backward, which makes a DoRA step about 1.7× a LoRA step at p = 0.05. But
// dropout zeroes only a fraction p of the inputs, so
//   xd Wᵀ = (x Wᵀ − (x ⊙ drop) Wᵀ) / (1 − p)
// where x Wᵀ is the base output the layer already has and (x ⊙ drop) is sparse (density p):
// the extra work is p of a GEMM. The backward is the same identity transposed: the dense
// frozen GEMM takes dy ⊙ (1 + (g − 1)/(1 − p)) and the dropped positions, which must receive
// the frozen path only, get the (g − 1) part back out, a product sampled at the dropped (t, j).
//
// Both kernels work on a transposed f32 tile of W ([in, rows]: the rows of W become contiguous
// columns), processed in blocks of output columns small enough for the L2 cache, so each
// dropped (t, j) costs one contiguous multiply-add over the block.
#include <cstdint>
#include <vector>

#include "model/frozen_matrix.h"
#include "model/linear.h"

namespace bidora {

// The dropped positions of one dropout call, row-compressed: row t's dropped columns are
// cols[offsets[t] .. offsets[t + 1]), ascending.
struct DroppedSet {
  int64_t n = 0, width = 0;
  std::vector<int64_t> offsets;  // [n + 1]
  std::vector<int32_t> cols;     // [nnz]
  // Per-thread working lists of find_dropped (kept so a step does not allocate).
  struct ThreadList {
    std::vector<int32_t> cols;
    std::vector<uint8_t> flags;
  };
  std::vector<ThreadList> per_thread;
  int64_t nnz() const { return offsets.empty() ? 0 : offsets.back(); }
};

// The positions dropout_apply(…, p, stream, row0, …) zeroes in an [n, width] input (exactly
// its mask: dropout_keep is the single definition). Reuses `set`'s buffers.
void find_dropped(int64_t n, int64_t width, float p, uint64_t stream, int64_t row0, DroppedSet& set);

// c[n, W.rows()] (row stride ldc) = (x ⊙ drop) Wᵀ: Σ over the dropped j of row t of x[t, j]·W[o, j].
// x is [n, W.cols()]. `transposed` is grow-only scratch for one transposed tile.
void dropped_times_wt(const float* x, const DroppedSet& set, const FrozenMatrix& W, WeightTile& tile,
                      std::vector<float>& transposed, float* c, int64_t ldc);

// acc[k] = Σ_o dy[t, o]·col_scale[o]·W[o, j] for each dropped entry k = (t, j) of `set`: the
// product (dy ⊙ col_scale) W sampled at the dropped positions. dy is [n, W.rows()].
void sampled_dy_times_w(const float* dy, const float* col_scale, const DroppedSet& set, const FrozenMatrix& W,
                        WeightTile& tile, std::vector<float>& transposed, std::vector<float>& acc);

}  // namespace bidora
