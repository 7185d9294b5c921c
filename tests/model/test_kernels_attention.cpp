// Causal GQA attention: forward (output and log-sum-exp) against a naive double implementation
// whose mask is written from the definition (same document, i − window < j ≤ i) rather than
// from key_start; backward against the analytic double gradient and central differences; and
// the mask itself observed from outside (perturbing keys/values that must not be visible).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "model/attention.h"
#include "test_kernels_support.h"

namespace bidora {
namespace {

struct Case {
  std::string name;
  AttentionShape s;
  std::vector<std::vector<int>> docs;  // per row: document lengths summing to seq (empty: one document)
  int64_t window = 0;
  float q_scale = 1.0f;  // large values give large scores: the softmax must stay stable
};

// HF packing: position_ids restart at 0 at each document.
std::vector<int32_t> positions_for(const Case& c) {
  std::vector<int32_t> pos;
  for (int64_t b = 0; b < c.s.rows; ++b) {
    std::vector<int> lens = c.docs.empty() ? std::vector<int>{} : c.docs[b % c.docs.size()];
    if (lens.empty()) lens = {static_cast<int>(c.s.seq)};
    int total = 0;
    for (int len : lens) {
      for (int p = 0; p < len; ++p) pos.push_back(p);
      total += len;
    }
    EXPECT_EQ(total, c.s.seq) << c.name << ": document lengths of row " << b;
  }
  return pos;
}

// Query i may see key j of the same row iff j ≤ i, no document starts in (j, i], and (with a
// window) i − window < j.
bool visible(const std::vector<int32_t>& pos, int64_t row0, int64_t i, int64_t j, int64_t window) {
  if (j > i) return false;
  if (window > 0 && j <= i - window) return false;
  for (int64_t m = j + 1; m <= i; ++m)
    if (pos[row0 + m] == 0) return false;
  return true;
}

struct RefOut {
  std::vector<double> out, lse;
};

RefOut ref_attention(const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v,
                     const std::vector<int32_t>& pos, const AttentionShape& s, int64_t window, double scale) {
  const int64_t hd = s.head_dim, group = s.heads / s.kv_heads;
  RefOut r;
  r.out.assign(s.rows * s.seq * s.heads * hd, 0.0);
  r.lse.assign(s.rows * s.seq * s.heads, 0.0);
  std::vector<double> sc(s.seq);
  for (int64_t b = 0; b < s.rows; ++b) {
    const int64_t row0 = b * s.seq;
    for (int64_t h = 0; h < s.heads; ++h) {
      const int64_t g = h / group;
      for (int64_t i = 0; i < s.seq; ++i) {
        const double* qi = q.data() + ((row0 + i) * s.heads + h) * hd;
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < s.seq; ++j) {
          if (!visible(pos, row0, i, j, window)) continue;
          const double* kj = k.data() + ((row0 + j) * s.kv_heads + g) * hd;
          double d = 0;
          for (int64_t c = 0; c < hd; ++c) d += qi[c] * kj[c];
          sc[j] = d * scale;
          mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < s.seq; ++j)
          if (visible(pos, row0, i, j, window)) sum += std::exp(sc[j] - mx);
        double* oi = r.out.data() + ((row0 + i) * s.heads + h) * hd;
        for (int64_t j = 0; j < s.seq; ++j) {
          if (!visible(pos, row0, i, j, window)) continue;
          const double p = std::exp(sc[j] - mx) / sum;
          const double* vj = v.data() + ((row0 + j) * s.kv_heads + g) * hd;
          for (int64_t c = 0; c < hd; ++c) oi[c] += p * vj[c];
        }
        r.lse[(row0 + i) * s.heads + h] = mx + std::log(sum);
      }
    }
  }
  return r;
}

struct RefGrad {
  std::vector<double> dq, dk, dv;
};

// The softmax backward written out: dP_j = dout·v_j, dS_j = P_j (dP_j − Σ_l P_l dP_l),
// dq = scale Σ dS_j k_j, dk_j += scale dS_j q, dv_j += P_j dout.
RefGrad ref_attention_grad(const std::vector<double>& q, const std::vector<double>& k,
                           const std::vector<double>& v, const std::vector<double>& dout,
                           const std::vector<int32_t>& pos, const AttentionShape& s, int64_t window,
                           double scale) {
  const int64_t hd = s.head_dim, group = s.heads / s.kv_heads;
  RefGrad g{std::vector<double>(q.size()), std::vector<double>(k.size()), std::vector<double>(v.size())};
  std::vector<double> p(s.seq), dp(s.seq);
  for (int64_t b = 0; b < s.rows; ++b) {
    const int64_t row0 = b * s.seq;
    for (int64_t h = 0; h < s.heads; ++h) {
      const int64_t kvh = h / group;
      for (int64_t i = 0; i < s.seq; ++i) {
        const double* qi = q.data() + ((row0 + i) * s.heads + h) * hd;
        const double* doi = dout.data() + ((row0 + i) * s.heads + h) * hd;
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j <= i; ++j) {
          if (!visible(pos, row0, i, j, window)) continue;
          const double* kj = k.data() + ((row0 + j) * s.kv_heads + kvh) * hd;
          double d = 0;
          for (int64_t c = 0; c < hd; ++c) d += qi[c] * kj[c];
          p[j] = d * scale;
          mx = std::max(mx, p[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j <= i; ++j)
          if (visible(pos, row0, i, j, window)) sum += (p[j] = std::exp(p[j] - mx));
        double pdp = 0;
        for (int64_t j = 0; j <= i; ++j) {
          if (!visible(pos, row0, i, j, window)) continue;
          p[j] /= sum;
          const double* vj = v.data() + ((row0 + j) * s.kv_heads + kvh) * hd;
          dp[j] = 0;
          for (int64_t c = 0; c < hd; ++c) dp[j] += doi[c] * vj[c];
          pdp += p[j] * dp[j];
        }
        for (int64_t j = 0; j <= i; ++j) {
          if (!visible(pos, row0, i, j, window)) continue;
          const double ds = p[j] * (dp[j] - pdp) * scale;
          const size_t kv_off = ((row0 + j) * s.kv_heads + kvh) * hd;
          for (int64_t c = 0; c < hd; ++c) {
            g.dq[((row0 + i) * s.heads + h) * hd + c] += ds * k[kv_off + c];
            g.dk[kv_off + c] += ds * qi[c];
            g.dv[kv_off + c] += p[j] * doi[c];
          }
        }
      }
    }
  }
  return g;
}

struct Inputs {
  std::vector<float> q, k, v;
  std::vector<int32_t> pos, key_start;
  float scale;
};

Inputs make_inputs(const Case& c, uint32_t seed) {
  const AttentionShape& s = c.s;
  Inputs in;
  const int64_t n = s.rows * s.seq;
  in.q = kt::random_floats(n * s.heads * s.head_dim, seed, -c.q_scale, c.q_scale);
  in.k = kt::random_floats(n * s.kv_heads * s.head_dim, seed + 1);
  in.v = kt::random_floats(n * s.kv_heads * s.head_dim, seed + 2, -2.0f, 2.0f);
  in.pos = positions_for(c);
  in.key_start = attention_key_start(in.pos.data(), s.rows, s.seq, c.window);
  in.scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  return in;
}

struct Output {
  std::vector<float> out, lse;
};

Output run_forward(const Inputs& in, const AttentionShape& s) {
  Output o{std::vector<float>(s.rows * s.seq * s.heads * s.head_dim, std::nanf("")),
           std::vector<float>(s.rows * s.seq * s.heads, std::nanf(""))};
  attention_forward(in.q.data(), in.k.data(), in.v.data(), in.key_start.data(), s, in.scale, o.out.data(),
                    o.lse.data());
  return o;
}

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {"mha_single_token", {1, 1, 2, 2, 5}, {}, 0},
      {"mqa_hd24", {2, 13, 4, 1, 24}, {}, 0},
      {"gqa2_packed", {3, 17, 6, 3, 24}, {{5, 4, 8}, {17}, {1, 1, 15}}, 0},
      {"gqa4_packed_window", {2, 19, 4, 1, 7}, {{6, 13}, {19}}, 4},
      {"window_one_sees_only_itself", {1, 9, 2, 1, 6}, {}, 1},
      {"window_longer_than_sequence", {1, 8, 2, 2, 6}, {{3, 5}}, 50},
      {"large_scores", {1, 21, 2, 1, 24}, {{10, 11}}, 0, 12.0f},
  };
  return all;
}

class AttentionTest : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionTest, ForwardMatchesDoubleReference) {
  const Case& c = GetParam();
  const Inputs in = make_inputs(c, 11);
  const Output got = run_forward(in, c.s);
  const RefOut want = ref_attention(kt::to_double(in.q), kt::to_double(in.k), kt::to_double(in.v), in.pos,
                                    c.s, c.window, in.scale);
  kt::expect_close(got.out, want.out, 2e-6, 2e-5, "out");
  kt::expect_close(got.lse, want.lse, 2e-6 * c.q_scale, 2e-6, "lse");

  // Without lse the output is identical.
  std::vector<float> out2(got.out.size());
  attention_forward(in.q.data(), in.k.data(), in.v.data(), in.key_start.data(), c.s, in.scale, out2.data(),
                    nullptr);
  EXPECT_EQ(out2, got.out);
}

TEST_P(AttentionTest, BackwardMatchesAnalyticGradient) {
  const Case& c = GetParam();
  const AttentionShape& s = c.s;
  const Inputs in = make_inputs(c, 21);
  const Output fwd = run_forward(in, s);
  const auto dout = kt::random_floats(fwd.out.size(), 25);
  std::vector<float> dq(in.q.size(), std::nanf("")), dk(in.k.size(), std::nanf("")),
      dv(in.v.size(), std::nanf(""));
  attention_backward(in.q.data(), in.k.data(), in.v.data(), fwd.out.data(), dout.data(), fwd.lse.data(),
                     in.key_start.data(), s, in.scale, dq.data(), dk.data(), dv.data());
  const RefGrad want = ref_attention_grad(kt::to_double(in.q), kt::to_double(in.k), kt::to_double(in.v),
                                          kt::to_double(dout), in.pos, s, c.window, in.scale);
  const double tol = c.q_scale > 1 ? 1e-4 : 2e-5;  // large scores amplify the float rounding of p
  kt::expect_close_scaled(dq, want.dq, tol, "dq");
  kt::expect_close_scaled(dk, want.dk, tol, "dk");
  kt::expect_close_scaled(dv, want.dv, tol, "dv");
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionTest, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

TEST(Attention, BackwardMatchesFiniteDifferences) {
  // Small enough to perturb every input: L = Σ r ⊙ out through the double forward.
  const Case c{"fd", {2, 7, 4, 2, 6}, {{3, 4}, {7}}, 5};
  const AttentionShape& s = c.s;
  const Inputs in = make_inputs(c, 31);
  const Output fwd = run_forward(in, s);
  const auto r = kt::random_floats(fwd.out.size(), 35);
  std::vector<float> dq(in.q.size()), dk(in.k.size()), dv(in.v.size());
  attention_backward(in.q.data(), in.k.data(), in.v.data(), fwd.out.data(), r.data(), fwd.lse.data(),
                     in.key_start.data(), s, in.scale, dq.data(), dk.data(), dv.data());

  std::vector<double> q = kt::to_double(in.q), k = kt::to_double(in.k), v = kt::to_double(in.v);
  const std::vector<double> rd = kt::to_double(r);
  const auto loss = [&] { return kt::dot(rd, ref_attention(q, k, v, in.pos, s, c.window, in.scale).out); };
  kt::expect_close_scaled(dq, kt::numeric_grad(q, loss), 2e-5, "dq_vs_finite_diff");
  kt::expect_close_scaled(dk, kt::numeric_grad(k, loss), 2e-5, "dk_vs_finite_diff");
  kt::expect_close_scaled(dv, kt::numeric_grad(v, loss), 2e-5, "dv_vs_finite_diff");
}

TEST(Attention, KeyStartFollowsDocumentsAndWindow) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const std::vector<int32_t> pos = positions_for(c);
    const auto ks = attention_key_start(pos.data(), c.s.rows, c.s.seq, c.window);
    ASSERT_EQ(static_cast<int64_t>(ks.size()), c.s.rows * c.s.seq);
    for (int64_t b = 0; b < c.s.rows; ++b) {
      for (int64_t i = 0; i < c.s.seq; ++i) {
        // key_start is the first visible key, and every key from there to i is visible.
        const int64_t start = ks[b * c.s.seq + i];
        ASSERT_TRUE(start >= 0 && start <= i) << "row " << b << " query " << i;
        for (int64_t j = 0; j < c.s.seq; ++j)
          EXPECT_EQ(visible(pos, b * c.s.seq, i, j, c.window), j >= start && j <= i)
              << "row " << b << " query " << i << " key " << j;
      }
    }
  }
}

// Changes K and V of the tokens marked in `perturbed_tokens`, reruns, and returns which outputs
// (per query token, all heads) changed.
std::vector<bool> outputs_changed_by(const Case& c, const std::vector<bool>& perturbed_tokens) {
  const Inputs in = make_inputs(c, 41);
  const Output before = run_forward(in, c.s);
  Inputs moved = in;
  const int64_t kv_width = c.s.kv_heads * c.s.head_dim, q_width = c.s.heads * c.s.head_dim;
  for (size_t t = 0; t < perturbed_tokens.size(); ++t) {
    if (!perturbed_tokens[t]) continue;
    for (int64_t x = 0; x < kv_width; ++x) {
      moved.k[t * kv_width + x] += 0.5f + 0.1f * static_cast<float>(x);
      moved.v[t * kv_width + x] -= 1.0f;
    }
  }
  const Output after = run_forward(moved, c.s);
  std::vector<bool> changed(perturbed_tokens.size());
  for (size_t t = 0; t < changed.size(); ++t)
    for (int64_t x = 0; x < q_width; ++x)
      if (before.out[t * q_width + x] != after.out[t * q_width + x]) changed[t] = true;
  return changed;
}

TEST(Attention, NoQueryAttendsAcrossADocumentBoundary) {
  // One row packing three documents: [0, 4), [4, 9), [9, 16).
  const Case c{"docs", {1, 16, 4, 2, 8}, {{4, 5, 7}}, 0};
  std::vector<bool> doc2(16, false);
  for (int t = 4; t < 9; ++t) doc2[t] = true;
  const auto changed = outputs_changed_by(c, doc2);
  for (int t = 0; t < 16; ++t)
    EXPECT_EQ(changed[t], doc2[t]) << "query " << t
                                   << (doc2[t] ? " of document 2 must change" : " must not change");

  // Backward: queries of document 3 alone send no gradient to the keys/values of documents 1–2.
  const Inputs in = make_inputs(c, 43);
  const Output fwd = run_forward(in, c.s);
  std::vector<float> dout(fwd.out.size(), 0.0f);
  const int64_t q_width = c.s.heads * c.s.head_dim, kv_width = c.s.kv_heads * c.s.head_dim;
  for (int64_t x = 9 * q_width; x < 16 * q_width; ++x) dout[x] = 1.0f;
  std::vector<float> dq(in.q.size()), dk(in.k.size()), dv(in.v.size());
  attention_backward(in.q.data(), in.k.data(), in.v.data(), fwd.out.data(), dout.data(), fwd.lse.data(),
                     in.key_start.data(), c.s, in.scale, dq.data(), dk.data(), dv.data());
  for (int64_t x = 0; x < 9 * kv_width; ++x) {
    ASSERT_EQ(dk[x], 0.0f) << x;
    ASSERT_EQ(dv[x], 0.0f) << x;
  }
  double dv_doc3 = 0;
  for (int64_t x = 9 * kv_width; x < 16 * kv_width; ++x) dv_doc3 += std::abs(dv[x]);
  EXPECT_GT(dv_doc3, 1.0);
}

TEST(Attention, SlidingWindowBoundaryIsExclusiveOnTheLeft) {
  // Query i sees keys j with i − window < j ≤ i: moving key i − window changes nothing,
  // moving key i − window + 1 changes query i. Row b of the batch perturbs key b only, so one
  // forward pass covers every key.
  const int64_t window = 4, seq = 12;
  const Case c{"window", {seq, seq, 2, 1, 6}, {}, window};
  Inputs in = make_inputs(c, 51);
  const int64_t kv_width = c.s.kv_heads * c.s.head_dim, q_width = c.s.heads * c.s.head_dim;
  for (int64_t b = 1; b < seq; ++b) {  // identical rows
    std::copy_n(in.q.begin(), seq * q_width, in.q.begin() + b * seq * q_width);
    std::copy_n(in.k.begin(), seq * kv_width, in.k.begin() + b * seq * kv_width);
    std::copy_n(in.v.begin(), seq * kv_width, in.v.begin() + b * seq * kv_width);
  }
  const Output before = run_forward(in, c.s);
  for (int64_t b = 0; b < seq; ++b) {
    for (int64_t x = 0; x < kv_width; ++x) {
      in.k[(b * seq + b) * kv_width + x] += 0.5f;
      in.v[(b * seq + b) * kv_width + x] -= 1.0f;
    }
  }
  const Output after = run_forward(in, c.s);
  for (int64_t key = 0; key < seq; ++key) {
    for (int64_t i = 0; i < seq; ++i) {
      bool changed = false;
      for (int64_t x = 0; x < q_width; ++x) {
        const int64_t at = (key * seq + i) * q_width + x;
        changed |= before.out[at] != after.out[at];
      }
      EXPECT_EQ(changed, i >= key && i - window < key) << "key " << key << " query " << i;
    }
  }
}

}  // namespace
}  // namespace bidora
