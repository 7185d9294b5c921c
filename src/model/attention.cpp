#include "model/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "model/attention_kernels.h"

namespace bidora {

void attention_key_start(const int32_t* position_ids, int64_t rows, int64_t seq, int64_t window,
                         std::vector<int32_t>& ks) {
  ks.resize(rows * seq);
  for (int64_t b = 0; b < rows; ++b) {
    int32_t doc = 0;
    for (int64_t t = 0; t < seq; ++t) {
      if (position_ids[b * seq + t] == 0) doc = static_cast<int32_t>(t);
      int32_t start = doc;
      if (window > 0) start = std::max<int64_t>(start, t - window + 1);
      ks[b * seq + t] = start;
    }
  }
}

std::vector<int32_t> attention_key_start(const int32_t* position_ids, int64_t rows, int64_t seq,
                                         int64_t window) {
  std::vector<int32_t> ks;
  attention_key_start(position_ids, rows, seq, window, ks);
  return ks;
}

namespace {

using attention_detail::KernelTable;

// Tile sizes. A score tile (kBq × kBk floats, 8 KB) and the forward's output rows stay in L1;
// kBk is the AVX-512 kernels' register-blocked width (4 vectors of 16).
constexpr int kBq = 32;
constexpr int kBk = 64;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Buffers linear in the sequence length, owned by the calling thread and grown once: the
// decoder calls attention for every layer of every step with the same shapes.
struct Workspace {
  std::vector<float> kt, vt, delta;
};

Workspace& workspace() {
  thread_local Workspace ws;
  return ws;
}

float* grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

void check_shape(const AttentionShape& s, const int32_t* key_start, const char* fn) {
  BIDORA_CHECK(s.rows >= 0 && s.seq >= 0 && s.heads > 0 && s.kv_heads > 0 && s.head_dim > 0,
               "{}: invalid shape rows={} seq={} heads={} kv_heads={} head_dim={}", fn, s.rows, s.seq,
               s.heads, s.kv_heads, s.head_dim);
  BIDORA_CHECK(s.heads % s.kv_heads == 0, "{}: heads ({}) is not a multiple of kv_heads ({})", fn, s.heads,
               s.kv_heads);
  // Every query must see at least itself, else its softmax has no terms (0/0).
  for (int64_t b = 0; b < s.rows; ++b)
    for (int64_t t = 0; t < s.seq; ++t) {
      const int32_t j = key_start[b * s.seq + t];
      BIDORA_CHECK(j >= 0 && j <= t, "{}: key_start[{}] = {} is outside [0, {}] (row {}, position {})", fn,
                   b * s.seq + t, j, t, b, t);
    }
}

// Keys (or values) of one row and kv head, transposed one key tile at a time:
// xt[(b·kv_heads + g)][kb][c][jj] = x[(b·seq + kb·kBk + jj)·kv_heads·hd + g·hd + c]. A score tile is
// then a sum of broadcast-times-vector products over one contiguous hd × kBk block (a transpose
// with a row stride of seq floats would map a tile's rows onto a few L1 sets for seq = 2^k).
int64_t packed_size(const AttentionShape& s) {
  return s.rows * s.kv_heads * ((s.seq + kBk - 1) / kBk) * s.head_dim * kBk;
}

void pack_transposed(const float* x, const AttentionShape& s, float* xt) {
  const int64_t hd = s.head_dim, stride = s.kv_heads * hd, nkb = (s.seq + kBk - 1) / kBk;
  const int64_t tasks = s.rows * s.kv_heads * nkb;
#pragma omp for schedule(static)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t kb = task % nkb, bg = task / nkb, b = bg / s.kv_heads, g = bg % s.kv_heads;
    const int64_t j0 = kb * kBk, nj = std::min<int64_t>(kBk, s.seq - j0);
    const float* src = x + (b * s.seq + j0) * stride + g * hd;
    float* dst = xt + task * hd * kBk;
    for (int64_t c = 0; c < hd; ++c)
      for (int64_t jj = 0; jj < nj; ++jj) dst[c * kBk + jj] = src[jj * stride + c];
  }
}

// Start of key tile kb of (row, kv head) bg in the packed layout.
inline const float* packed_tile(const float* xt, const AttentionShape& s, int64_t bg, int64_t kb) {
  return xt + (bg * ((s.seq + kBk - 1) / kBk) + kb) * s.head_dim * kBk;
}

// The visible part of the tile (queries [q0, q0 + nq) × keys [k0, k0 + nk) of one row): active
// query rows [qa, qa + na) (offsets from q0) and key columns [ka, ka + nkc) (absolute), and per
// active row r the visible columns [lo[r], hi[r]] relative to ka (lo > hi: none).
struct Tile {
  int qa = 0, na = 0;
  int64_t ka = 0;
  int nkc = 0;
  int lo[kBq], hi[kBq];
};

bool visible_tile(const int32_t* ks, int64_t q0, int nq, int64_t k0, int nk, Tile& tile) {
  int first = -1, last = -1;
  int64_t kmin = k0 + nk, kmax = k0 - 1;
  for (int i = 0; i < nq; ++i) {
    const int64_t t = q0 + i;
    const int64_t lo = std::max<int64_t>(ks[t], k0), hi = std::min<int64_t>(t, k0 + nk - 1);
    if (lo > hi) continue;
    if (first < 0) first = i;
    last = i;
    kmin = std::min(kmin, lo);
    kmax = std::max(kmax, hi);
  }
  if (first < 0) return false;
  tile.qa = first;
  tile.na = last - first + 1;
  tile.ka = kmin;
  tile.nkc = static_cast<int>(kmax - kmin + 1);
  for (int r = 0; r < tile.na; ++r) {
    const int64_t t = q0 + first + r;
    tile.lo[r] = static_cast<int>(std::max<int64_t>(ks[t], kmin) - kmin);
    tile.hi[r] = static_cast<int>(std::min<int64_t>(t, kmax) - kmin);
  }
  return true;
}

void zero_outside(float* row, int lo, int hi, int n) {
  std::fill(row, row + std::min(lo, n), 0.0f);
  if (hi + 1 < n) std::fill(row + std::max(hi + 1, 0), row + n, 0.0f);
}

}  // namespace

// Forward, one task per (row, head, block of kBq queries), heaviest (last) query blocks first
// so the causal imbalance evens out under dynamic scheduling. Each task owns its output rows,
// accumulates in them directly, and sums in a fixed order: results do not depend on the thread
// count.
void attention_forward(const float* q, const float* k, const float* v, const int32_t* key_start,
                       const AttentionShape& s, float scale, float* out, float* lse) {
  check_shape(s, key_start, "attention_forward");
  if (s.rows == 0 || s.seq == 0) return;
  const KernelTable& kern = attention_detail::active_kernels();
  const int64_t hd = s.head_dim, group = s.heads / s.kv_heads;
  const int64_t q_stride = s.heads * hd, kv_stride = s.kv_heads * hd;
  float* kt = grow(workspace().kt, static_cast<size_t>(packed_size(s)));
  const int64_t nqb = (s.seq + kBq - 1) / kBq, per_block = s.rows * s.heads, tasks = nqb * per_block;
#pragma omp parallel
  {
    pack_transposed(k, s, kt);  // ends with the omp for's barrier
    alignas(64) float p[kBq * kBk];
    float m[kBq], l[kBq];
    Tile tile;
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t qb = nqb - 1 - task / per_block, b = (task % per_block) / s.heads, h = task % s.heads;
      const int64_t g = h / group, row0 = b * s.seq, q0 = qb * kBq;
      const int nq = static_cast<int>(std::min<int64_t>(kBq, s.seq - q0));
      const int32_t* ks = key_start + row0;
      const float* qp = q + (row0 + q0) * q_stride + h * hd;
      const float* vp = v + row0 * kv_stride + g * hd;
      float* op = out + (row0 + q0) * q_stride + h * hd;
      for (int i = 0; i < nq; ++i) {
        std::fill(op + i * q_stride, op + i * q_stride + hd, 0.0f);
        m[i] = kNegInf;
        l[i] = 0.0f;
      }
      const int64_t kfirst = *std::min_element(ks + q0, ks + q0 + nq), klast = q0 + nq - 1;
      for (int64_t kb = kfirst / kBk; kb <= klast / kBk; ++kb) {
        const int64_t k0 = kb * kBk;
        if (!visible_tile(ks, q0, nq, k0, static_cast<int>(std::min<int64_t>(kBk, s.seq - k0)), tile))
          continue;
        kern.scores(qp + tile.qa * q_stride, q_stride,
                    packed_tile(kt, s, b * s.kv_heads + g, kb) + (tile.ka - k0), kBk, tile.na,
                    static_cast<int>(hd), tile.nkc, p, kBk);
        // Online softmax: m is the running max of the scaled scores, l the running Σ exp(· − m),
        // and the output rows hold Σ exp(· − m) v, rescaled whenever m grows.
        for (int r = 0; r < tile.na; ++r) {
          float* pr = p + r * kBk;
          const int lo = tile.lo[r], hi = tile.hi[r], i = tile.qa + r;
          zero_outside(pr, lo, hi, tile.nkc);
          if (lo > hi) continue;
          const float m_new = std::max(m[i], kern.max(pr + lo, hi - lo + 1) * scale);
          const float sum = kern.exp_sum(pr + lo, hi - lo + 1, scale, m_new);
          if (m_new > m[i] && m[i] != kNegInf) {
            const float alpha = std::exp(m[i] - m_new);
            l[i] *= alpha;
            float* oi = op + i * q_stride;
            for (int64_t c = 0; c < hd; ++c) oi[c] *= alpha;
          }
          m[i] = m_new;
          l[i] += sum;
        }
        kern.accumulate(p, kBk, 1, vp + tile.ka * kv_stride, kv_stride, tile.na, tile.nkc,
                        static_cast<int>(hd), op + tile.qa * q_stride, q_stride);
      }
      for (int i = 0; i < nq; ++i) {
        const float inv = 1.0f / l[i];
        float* oi = op + i * q_stride;
        for (int64_t c = 0; c < hd; ++c) oi[c] *= inv;
        if (lse) lse[(row0 + q0 + i) * s.heads + h] = m[i] + std::log(l[i]);
      }
    }
  }
}

// Backward (FlashAttention-2 order), one task per (row, kv head): the query heads of a group
// write the same dk/dv rows, so they run in the same task and no two threads write the same
// memory. Within a task, key tiles are outer (their dk/dv rows stay in cache) and query tiles
// inner; every sum runs in a fixed order, so the result does not depend on the thread count.
void attention_backward(const float* q, const float* k, const float* v, const float* out, const float* dout,
                        const float* lse, const int32_t* key_start, const AttentionShape& s, float scale,
                        float* dq, float* dk, float* dv) {
  check_shape(s, key_start, "attention_backward");
  const int64_t hd = s.head_dim, group = s.heads / s.kv_heads;
  const int64_t q_stride = s.heads * hd, kv_stride = s.kv_heads * hd;
  const int64_t n = s.rows * s.seq;
  std::fill(dq, dq + n * q_stride, 0.0f);
  std::fill(dk, dk + n * kv_stride, 0.0f);
  std::fill(dv, dv + n * kv_stride, 0.0f);
  if (n == 0) return;
  const KernelTable& kern = attention_detail::active_kernels();
  Workspace& ws = workspace();
  const size_t packed = static_cast<size_t>(packed_size(s));
  float* kt = grow(ws.kt, packed);
  float* vt = grow(ws.vt, packed);
  float* delta = grow(ws.delta, static_cast<size_t>(n * s.heads));
  const int64_t tasks = s.rows * s.kv_heads, nqb = (s.seq + kBq - 1) / kBq, nkb = (s.seq + kBk - 1) / kBk;
#pragma omp parallel
  {
    pack_transposed(k, s, kt);
    pack_transposed(v, s, vt);
    // delta_t = Σ_c dout·out = Σ_j P_j dP_j, the softmax backward's per-query constant.
#pragma omp for schedule(static)
    for (int64_t x = 0; x < n * s.heads; ++x) {
      const float* o = out + x * hd;
      const float* d = dout + x * hd;
      float acc = 0;
      for (int64_t c = 0; c < hd; ++c) acc += d[c] * o[c];
      delta[x] = acc;
    }
    alignas(64) float p[kBq * kBk];
    alignas(64) float ds[kBq * kBk];
    Tile tile;
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t b = task / s.kv_heads, g = task % s.kv_heads, row0 = b * s.seq;
      const int32_t* ks = key_start + row0;
      for (int64_t kb = 0; kb < nkb; ++kb) {
        const int64_t k0 = kb * kBk;
        const int nk = static_cast<int>(std::min<int64_t>(kBk, s.seq - k0));
        const float* ktp = packed_tile(kt, s, task, kb);
        const float* vtp = packed_tile(vt, s, task, kb);
        for (int64_t qb = k0 / kBq; qb < nqb; ++qb) {  // queries before k0 see none of these keys
          const int64_t q0 = qb * kBq;
          const int nq = static_cast<int>(std::min<int64_t>(kBq, s.seq - q0));
          if (!visible_tile(ks, q0, nq, k0, nk, tile)) continue;
          const int64_t ka = tile.ka, qa = q0 + tile.qa;
          const int na = tile.na, nkc = tile.nkc, w = static_cast<int>(hd);
          const float* krows = k + (row0 + ka) * kv_stride + g * hd;
          float* dk_rows = dk + (row0 + ka) * kv_stride + g * hd;
          float* dv_rows = dv + (row0 + ka) * kv_stride + g * hd;
          for (int64_t h = g * group; h < (g + 1) * group; ++h) {
            const int64_t at = (row0 + qa) * q_stride + h * hd;
            // P = exp(S·scale − lse) recomputed; dP = dO Vᵀ; dS = P ⊙ (dP − delta) · scale.
            kern.scores(q + at, q_stride, ktp + (ka - k0), kBk, na, w, nkc, p, kBk);
            kern.scores(dout + at, q_stride, vtp + (ka - k0), kBk, na, w, nkc, ds, kBk);
            for (int r = 0; r < na; ++r) {
              float* pr = p + r * kBk;
              float* dsr = ds + r * kBk;
              const int lo = tile.lo[r], hi = tile.hi[r];
              zero_outside(pr, lo, hi, nkc);
              zero_outside(dsr, lo, hi, nkc);
              if (lo > hi) continue;
              const int64_t x = (row0 + qa + r) * s.heads + h;
              kern.exp_sum(pr + lo, hi - lo + 1, scale, lse[x]);
              const float dlt = delta[x];
              for (int j = lo; j <= hi; ++j) dsr[j] = pr[j] * (dsr[j] - dlt) * scale;
            }
            kern.accumulate(p, 1, kBk, dout + at, q_stride, nkc, na, w, dv_rows, kv_stride);  // dV += Pᵀ dO
            kern.accumulate(ds, 1, kBk, q + at, q_stride, nkc, na, w, dk_rows, kv_stride);    // dK += dSᵀ Q
            kern.accumulate(ds, kBk, 1, krows, kv_stride, na, nkc, w, dq + at, q_stride);     // dQ += dS K
          }
        }
      }
    }
  }
}

}  // namespace bidora
