#include "adapters/direction_regulariser.h"

#include <algorithm>
#include <cmath>

#include "core/backend.h"
#include "core/error.h"

namespace bidora {

namespace {

template <typename T>
T* grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// Gradients for out <= in, G = DDᵀ − I [out, out], sums_i = Σ_j G_ij². With dD = c·G D and
// α_i = D_i · dD_i, the normalisation gives dV = N⁻¹(c·G D − diag(α) D), N = diag(n); then
//   dB += s · dV Aᵀ = s · N⁻¹ (c·G P − diag(α) P),            P = D Aᵀ   [out, r]
//   dA += s · Bᵀ dV = s · (c·G Q − diag(α) Q)ᵀ D (G symmetric), Q = N⁻¹ B  [out, r]
// and α_i = c · Σ_j G_ij (D_j · D_i) = c · (sums_i + G_ii) (as D_j · D_i = G_ij + δ_ij). So
// dD is never formed: out·in·r + out²·r multiply-adds instead of the out²·in of G·D.
void accumulate_wide(LoraLayer& layer, const float* D, const float* G, const double* inv_n, double* sums,
                     double c, RegulariserScratch& scratch) {
  const int64_t out = layer.out_features(), in = layer.in_features(), r = layer.rank();
  const float s = layer.scaling(), cf = static_cast<float>(c);
  double* alpha = sums;  // the sums are no longer needed once R is known
  for (int64_t i = 0; i < out; ++i) alpha[i] = c * (sums[i] + G[i * out + i]);
  float* P = scratch.grad(static_cast<size_t>(2 * out * r));
  float* Z = P + out * r;
  sgemm(false, true, out, r, in, 1.0f, D, in, layer.A.data(), in, 0.0f, P, r);  // P = D Aᵀ
  sgemm(false, false, out, r, out, cf, G, out, P, r, 0.0f, Z, r);               // Z = c·G P
  float* dB = layer.dB.data();
  for (int64_t i = 0; i < out; ++i)
    for (int64_t k = 0; k < r; ++k)
      dB[i * r + k] += static_cast<float>(s * inv_n[i] * (Z[i * r + k] - alpha[i] * P[i * r + k]));
  float* Q = P;  // P is no longer needed
  const float* B = layer.B.data();
  for (int64_t i = 0; i < out; ++i)
    for (int64_t k = 0; k < r; ++k) Q[i * r + k] = static_cast<float>(B[i * r + k] * inv_n[i]);
  sgemm(false, false, out, r, out, cf, G, out, Q, r, 0.0f, Z, r);  // Z = c·G Q
  for (int64_t i = 0; i < out; ++i)
    for (int64_t k = 0; k < r; ++k) Z[i * r + k] = static_cast<float>(Z[i * r + k] - alpha[i] * Q[i * r + k]);
  sgemm(true, false, r, in, out, s, Z, r, D, in, 1.0f, layer.dA.data(), in);  // dA += s·Zᵀ D
}

// Gradients for in < out, G = DᵀD − I [in, in]: α_i = c · D_i G D_iᵀ needs every row of D G, so
// dD = c·D G is formed, a tile of rows at a time, and turned into dV in place:
// dV_i = (dD_i − D_i (D_i · dD_i)) / n_i, then dB_t += s · dV_t Aᵀ, dA += s · B_tᵀ dV_t.
void accumulate_tall(LoraLayer& layer, const float* D, const float* G, const double* inv_n, double c,
                     RegulariserScratch& scratch) {
  const int64_t out = layer.out_features(), in = layer.in_features(), r = layer.rank();
  const float s = layer.scaling();
  const int64_t tile_rows =
      std::clamp<int64_t>(static_cast<int64_t>(scratch.grad_tile_floats()) / in, 1, out);
  float* dD = scratch.grad(static_cast<size_t>(tile_rows * in));
  float* dA = layer.dA.data();
  float* dB = layer.dB.data();
  const float* A = layer.A.data();
  const float* B = layer.B.data();
  for (int64_t r0 = 0; r0 < out; r0 += tile_rows) {
    const int64_t rows = std::min(tile_rows, out - r0);
    const float* Dt = D + r0 * in;
    sgemm(false, false, rows, in, in, static_cast<float>(c), Dt, in, G, in, 0.0f, dD, in);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows; ++i) {
      float* gi = dD + i * in;
      const float* di = Dt + i * in;
      double dot = 0;
      for (int64_t j = 0; j < in; ++j) dot += static_cast<double>(di[j]) * gi[j];
      const double inv = inv_n[r0 + i];
      for (int64_t j = 0; j < in; ++j) gi[j] = static_cast<float>((gi[j] - di[j] * dot) * inv);
    }
    sgemm(false, true, rows, r, in, s, dD, in, A, in, 1.0f, dB + r0 * r, r);
    sgemm(true, false, r, in, rows, s, B + r0 * r, r, dD, in, 1.0f, dA, in);
  }
}

}  // namespace

float* RegulariserScratch::direction(size_t floats) {
  return grow(direction_, floats);
}
float* RegulariserScratch::gram(size_t floats) {
  return grow(gram_, floats);
}
float* RegulariserScratch::grad(size_t floats) {
  return grow(grad_, floats);
}
double* RegulariserScratch::inv_norm(size_t count) {
  return grow(inv_norm_, count);
}
double* RegulariserScratch::row_sums(size_t count) {
  return grow(row_sums_, count);
}

double orthogonality_penalty(LoraLayer& layer, const FrozenMatrix& W, double grad_weight,
                             bool accumulate_grads, RegulariserScratch& scratch) {
  const int64_t out = layer.out_features(), in = layer.in_features(), r = layer.rank();
  BIDORA_CHECK(W.rows() == out && W.cols() == in,
               "direction regulariser, layer {} {}: weight is [{}, {}], adapter expects [{}, {}]",
               layer.layer(), linear_name(layer.kind()), W.rows(), W.cols(), out, in);
  const float s = layer.scaling();

  // D = V = W + s·BA, then each row divided by its norm (accumulated in double).
  float* D = scratch.direction(static_cast<size_t>(out * in));
  W.rows_f32(0, out, D);
  sgemm(false, false, out, in, r, s, layer.B.data(), r, layer.A.data(), in, 1.0f, D, in);
  double* inv_n = scratch.inv_norm(static_cast<size_t>(out));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < out; ++i) {
    float* row = D + i * in;
    double n2 = 0;
    for (int64_t j = 0; j < in; ++j) n2 += static_cast<double>(row[j]) * row[j];
    // A zero row has no direction (PyTorch would give NaN): keep it at zero, with no gradient.
    const double inv = n2 > 0 ? 1.0 / std::sqrt(n2) : 0.0;
    inv_n[i] = inv;
    for (int64_t j = 0; j < in; ++j) row[j] = static_cast<float>(row[j] * inv);
  }

  // Gram on the smaller side, g = min(in, out): ‖D Dᵀ − I_out‖² = ‖Dᵀ D − I_in‖² + out − in (both
  // equal ‖DᵀD‖² − 2·tr + dim, and the traces agree). Working with G − I rather than G keeps the
  // sum free of cancellation (both terms are ≥ 0) and exact for any row norms.
  const int64_t g = std::min(in, out);
  float* G = scratch.gram(static_cast<size_t>(g * g));
  if (in < out)
    sgemm(true, false, in, in, out, 1.0f, D, in, D, in, 0.0f, G, in);  // Dᵀ D
  else
    sgemm(false, true, out, out, in, 1.0f, D, in, D, in, 0.0f, G, out);  // D Dᵀ
  // Per-row sums added serially afterwards: an OpenMP reduction could combine the threads'
  // partial sums in any order, and the value (through 1/R) scales the gradient, which must be
  // the same on every run for --resume to reproduce a run bit for bit.
  double* sums = scratch.row_sums(static_cast<size_t>(g));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < g; ++i) {
    float* row = G + i * g;
    row[i] -= 1.0f;
    double acc = 0;
    for (int64_t j = 0; j < g; ++j) acc += static_cast<double>(row[j]) * row[j];
    sums[i] = acc;
  }
  double f = static_cast<double>(out - g);
  for (int64_t i = 0; i < g; ++i) f += sums[i];
  const double R = std::sqrt(std::max(f, 0.0));
  if (!accumulate_grads || R == 0.0 || grad_weight == 0.0) return R;

  // ∂‖DDᵀ − I‖²/∂D = 4 (DDᵀ − I) D = 4 D (DᵀD − I). Written with the Gram itself (4 DDᵀD) it
  // differs by 4D, which the normalisation removes anyway (it has no component across the unit
  // rows); with G − I the product stays small where D is nearly orthonormal, so less cancels.
  // weight · ∂R/∂D = weight · 4 (G − I)-product / (2R) = c · (G − I)-product, c = 2 · weight / R.
  const double c = grad_weight * 2.0 / R;
  if (out <= in)
    accumulate_wide(layer, D, G, inv_n, sums, c, scratch);
  else
    accumulate_tall(layer, D, G, inv_n, c, scratch);
  return R;
}

double direction_regulariser(AdapterSet& set, const std::vector<LayerWeights>& layers, double weight,
                             bool accumulate_grads, RegulariserScratch& scratch) {
  BIDORA_CHECK(std::isfinite(weight) && weight >= 0.0,
               "training.bidora.orth_reg: the regulariser weight must be finite and >= 0, got {}", weight);
  if (weight == 0.0) return 0.0;
  BIDORA_CHECK(static_cast<int64_t>(layers.size()) == set.num_layers(),
               "direction regulariser: the adapters cover {} layers but {} frozen layers were given",
               set.num_layers(), layers.size());
  const std::vector<LoraLayer*> adapted = set.all();
  if (adapted.empty()) return 0.0;
  const double per_module = weight / static_cast<double>(adapted.size());  // γ / K
  double total = 0;
  for (LoraLayer* l : adapted)
    total +=
        orthogonality_penalty(*l, layers[l->layer()].W(l->kind()), per_module, accumulate_grads, scratch);
  return per_module * total;
}

}  // namespace bidora
