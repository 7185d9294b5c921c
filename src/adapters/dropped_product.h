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
// Both kernels work on W transposed into panels ([in, width] blocks of output columns, each
// contiguous and small enough for the L2 cache), so each dropped (t, j) costs one contiguous
// multiply-add over a panel row. Panels of bf16 weights are bf16 (laid out so that a shift and
// a mask widen them: half the L2 traffic), other storages' float32; both exact.
#include <cstdint>
#include <vector>

#include "model/frozen_matrix.h"
#include "model/linear.h"

namespace bidora {

// The dropped positions of one dropout call, row-compressed: row t's dropped columns are
// cols[offsets[t] .. offsets[t + 1]), ascending.
struct DroppedSet {
  int64_t n = 0, width = 0;
  // The mask's key (find_dropped's arguments): a set is a pure function of it, so a call with the
  // same key keeps the set instead of evaluating the generator again.
  bool valid = false;
  float p = 0.0f;
  uint64_t stream = 0;
  int64_t row0 = 0;
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
// its mask: dropout_keep is the single definition). Reuses `set`'s buffers; returns at once when
// `set` already holds this key (DoRA's backward right after the checkpoint replay of the same
// linear, or BiDoRA's finite-difference passes over the same masks).
void find_dropped(int64_t n, int64_t width, float p, uint64_t stream, int64_t row0, DroppedSet& set);

// dropout_apply's output from the set instead of the random stream (bit-identical): out[n, width]
// = x ⊙ keep / (1 − p). One pass of the counter-based generator per layer call is then enough for
// DoRA, which needs the set anyway.
void dropout_apply_dropped(const float* x, const DroppedSet& set, float p, float* out);
// DoRA's backward through dropout, from the set: acc[t, j] += g[t, j] / (1 − p) at the kept
// positions and acc[t, j] −= sampled[k] / (1 − p) at the k-th dropped one (the same operations,
// in the same order per element, as dropout_backward_add after the dropped positions' update).
void dropout_backward_add_dropped(const float* g, const float* sampled, const DroppedSet& set, float p,
                                  float* acc);

// Grow-only scratch: one tile of panels and the gathered dropped inputs. (Transparent huge pages
// for the panels, against the TLB misses of random rows, measured slower here.)
struct PanelScratch {
  std::vector<float> panels;       // float32 panels (weights not stored bf16, f32 compute)
  std::vector<uint16_t> panels16;  // bf16 panels
  std::vector<float> gathered;     // the dropped inputs' values, in the set's order
};

// c[n, W.rows()] (row stride ldc) = (x ⊙ drop) Wᵀ: Σ over the dropped j of row t of x[t, j]·W[o, j].
// x is [n, W.cols()].
void dropped_times_wt(const float* x, const DroppedSet& set, const FrozenMatrix& W, WeightTile& tile,
                      PanelScratch& scratch, float* c, int64_t ldc);

// acc[k] = Σ_o dy[t, o]·col_scale[o]·W[o, j] for each dropped entry k = (t, j) of `set`: the
// product (dy ⊙ col_scale) W sampled at the dropped positions. dy is [n, W.rows()].
void sampled_dy_times_w(const float* dy, const float* col_scale, const DroppedSet& set, const FrozenMatrix& W,
                        WeightTile& tile, PanelScratch& scratch, std::vector<float>& acc);

}  // namespace bidora
