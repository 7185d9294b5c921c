#pragma once
// One adapted Linear: the trainable LoRA factors A [r, in], B [out, r] and, for DoRA, the
// magnitude m [out], with their gradients. The frozen weight W [out, in] stays outside (it
// belongs to the model) and is passed to every call.
//
// Decoder integration, per adapted linear and micro-batch:
//   forward:  linear_forward(x, n, W, nullptr, y, tile);        // y = x Wᵀ, no bias yet
//             layer.forward(x, n, W, y, mode, saved, scratch, tile);  // y = adapted output, still no bias
//             add the bias to y (if any).
//   backward: layer.backward(x, dy, n, W, saved, dx, wants, scratch, tile);
//             dx is the FULL input gradient (frozen part included: the layer calls
//             linear_backward_input itself, because for DoRA the frozen part is scaled by
//             g = m / n and, with dropout, partly flows through the dropout mask). Do not call
//             linear_backward_input for an adapted linear.
//   A, B and m must not change between a forward and its backward (saved holds u, g, z).
//   Gradient checkpointing: drop `saved`, replay forward with the same AdapterMode (same
//   DropoutKey) before backward, or keep `saved` from the first forward (the decoder does for
//   down_proj, which it does not replay); either way the backward sees the same values.
// Cost per call: LoRA adds 2·n·r·(in + out) flops. DoRA adds the norm (out·in·r for W Aᵀ, one
// pass over W's rows, plus in·r²) and, with dropout in training, the frozen products on the
// dropped inputs only (about p of a frozen GEMM in forward and in backward, dropped_product.h),
// not the second full frozen GEMM a direct xd Wᵀ would cost.
// Maths (formats.md §2.3-2.4, bidora-algorithm.md §1), xd = dropout(x), u = xd Aᵀ, s = scaling:
//   LoRA: y = x Wᵀ + s · u Bᵀ
//   DoRA: y = x Wᵀ + (g − 1) ⊙ (xd Wᵀ) + g ⊙ s · u Bᵀ, g = m / n, n = ‖W + s·BA‖_row detached.
#include <cstdint>
#include <vector>

#include "adapters/adapter_config.h"
#include "adapters/dropout.h"
#include "adapters/dropped_product.h"
#include "model/frozen_matrix.h"
#include "model/linear.h"

namespace bidora {

struct AdapterMode {
  bool training = false;  // dropout is active only in training (and only when p > 0)
  DropoutKey dropout;     // identifies the mask; replaying with the same key reproduces it
};

// What backward needs from the forward, owned by the caller (one per adapted linear and
// micro-batch). Buffers are reused across calls: they only grow.
struct LoraSaved {
  int64_t n = 0;
  bool dropped = false;  // dropout was applied (training && p > 0)
  DropoutKey dropout;
  std::vector<float> u;     // [n, r]   xd Aᵀ
  std::vector<float> z;     // DoRA [n, out]: xd Wᵀ + s · u Bᵀ (the output before the g scale)
  std::vector<float> g;     // DoRA [out]: m / n
  std::vector<float> norm;  // DoRA [out]: n = ‖W + s·BA‖_row, treated as a constant
};

// Temporary buffers shared by all layers (grow-only, so the hot path does not allocate once
// they have reached the largest layer's size).
class AdapterScratch {
 public:
  float* get(int slot, size_t floats);

  // DoRA with dropout (dropped_product.h): the dropped positions, one set per Linear kind (a
  // layer's backward then finds the set of its checkpoint replay, whose forwards of the other
  // kinds came in between), a tile of weight panels and the sampled products at the dropped
  // positions.
  DroppedSet& dropped(LinearKind kind) { return dropped_[static_cast<int>(kind)]; }
  PanelScratch panels;
  std::vector<float> sampled;

 private:
  std::vector<float> slots_[5];
  DroppedSet dropped_[kNumLinearKinds];
};

// Which gradients backward accumulates. BiDoRA's finite-difference passes need dm (and dx) only.
struct BackwardWants {
  bool directions = true;  // dA, dB
  bool magnitude = true;   // dm (DoRA)
};

class LoraLayer {
 public:
  // PEFT initialisation: A per cfg.init, B = 0, m = ‖W‖_row (DoRA). Random values come from a
  // counter-based generator keyed by (init_seed, layer, kind, element): SplitMix64 mixing
  // (counter_rng.h); kaiming-uniform A = bound·(2u − 1), bound = 1/√in; gaussian via Box-Muller.
  LoraLayer(const AdapterConfig& cfg, const FrozenMatrix& W, int64_t layer, LinearKind kind,
            uint64_t init_seed, WeightTile& tile);

  int64_t layer() const { return layer_; }
  LinearKind kind() const { return kind_; }
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  int64_t rank() const { return r_; }
  float scaling() const { return scaling_; }
  float dropout() const { return p_; }
  bool dora() const { return dora_; }

  // y [n, out]: on entry x Wᵀ (no bias), on exit the adapted output (no bias). DoRA: known_norm,
  // if given, is weight_norm for the current A and B (from an earlier forward over the same
  // factors, e.g. the one a checkpoint replay repeats) and is used instead of computing it.
  void forward(const float* x, int64_t n, const FrozenMatrix& W, float* y, const AdapterMode& mode,
               LoraSaved& saved, AdapterScratch& scratch, WeightTile& tile,
               const float* known_norm = nullptr) const;
  // dy [n, out] → dx [n, in] (overwritten; nullptr to skip) and accumulated dA, dB, dm.
  void backward(const float* x, const float* dy, int64_t n, const FrozenMatrix& W, const LoraSaved& saved,
                float* dx, const BackwardWants& wants, AdapterScratch& scratch, WeightTile& tile);

  // n = ‖W + s·BA‖_row [out] for the current A, B without materialising W + s·BA:
  // n_i² = ‖W_i‖² + 2s·(W Aᵀ)_i·B_i + s²·B_i (A Aᵀ) B_iᵀ, ‖W_i‖² cached at construction.
  void weight_norm(const FrozenMatrix& W, float* norm, AdapterScratch& scratch, WeightTile& tile) const;

  // W' = W + s·BA (LoRA) or diag(m/n)(W + s·BA) (DoRA, n from the merged rows) as float32 [out, in].
  std::vector<float> merged_weight(const FrozenMatrix& W, WeightTile& tile) const;

  void zero_grad();

  // Trainable parameters (row-major, float32) and their gradients, same shapes.
  std::vector<float> A, B, m;
  std::vector<float> dA, dB, dm;

 private:
  int64_t layer_;
  LinearKind kind_;
  int64_t in_, out_, r_;
  float scaling_, p_;
  bool dora_;
  std::vector<double> w_norm2_;  // DoRA: ‖W_i‖², accumulated in double once
};

// Row L2 norms squared of W, accumulated in double from rows_f32 tiles.
std::vector<double> row_norms_squared(const FrozenMatrix& W, WeightTile& tile);

}  // namespace bidora
