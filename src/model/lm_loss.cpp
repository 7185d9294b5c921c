#include "model/lm_loss.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/backend.h"
#include "core/error.h"
#include "model/attention_kernels.h"

namespace bidora {
namespace {

// The weight rows [v0, v0 + m) of one vocabulary chunk, as the GEMMs read them: float32, or
// bfloat16 with bf16 compute (a tile, or the storage itself when it already has that type).
struct ChunkRows {
  const float* f32 = nullptr;
  const uint16_t* bf16 = nullptr;
};

// logits[tc, m] = hidden_chunk[tc, H] · W[v0 : v0+m]ᵀ (hidden_bf16: the chunk rounded to bf16,
// used with bf16 compute); returns the weight rows used.
ChunkRows vocab_chunk_logits(const float* h, const uint16_t* h_bf16, int64_t tc, const FrozenMatrix& W,
                             int64_t v0, int64_t m, float* logits, WeightTile& tile) {
  const int64_t H = W.cols();
  ChunkRows rows;
  if (tile.bf16_compute()) {
    if (const uint16_t* wb = W.bf16_data()) {
      rows.bf16 = wb + v0 * H;
    } else {
      const float* w = W.f32_data() ? W.f32_data() + v0 * H : tile.data();
      if (!W.f32_data()) W.rows_f32(v0, m, tile.data());
      round_to_bf16_rows(w, m, H, H, tile.bf16_weights(), H);
      rows.bf16 = tile.bf16_weights();
    }
    gemm_bf16(true, tc, m, H, h_bf16, H, rows.bf16, H, 0.0f, logits, m);
    return rows;
  }
  rows.f32 = W.f32_data();
  if (rows.f32) {
    rows.f32 += v0 * H;
  } else {
    W.rows_f32(v0, m, tile.data());
    rows.f32 = tile.data();
  }
  sgemm(false, true, tc, m, H, 1.0f, h, H, rows.f32, H, 0.0f, logits, m);
  return rows;
}

}  // namespace

LossSums lm_head_cross_entropy(const float* hidden, int64_t n, const FrozenMatrix& W, const int32_t* targets,
                               float* dhidden, float grad_scale, LmLossWorkspace& ws) {
  const int64_t V = W.rows(), H = W.cols();
  ws.rows.clear();
  for (int64_t i = 0; i < n; ++i) {
    if (targets[i] == kIgnoreIndex) continue;
    if (targets[i] < 0 || targets[i] >= V)
      fail("label {} at token {} is outside the vocabulary [0, {})", targets[i], i, V);
    ws.rows.push_back(i);
  }
  if (dhidden) std::fill(dhidden, dhidden + n * H, 0.0f);
  LossSums out;
  const int64_t active = static_cast<int64_t>(ws.rows.size());
  if (active == 0) return out;

  const int64_t TC = std::min(ws.token_chunk(), active);
  const int64_t VC = std::min(V, ws.tile.rows_per_tile(H));
  ws.hidden.resize(TC * H);
  ws.logits.resize(TC * VC);
  ws.row_max.resize(TC);
  ws.row_sum.resize(TC);
  ws.row_target.resize(TC);
  if (dhidden) ws.dhidden.resize(TC * H);
  if (ws.tile.bf16_compute()) {
    ws.hidden_bf16.resize(TC * H);
    if (dhidden) ws.logits_bf16.resize(TC * VC);
  }

  const attention_detail::KernelTable& kernels = attention_detail::active_kernels();
  for (int64_t c0 = 0; c0 < active; c0 += TC) {
    const int64_t tc = std::min(TC, active - c0);
    for (int64_t r = 0; r < tc; ++r)
      std::memcpy(ws.hidden.data() + r * H, hidden + ws.rows[c0 + r] * H, H * sizeof(float));
    const bool bf16 = ws.tile.bf16_compute();
    if (bf16) round_to_bf16_rows(ws.hidden.data(), tc, H, H, ws.hidden_bf16.data(), H);
    std::fill(ws.row_max.begin(), ws.row_max.end(), -std::numeric_limits<float>::infinity());
    std::fill(ws.row_sum.begin(), ws.row_sum.end(), 0.0f);

    // Pass 1: online log-sum-exp over vocabulary chunks.
    for (int64_t v0 = 0; v0 < V; v0 += VC) {
      const int64_t m = std::min(VC, V - v0);
      vocab_chunk_logits(ws.hidden.data(), ws.hidden_bf16.data(), tc, W, v0, m, ws.logits.data(), ws.tile);
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < tc; ++r) {
        float* lr = ws.logits.data() + r * m;
        const int32_t tgt = targets[ws.rows[c0 + r]];
        if (tgt >= v0 && tgt < v0 + m) ws.row_target[r] = lr[tgt - v0];  // before exp_sum overwrites lr
        const float mx = std::max(ws.row_max[r], kernels.max(lr, static_cast<int>(m)));
        float s = ws.row_sum[r] * std::exp(ws.row_max[r] - mx);
        if (ws.row_max[r] == -std::numeric_limits<float>::infinity()) s = 0;
        // The vectorised exp of the attention kernels: libm's expf takes a slow path on every
        // underflowing logit, and most of a 150k vocabulary underflows.
        s += kernels.exp_sum(lr, static_cast<int>(m), 1.0f, mx);
        ws.row_max[r] = mx;
        ws.row_sum[r] = s;
      }
    }
    for (int64_t r = 0; r < tc; ++r) {
      const double lse = static_cast<double>(ws.row_max[r]) + std::log(static_cast<double>(ws.row_sum[r]));
      out.sum += lse - ws.row_target[r];
    }
    out.count += tc;
    if (!dhidden) continue;

    // Pass 2: dlogits = grad_scale (softmax − onehot), dhidden += dlogits · W_chunk.
    std::fill(ws.dhidden.begin(), ws.dhidden.end(), 0.0f);
    for (int64_t v0 = 0; v0 < V; v0 += VC) {
      const int64_t m = std::min(VC, V - v0);
      const ChunkRows w = vocab_chunk_logits(ws.hidden.data(), ws.hidden_bf16.data(), tc, W, v0, m,
                                             ws.logits.data(), ws.tile);
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < tc; ++r) {
        float* lr = ws.logits.data() + r * m;
        const float mx = ws.row_max[r], scale = grad_scale / ws.row_sum[r];
        kernels.exp_sum(lr, static_cast<int>(m), 1.0f, mx);
        for (int64_t j = 0; j < m; ++j) lr[j] *= scale;
        const int32_t tgt = targets[ws.rows[c0 + r]];
        if (tgt >= v0 && tgt < v0 + m) lr[tgt - v0] -= grad_scale;
      }
      if (bf16) {
        round_to_bf16_rows(ws.logits.data(), tc, m, m, ws.logits_bf16.data(), m);
        gemm_bf16(false, tc, H, m, ws.logits_bf16.data(), m, w.bf16, H, 1.0f, ws.dhidden.data(), H);
      } else {
        sgemm(false, false, tc, H, m, 1.0f, ws.logits.data(), m, w.f32, H, 1.0f, ws.dhidden.data(), H);
      }
    }
    for (int64_t r = 0; r < tc; ++r)
      std::memcpy(dhidden + ws.rows[c0 + r] * H, ws.dhidden.data() + r * H, H * sizeof(float));
  }
  return out;
}

}  // namespace bidora
