#include "generate/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"

namespace bidora {

namespace {
constexpr float kRemoved = -std::numeric_limits<float>::infinity();
}

void SamplingParams::validate() const {
  if (!(temperature >= 0.0 && std::isfinite(temperature)))
    fail("--temperature must be a finite number >= 0 (0 = greedy), got {}", temperature);
  if (top_k < 0) fail("--top-k must be >= 0 (0 = off), got {}", top_k);
  if (!(top_p > 0.0 && top_p <= 1.0)) fail("--top-p must be in (0, 1] (1 = off), got {}", top_p);
  if (!(repetition_penalty > 0.0 && std::isfinite(repetition_penalty)))
    fail("--repetition-penalty must be a finite number > 0 (1 = off), got {}", repetition_penalty);
}

void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> seen, double penalty) {
  if (penalty == 1.0) return;
  std::vector<int32_t> ids(seen.begin(), seen.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  const float pen = static_cast<float>(penalty);
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= logits.size()) continue;
    float& x = logits[static_cast<size_t>(id)];
    x = x < 0.0f ? x * pen : x / pen;
  }
}

void apply_temperature(std::span<float> logits, double temperature) {
  if (temperature == 1.0) return;
  const float t = static_cast<float>(temperature);
  for (float& x : logits) x /= t;
}

void apply_top_k(std::span<float> logits, int64_t k) {
  if (k <= 0 || k >= static_cast<int64_t>(logits.size())) return;
  std::vector<float> v(logits.begin(), logits.end());
  std::nth_element(v.begin(), v.begin() + (k - 1), v.end(), std::greater<float>());
  const float kth = v[static_cast<size_t>(k - 1)];
  for (float& x : logits)
    if (x < kth) x = kRemoved;
}

void apply_top_p(std::span<float> logits, double p) {
  if (p >= 1.0) return;
  const std::vector<double> probs = softmax(logits);
  // Tokens still in play, least probable first (ties: the higher id counts as less probable, so
  // that equal logits resolve the same way on every run).
  std::vector<int32_t> order;
  for (size_t i = 0; i < logits.size(); ++i)
    if (probs[i] > 0.0) order.push_back(static_cast<int32_t>(i));
  std::sort(order.begin(), order.end(),
            [&](int32_t a, int32_t b) { return logits[a] != logits[b] ? logits[a] < logits[b] : a > b; });
  double cum = 0.0;
  for (size_t r = 0; r + 1 < order.size(); ++r) {  // the most probable token always stays
    cum += probs[order[r]];
    if (cum > 1.0 - p) break;
    logits[order[r]] = kRemoved;
  }
}

void process_logits(std::span<float> logits, std::span<const int32_t> seen, const SamplingParams& p) {
  apply_repetition_penalty(logits, seen, p.repetition_penalty);
  if (p.greedy()) return;
  apply_temperature(logits, p.temperature);
  apply_top_k(logits, p.top_k);
  apply_top_p(logits, p.top_p);
}

std::vector<double> softmax(std::span<const float> logits) {
  std::vector<double> out(logits.size(), 0.0);
  float mx = kRemoved;
  for (float x : logits) mx = std::max(mx, x);
  if (mx == kRemoved) return out;
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    out[i] = logits[i] == kRemoved ? 0.0 : std::exp(static_cast<double>(logits[i]) - mx);
    sum += out[i];
  }
  for (double& v : out) v /= sum;
  return out;
}

Sampler::Sampler(const SamplingParams& params, uint64_t seed) : p_(params), gen_(seed) {
  p_.validate();
}

int32_t Sampler::next(std::span<float> logits, std::span<const int32_t> seen) {
  BIDORA_CHECK(!logits.empty(), "sampler: empty logits");
  process_logits(logits, seen, p_);
  if (p_.greedy()) {
    // The first maximum, as torch.argmax.
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  probs_ = softmax(logits);
  // A uniform double in [0, 1) from the top 53 bits: the same draws on every platform (the
  // standard distributions are implementation-defined).
  const double u = static_cast<double>(gen_() >> 11) * 0x1.0p-53;
  double cum = 0.0;
  int32_t last = -1;
  for (size_t i = 0; i < probs_.size(); ++i) {
    if (probs_[i] <= 0.0) continue;
    last = static_cast<int32_t>(i);
    cum += probs_[i];
    if (u < cum) return last;
  }
  BIDORA_CHECK(last >= 0, "sampler: no token has a non-zero probability (all logits are -inf or NaN)");
  return last;  // u fell past the rounded total
}

}  // namespace bidora
