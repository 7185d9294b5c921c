#include "model/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

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

void attention_forward(const float* q, const float* k, const float* v, const int32_t* key_start,
                       const AttentionShape& s, float scale, float* out, float* lse) {
  const int64_t hd = s.head_dim, group = s.heads / s.kv_heads;
  const int64_t q_stride = s.heads * hd, kv_stride = s.kv_heads * hd;
  const int64_t total = s.rows * s.heads * s.seq;
  std::vector<float> scratch(static_cast<size_t>(omp_get_max_threads()) * s.seq);
#pragma omp parallel
  {
    float* scores = scratch.data() + static_cast<size_t>(omp_get_thread_num()) * s.seq;
#pragma omp for schedule(dynamic, 16)
    for (int64_t idx = 0; idx < total; ++idx) {
      const int64_t t = idx % s.seq, h = (idx / s.seq) % s.heads, b = idx / (s.seq * s.heads);
      const int64_t row0 = b * s.seq, g = h / group;
      const float* qi = q + (row0 + t) * q_stride + h * hd;
      const int64_t j0 = key_start[row0 + t];
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = j0; j <= t; ++j) {
        const float* kj = k + (row0 + j) * kv_stride + g * hd;
        float d = 0;
        for (int64_t c = 0; c < hd; ++c) d += qi[c] * kj[c];
        d *= scale;
        scores[j - j0] = d;
        mx = std::max(mx, d);
      }
      float sum = 0;
      for (int64_t j = j0; j <= t; ++j) {
        const float e = std::exp(scores[j - j0] - mx);
        scores[j - j0] = e;
        sum += e;
      }
      const float inv = 1.0f / sum;
      float* oi = out + (row0 + t) * q_stride + h * hd;
      for (int64_t c = 0; c < hd; ++c) oi[c] = 0;
      for (int64_t j = j0; j <= t; ++j) {
        const float p = scores[j - j0] * inv;
        const float* vj = v + (row0 + j) * kv_stride + g * hd;
        for (int64_t c = 0; c < hd; ++c) oi[c] += p * vj[c];
      }
      if (lse) lse[(row0 + t) * s.heads + h] = mx + std::log(sum);
    }
  }
}

void attention_backward(const float* q, const float* k, const float* v, const float* out, const float* dout,
                        const float* lse, const int32_t* key_start, const AttentionShape& s, float scale,
                        float* dq, float* dk, float* dv) {
  const int64_t hd = s.head_dim, group = s.heads / s.kv_heads;
  const int64_t q_stride = s.heads * hd, kv_stride = s.kv_heads * hd;
  const int64_t n = s.rows * s.seq;
  std::fill(dq, dq + n * q_stride, 0.0f);
  std::fill(dk, dk + n * kv_stride, 0.0f);
  std::fill(dv, dv + n * kv_stride, 0.0f);
  // One task per (row, kv head): the query heads of a group write the same dk/dv rows, so they
  // run in the same task and no two threads write the same memory.
  const int64_t tasks = s.rows * s.kv_heads;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t b = task / s.kv_heads, g = task % s.kv_heads, row0 = b * s.seq;
    for (int64_t h = g * group; h < (g + 1) * group; ++h) {
      for (int64_t t = 0; t < s.seq; ++t) {
        const float* qi = q + (row0 + t) * q_stride + h * hd;
        const float* oi = out + (row0 + t) * q_stride + h * hd;
        const float* doi = dout + (row0 + t) * q_stride + h * hd;
        float* dqi = dq + (row0 + t) * q_stride + h * hd;
        const float l = lse[(row0 + t) * s.heads + h];
        float delta = 0;  // Σ_c dout·out = Σ_j p_j dp_j
        for (int64_t c = 0; c < hd; ++c) delta += doi[c] * oi[c];
        for (int64_t j = key_start[row0 + t]; j <= t; ++j) {
          const float* kj = k + (row0 + j) * kv_stride + g * hd;
          const float* vj = v + (row0 + j) * kv_stride + g * hd;
          float sc = 0, dp = 0;
          for (int64_t c = 0; c < hd; ++c) {
            sc += qi[c] * kj[c];
            dp += doi[c] * vj[c];
          }
          const float p = std::exp(sc * scale - l);
          const float ds = p * (dp - delta) * scale;
          float* dkj = dk + (row0 + j) * kv_stride + g * hd;
          float* dvj = dv + (row0 + j) * kv_stride + g * hd;
          for (int64_t c = 0; c < hd; ++c) {
            dvj[c] += p * doi[c];
            dqi[c] += ds * kj[c];
            dkj[c] += ds * qi[c];
          }
        }
      }
    }
  }
}

}  // namespace bidora
