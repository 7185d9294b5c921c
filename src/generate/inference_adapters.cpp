#include "generate/inference_adapters.h"

#include "core/backend.h"
#include "core/error.h"

namespace bidora {

InferenceAdapters::InferenceAdapters(const AdapterSet& set)
    : set_(set), g_(static_cast<size_t>(set.num_layers()) * kNumLinearKinds) {}

void InferenceAdapters::forward(int64_t layer, LinearKind kind, const FrozenMatrix& W, const float* x,
                                int64_t n, float* y) {
  const LoraLayer* l = set_.find(layer, kind);
  BIDORA_CHECK(l, "adapter: layer {} {} is not adapted", layer, linear_name(kind));
  const int64_t in = l->in_features(), out = l->out_features(), r = l->rank();
  BIDORA_CHECK(W.rows() == out && W.cols() == in,
               "LoRA layer {} {}: weight is [{}, {}], adapter expects [{}, {}]", layer, linear_name(kind),
               W.rows(), W.cols(), out, in);
  u_.resize(static_cast<size_t>(n * r));
  sgemm(false, true, n, r, in, 1.0f, x, in, l->A.data(), in, 0.0f, u_.data(), r);
  sgemm(false, true, n, out, r, l->scaling(), u_.data(), r, l->B.data(), r, 1.0f, y, out);
  if (!l->dora()) return;
  std::vector<float>& g = g_[static_cast<size_t>(layer * kNumLinearKinds + static_cast<int>(kind))];
  if (g.empty()) {
    std::vector<float> norm(static_cast<size_t>(out));
    l->weight_norm(W, norm.data(), scratch_, tile_);
    g.resize(static_cast<size_t>(out));
    // As LoraLayer::forward: a zero row of W + s·BA has no direction and stays zero.
    for (int64_t i = 0; i < out; ++i) g[i] = norm[i] > 0.0f ? l->m[i] / norm[i] : 0.0f;
  }
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < out; ++i) y[t * out + i] *= g[i];
}

void InferenceAdapters::backward(int64_t layer, LinearKind kind, const FrozenMatrix&, const float*,
                                 const float*, int64_t, float*) {
  fail("adapter layer {} {}: inference adapters have no backward pass", layer, linear_name(kind));
}

}  // namespace bidora
