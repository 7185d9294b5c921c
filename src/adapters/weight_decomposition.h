#pragma once
// Weight-decomposition analysis of a trained adapter (DoRA paper §2, reused by BiDoRA;
// shared/reference/bidora-algorithm.md §6): how much each adapted linear changed its row
// magnitudes and its row directions relative to the pretrained weight W0 [out, in].
//
// Per adapted linear, V = W0 + s·B·A (the merged direction, as DoRA defines it) and, per output
// row i (the unit DoRA gives one magnitude entry):
//   m_i  = the adapter's learned magnitude (DoRA / BiDoRA) or ‖V_i‖ (plain LoRA: the magnitude of
//          the merged weight, as the DoRA paper analyses LoRA and full fine-tuning);
//   m0_i = ‖W0_i‖;
//   ΔM = (1/out) Σ_i |m_i − m0_i|,   ΔD = (1/out) Σ_i (1 − cos(V_i, W0_i)).
// Over many (layer, checkpoint) points of one module kind the paper fits ΔM against ΔD by least
// squares: full fine-tuning shows a negative slope, LoRA a positive one, and BiDoRA reports a
// more negative one (−8.042) than DoRA (−1.784).
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "adapters/adapter_set.h"
#include "adapters/lora_layer.h"
#include "model/frozen_matrix.h"
#include "model/linear.h"
#include "model/weights.h"

namespace bidora {

// ΔM and ΔD of one adapted linear.
struct DecompositionPoint {
  int64_t layer = 0;
  LinearKind kind = LinearKind::Q;
  int64_t rows = 0;                // out features (the number of magnitude entries)
  double delta_m = 0;              // ΔM
  double delta_d = 0;              // ΔD, in [0, 2]
  bool learned_magnitude = false;  // m from the adapter (DoRA) rather than ‖V‖_row (LoRA)
  // Rows where W0_i or V_i is the zero vector: their cosine is taken as 0 (1 − cos = 1, as
  // torch.nn.functional.cosine_similarity returns), or 1 when both are zero (nothing changed).
  int64_t zero_rows = 0;
};

// One adapted linear against its frozen weight (shapes must match; Error otherwise). Costs
// out·in·r flops (B·A a tile of rows at a time, through the GEMM backend) plus two passes over
// each row in double; V is never materialised beyond one tile of rows. A NaN or infinite
// adapter value makes the point's ΔM / ΔD NaN.
DecompositionPoint decompose_linear(const LoraLayer& adapter, const FrozenMatrix& W0, WeightTile& tile);

// Every adapted linear of `adapters` over the model's `layers`, in (layer, kind) order; only
// those of `kinds` when it is not empty.
std::vector<DecompositionPoint> decompose_adapter(const AdapterSet& adapters,
                                                  const std::vector<LayerWeights>& layers,
                                                  std::span<const LinearKind> kinds = {});

// Ordinary least squares y ≈ slope·x + intercept and Pearson's r over the pairs whose
// coordinates are both finite (sums in double, centred, two passes).
struct LineFit {
  int64_t points = 0;   // finite pairs used
  int64_t skipped = 0;  // pairs with a NaN or infinite coordinate
  // None ("undefined") with fewer than 2 points or when x is constant (spread below 1e-12 of
  // its magnitude: one x value carries no slope).
  std::optional<double> slope, intercept;
  std::optional<double> correlation;  // also none when y is constant
};
// x and y must have the same length (Error otherwise).
LineFit fit_line(std::span<const double> x, std::span<const double> y);

}  // namespace bidora
