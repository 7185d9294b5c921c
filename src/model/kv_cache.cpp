#include "model/kv_cache.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "model/attention_kernels.h"

namespace bidora {

KvCache::KvCache(const ModelConfig& c, int64_t capacity)
    : layers_(c.num_layers), kv_heads_(c.num_kv_heads), head_dim_(c.head_dim) {
  reserve(std::max<int64_t>(capacity, 1));
}

void KvCache::reserve(int64_t capacity) {
  if (capacity <= capacity_) return;
  const int64_t slots = layers_ * kv_heads_, hd = head_dim_;
  std::vector<float> k(static_cast<size_t>(slots * hd * capacity)), v(k.size());
  for (int64_t s = 0; s < slots && length_ > 0; ++s) {
    const float* ko = k_.data() + s * hd * capacity_;
    float* kn = k.data() + s * hd * capacity;
    for (int64_t c = 0; c < hd; ++c)
      std::memcpy(kn + c * capacity, ko + c * capacity_, length_ * sizeof(float));
    std::memcpy(v.data() + s * hd * capacity, v_.data() + s * hd * capacity_, length_ * hd * sizeof(float));
  }
  k_ = std::move(k);
  v_ = std::move(v);
  capacity_ = capacity;
}

void KvCache::truncate(int64_t n) {
  BIDORA_CHECK(n >= 0 && n <= length_, "KV cache: cannot truncate {} cached positions to {}", length_, n);
  length_ = n;
}

void KvCache::set_length(int64_t n) {
  BIDORA_CHECK(n >= 0 && n <= capacity_, "KV cache: length {} is outside [0, {}]", n, capacity_);
  length_ = n;
}

void KvCache::store(int64_t layer, int64_t p0, int64_t n, const float* k, const float* v) {
  BIDORA_CHECK(layer >= 0 && layer < layers_ && p0 >= 0 && n >= 0 && p0 + n <= capacity_,
               "KV cache: positions [{}, {}) of layer {} do not fit {} layers x {} positions", p0, p0 + n,
               layer, layers_, capacity_);
  const int64_t hd = head_dim_, stride = kv_heads_ * hd;
  for (int64_t g = 0; g < kv_heads_; ++g) {
    float* kt = k_.data() + slot(layer, g);
    float* vg = v_.data() + slot(layer, g);
    for (int64_t t = 0; t < n; ++t) {
      const float* kr = k + t * stride + g * hd;
      for (int64_t c = 0; c < hd; ++c) kt[c * capacity_ + p0 + t] = kr[c];
      std::memcpy(vg + (p0 + t) * hd, v + t * stride + g * hd, hd * sizeof(float));
    }
  }
}

namespace {

// Scores of one task ([group, keys]), owned by the calling thread and grown once: attention runs
// for every layer of every step with slowly growing key counts.
std::vector<float>& score_buffer() {
  thread_local std::vector<float> s;
  return s;
}

}  // namespace

void attention_cached(const float* q, int64_t n, int64_t p0, const KvCache& cache, int64_t layer,
                      int64_t heads, int64_t window, float scale, float* out) {
  const int64_t kv = cache.kv_heads(), hd = cache.head_dim();
  BIDORA_CHECK(heads > 0 && heads % kv == 0,
               "attention_cached: heads ({}) is not a multiple of kv_heads ({})", heads, kv);
  BIDORA_CHECK(
      p0 >= 0 && n >= 0 && p0 + n <= cache.capacity() && layer >= 0 && layer < cache.num_layers(),
      "attention_cached: positions [{}, {}) of layer {} are outside the cache ({} positions, {} layers)", p0,
      p0 + n, layer, cache.capacity(), cache.num_layers());
  const attention_detail::KernelTable& kern = attention_detail::active_kernels();
  const int64_t group = heads / kv, q_stride = heads * hd, tasks = n * kv, ld = cache.capacity();
#pragma omp parallel
  {
    // [group, keys] scores, then the group's inverse softmax sums.
    const size_t need = static_cast<size_t>(group * (p0 + n) + group);
    std::vector<float>& buf = score_buffer();
    if (buf.size() < need) buf.resize(need);
    float* s = buf.data();
    float* inv = s + group * (p0 + n);
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t t = task / kv, g = task % kv, pos = p0 + t;
      const int64_t lo = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
      const int nk = static_cast<int>(pos - lo + 1);
      // The group's query heads are consecutive in q's row: a [group, hd] matrix with stride hd.
      const float* qg = q + t * q_stride + g * group * hd;
      float* og = out + t * q_stride + g * group * hd;
      kern.scores(qg, hd, cache.keys_t(layer, g) + lo, ld, static_cast<int>(group), static_cast<int>(hd), nk,
                  s, nk);
      std::fill(og, og + group * hd, 0.0f);
      // Softmax per query head, in place: s ← exp(s·scale − max), as attention_forward's tiles.
      for (int64_t r = 0; r < group; ++r) {
        float* row = s + r * nk;
        const float m = kern.max(row, nk) * scale;
        inv[r] = 1.0f / kern.exp_sum(row, nk, scale, m);
      }
      kern.accumulate(s, nk, 1, cache.values(layer, g) + lo * hd, hd, static_cast<int>(group), nk,
                      static_cast<int>(hd), og, hd);
      for (int64_t r = 0; r < group; ++r)
        for (int64_t c = 0; c < hd; ++c) og[r * hd + c] *= inv[r];
    }
  }
}

}  // namespace bidora
