#pragma once
// BiDoRA's orthogonality regulariser on the adapted directions (bidora-algorithm.md §4), as the
// official code adds it to the lower-level (training) loss:
//   R = (γ / K) · Σ_k ‖D_k D_kᵀ − I‖_F   (plain Frobenius norm, not squared)
// over the K adapted linears, with V = W + s·BA [out, in], n_i = ‖V_i‖ and D = diag(1/n)·V (unit
// rows). Unlike DoRA's forward, the norm is NOT detached here: the gradient flows through the
// normalisation, as in the official code. Only A and B receive gradients (LoRA and DoRA alike).
//
// Cost per linear, g = min(in, out): the Gram on the smaller side (out·in·g multiply-adds) and
// one pass over W's rows for the value; the gradient adds out·in·r·3 + out²·r·2 when out <= in
// (formed from low-rank products) or another out·in² GEMM when in < out (gate/up-like shapes).
// Memory: D [out, in], the Gram [g, g] and the gradient work space (RegulariserScratch).

#include <cstdint>
#include <vector>

#include "adapters/adapter_set.h"
#include "adapters/lora_layer.h"
#include "model/frozen_matrix.h"
#include "model/weights.h"

namespace bidora {

// Buffers reused across layers and calls: they grow to the largest layer once, then the
// regulariser no longer allocates.
class RegulariserScratch {
 public:
  // When in < out the gradient is formed `grad_tile_floats / in` rows at a time (at least one
  // row): 4 MB by default, so no second [out, in] buffer is needed (235 MB for a 7B model's MLP)
  // while the tiles stay large enough for the GEMM to run at full speed. Tests use tiny tiles.
  explicit RegulariserScratch(size_t grad_tile_floats = size_t{1} << 20)
      : grad_tile_floats_(grad_tile_floats) {}
  size_t grad_tile_floats() const { return grad_tile_floats_; }

  float* direction(size_t floats);  // D [out, in]: V, normalised in place
  float* gram(size_t floats);       // G − I [g, g]
  float* grad(size_t floats);       // gradient work space (a tile of dR/dD rows, or [out, r] × 2)
  double* inv_norm(size_t count);   // 1 / n_i [out] (0 for a zero row)
  double* row_sums(size_t count);   // per-row partial sums of ‖G − I‖² [g], then reused

 private:
  size_t grad_tile_floats_;
  std::vector<float> direction_, gram_, grad_;
  std::vector<double> inv_norm_, row_sums_;
};

// ‖D Dᵀ − I‖_F for one adapted linear at its current A, B (W: its frozen weight [out, in]).
// When `accumulate_grads`, adds grad_weight · ∂/∂A and grad_weight · ∂/∂B of that value to
// layer.dA and layer.dB (+=: existing contents are kept). A zero row of V has no direction: it is
// left at zero in D and passes no gradient; at R = 0 (D already orthonormal) the gradient is 0.
double orthogonality_penalty(LoraLayer& layer, const FrozenMatrix& W, double grad_weight,
                             bool accumulate_grads, RegulariserScratch& scratch);

// R for the current A, B of every adapted linear of `set` (layers: the model's frozen weights,
// the ones the set was built on); weight = γ (training.bidora.orth_reg). When `accumulate_grads`,
// adds ∂R/∂A, ∂R/∂B to every layer's dA, dB. Returns 0 and touches nothing when weight == 0.
double direction_regulariser(AdapterSet& set, const std::vector<LayerWeights>& layers, double weight,
                             bool accumulate_grads, RegulariserScratch& scratch);

}  // namespace bidora
