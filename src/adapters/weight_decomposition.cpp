#include "adapters/weight_decomposition.h"

#include <algorithm>
#include <cmath>

#include "core/backend.h"
#include "core/error.h"

namespace bidora {
namespace {

struct RowChange {
  double magnitude_change;  // m_i − m0_i
  double one_minus_cos;     // 1 − cos(V_i, W0_i)
  bool zero_row;            // W0_i or V_i is the zero vector
};

// One output row: w = W0_i, d = (B·A)_i, V_i = w + s·d; `learned` = the adapter's m_i or nullptr
// (LoRA: m_i = ‖V_i‖).
// Fine-tuned adapters move rows by tiny angles, where 1 − V·w/(‖V‖‖w‖) would cancel to a few
// significant digits. Instead d is split into its part along w (α = d·w / w·w) and the rest
// d⊥ = d − α·w, summed elementwise (no cancellation against w's large norm). Then
// V = (1 + sα)·w + s·d⊥, so ‖V‖² = (1 + sα)²‖w‖² + s²‖d⊥‖², cos = (1 + sα)‖w‖ / ‖V‖ and
// 1 − cos = sin² / (1 + cos) with sin² = s²‖d⊥‖² / ‖V‖², exact to rounding for small angles.
// Likewise ‖V‖ − ‖w‖ = (‖V‖² − ‖w‖²) / (‖V‖ + ‖w‖), ‖V‖² − ‖w‖² = sα(2 + sα)‖w‖² + s²‖d⊥‖².
RowChange row_change(const float* w, const float* d, int64_t in, double s, const float* learned) {
  double ww = 0, dw = 0;
  for (int64_t j = 0; j < in; ++j) {
    ww += static_cast<double>(w[j]) * w[j];
    dw += static_cast<double>(d[j]) * w[j];
  }
  const double w_norm = std::sqrt(ww);
  if (ww == 0) {
    // No pretrained direction: V = s·d. Unchanged (1 − cos = 0) if V is zero too, else orthogonal.
    double dd = 0;
    for (int64_t j = 0; j < in; ++j) dd += static_cast<double>(d[j]) * d[j];
    const double v_norm = std::abs(s) * std::sqrt(dd);
    return {(learned ? *learned : v_norm), v_norm == 0 ? 0.0 : 1.0, true};
  }
  const double alpha = dw / ww;
  double perp2 = 0;
  for (int64_t j = 0; j < in; ++j) {
    const double e = d[j] - alpha * w[j];
    perp2 += e * e;
  }
  const double c = 1.0 + s * alpha, sp2 = s * s * perp2;
  const double vv = c * c * ww + sp2, v_norm = std::sqrt(vv);
  RowChange out{};
  if (vv == 0) {
    out = {0.0, 1.0, true};  // the adapter cancelled the row: V has no direction (cos taken as 0)
  } else {
    const double cos = c * w_norm / v_norm;
    out.one_minus_cos = cos > 0 ? (sp2 / vv) / (1.0 + cos) : 1.0 - cos;
    out.zero_row = false;
  }
  out.magnitude_change =
      learned ? *learned - w_norm : (s * alpha * (2.0 + s * alpha) * ww + sp2) / (v_norm + w_norm);
  return out;
}

}  // namespace

DecompositionPoint decompose_linear(const LoraLayer& adapter, const FrozenMatrix& W0, WeightTile& tile) {
  const int64_t out = W0.rows(), in = W0.cols(), r = adapter.rank();
  BIDORA_CHECK(out == adapter.out_features() && in == adapter.in_features(),
               "layer {} {}: frozen weight is [{}, {}], adapter expects [{}, {}]", adapter.layer(),
               linear_name(adapter.kind()), out, in, adapter.out_features(), adapter.in_features());
  const bool learned = adapter.dora();
  BIDORA_CHECK(!learned || static_cast<int64_t>(adapter.m.size()) == out,
               "layer {} {}: DoRA magnitude has {} entries, expected {}", adapter.layer(),
               linear_name(adapter.kind()), adapter.m.size(), out);
  const double s = adapter.scaling();

  std::vector<RowChange> rows(static_cast<size_t>(out));
  const int64_t step = std::max<int64_t>(1, std::min(out, tile.rows_per_tile(in)));
  std::vector<float> d(static_cast<size_t>(step * in));  // (B·A) for one tile of rows
  for (int64_t r0 = 0; r0 < out; r0 += step) {
    const int64_t n = std::min(step, out - r0);
    const float* w = W0.f32_data();
    if (w) {
      w += r0 * in;
    } else {
      W0.rows_f32(r0, n, tile.data());
      w = tile.data();
    }
    sgemm(false, false, n, in, r, 1.0f, adapter.B.data() + r0 * r, r, adapter.A.data(), in, 0.0f, d.data(),
          in);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i)
      rows[r0 + i] = row_change(w + i * in, d.data() + i * in, in, s, learned ? &adapter.m[r0 + i] : nullptr);
  }

  DecompositionPoint p;
  p.layer = adapter.layer();
  p.kind = adapter.kind();
  p.rows = out;
  p.learned_magnitude = learned;
  double sum_m = 0, sum_d = 0;  // in row order: the same result at any thread count
  for (const RowChange& rc : rows) {
    sum_m += std::abs(rc.magnitude_change);
    sum_d += rc.one_minus_cos;
    p.zero_rows += rc.zero_row ? 1 : 0;
  }
  p.delta_m = out > 0 ? sum_m / static_cast<double>(out) : 0.0;
  p.delta_d = out > 0 ? sum_d / static_cast<double>(out) : 0.0;
  return p;
}

std::vector<DecompositionPoint> decompose_adapter(const AdapterSet& adapters,
                                                  const std::vector<LayerWeights>& layers,
                                                  std::span<const LinearKind> kinds) {
  std::vector<DecompositionPoint> out;
  WeightTile tile;
  for (const LoraLayer* l : adapters.all()) {
    if (!kinds.empty() && std::find(kinds.begin(), kinds.end(), l->kind()) == kinds.end()) continue;
    BIDORA_CHECK(l->layer() < static_cast<int64_t>(layers.size()),
                 "adapter has layer {} {} but the model has {} layers", l->layer(), linear_name(l->kind()),
                 layers.size());
    out.push_back(decompose_linear(*l, layers[l->layer()].W(l->kind()), tile));
  }
  return out;
}

LineFit fit_line(std::span<const double> x, std::span<const double> y) {
  BIDORA_CHECK(x.size() == y.size(), "fit_line: {} x values but {} y values", x.size(), y.size());
  LineFit f;
  double sx = 0, sy = 0;
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i]) || !std::isfinite(y[i])) {
      ++f.skipped;
      continue;
    }
    ++f.points;
    sx += x[i];
    sy += y[i];
    xlo = std::min(xlo, x[i]), xhi = std::max(xhi, x[i]);
    ylo = std::min(ylo, y[i]), yhi = std::max(yhi, y[i]);
  }
  if (f.points < 2) return f;
  // A spread at rounding level of the values is no spread: such an x range would give a slope
  // made of noise (or ±inf).
  const auto constant = [](double lo, double hi) {
    return !(hi - lo > 1e-12 * std::max(std::abs(lo), std::abs(hi)));
  };
  const double mx = sx / static_cast<double>(f.points), my = sy / static_cast<double>(f.points);
  double sxx = 0, sxy = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i]) || !std::isfinite(y[i])) continue;
    const double dx = x[i] - mx, dy = y[i] - my;
    sxx += dx * dx;
    sxy += dx * dy;
    syy += dy * dy;
  }
  if (constant(xlo, xhi) || !(sxx > 0)) return f;
  f.slope = sxy / sxx;
  f.intercept = my - *f.slope * mx;
  if (!constant(ylo, yhi) && syy > 0) {
    // Rounding can push |r| a hair past 1 for exactly collinear points.
    f.correlation = std::clamp(sxy / (std::sqrt(sxx) * std::sqrt(syy)), -1.0, 1.0);
  }
  return f;
}

}  // namespace bidora
