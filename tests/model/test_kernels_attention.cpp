// Causal GQA attention: forward (output and log-sum-exp) against a naive double implementation
// whose mask is written from the definition (same document, i − window < j ≤ i) rather than
// from key_start; backward against the analytic double gradient and central differences; and
// the mask itself observed from outside (perturbing keys/values that must not be visible).
// Every numeric test runs with both the portable and the AVX-512 tile kernels; the shapes cover
// the tiling (sequences that are not multiples of the 32-query / 64-key tiles, documents and
// sliding windows that start and end inside tiles, fully masked tiles, head_dim 5..256 with
// vector remainders, the online softmax's running max growing from tile to tile).
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/attention.h"
#include "model/attention_kernels.h"
#include "test_kernels_support.h"

namespace bidora {
namespace {

struct Case {
  std::string name;
  AttentionShape s;
  std::vector<std::vector<int>> docs;  // per row: document lengths summing to seq (empty: one document)
  int64_t window = 0;
  float q_scale = 1.0f;  // large values give large scores: the softmax must stay stable
  // > 0: scores grow along the keys (q·k gains ≈ key_ramp · j / seq), so a query's running max
  // rises in every new key tile and the output accumulated so far must be rescaled.
  float key_ramp = 0.0f;
};

// gtest prints failing parameters with this (instead of the struct's bytes).
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

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

// Document index of every token (unique across rows): a document starts where the position
// restarts at 0.
std::vector<int64_t> documents_of(const std::vector<int32_t>& pos, int64_t seq) {
  std::vector<int64_t> doc(pos.size());
  int64_t id = -1;
  for (size_t t = 0; t < pos.size(); ++t) {
    if (pos[t] == 0 || t % seq == 0) ++id;
    doc[t] = id;
  }
  return doc;
}

// Query i may see key j of the same row iff j ≤ i, both are in the same document (no document
// starts in (j, i]), and (with a window) i − window < j.
struct Mask {
  std::vector<int64_t> doc;
  int64_t window = 0;
  Mask(const std::vector<int32_t>& pos, int64_t seq, int64_t w) : doc(documents_of(pos, seq)), window(w) {}
  bool visible(int64_t row0, int64_t i, int64_t j) const {
    if (j > i) return false;
    if (window > 0 && j <= i - window) return false;
    return doc[row0 + i] == doc[row0 + j];
  }
};

struct RefOut {
  std::vector<double> out, lse;
};

RefOut ref_attention(const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v,
                     const std::vector<int32_t>& pos, const AttentionShape& s, int64_t window, double scale) {
  const int64_t hd = s.head_dim, group = s.heads / s.kv_heads;
  const Mask mask(pos, s.seq, window);
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
          if (!mask.visible(row0, i, j)) continue;
          const double* kj = k.data() + ((row0 + j) * s.kv_heads + g) * hd;
          double d = 0;
          for (int64_t c = 0; c < hd; ++c) d += qi[c] * kj[c];
          sc[j] = d * scale;
          mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < s.seq; ++j)
          if (mask.visible(row0, i, j)) sum += std::exp(sc[j] - mx);
        double* oi = r.out.data() + ((row0 + i) * s.heads + h) * hd;
        for (int64_t j = 0; j < s.seq; ++j) {
          if (!mask.visible(row0, i, j)) continue;
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
  const Mask mask(pos, s.seq, window);
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
          if (!mask.visible(row0, i, j)) continue;
          const double* kj = k.data() + ((row0 + j) * s.kv_heads + kvh) * hd;
          double d = 0;
          for (int64_t c = 0; c < hd; ++c) d += qi[c] * kj[c];
          p[j] = d * scale;
          mx = std::max(mx, p[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j <= i; ++j)
          if (mask.visible(row0, i, j)) sum += (p[j] = std::exp(p[j] - mx));
        double pdp = 0;
        for (int64_t j = 0; j <= i; ++j) {
          if (!mask.visible(row0, i, j)) continue;
          p[j] /= sum;
          const double* vj = v.data() + ((row0 + j) * s.kv_heads + kvh) * hd;
          dp[j] = 0;
          for (int64_t c = 0; c < hd; ++c) dp[j] += doi[c] * vj[c];
          pdp += p[j] * dp[j];
        }
        for (int64_t j = 0; j <= i; ++j) {
          if (!mask.visible(row0, i, j)) continue;
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
  if (c.key_ramp > 0) {
    for (int64_t t = 0; t < n * s.heads; ++t) in.q[t * s.head_dim] = std::abs(in.q[t * s.head_dim]) + 1.0f;
    for (int64_t t = 0; t < n; ++t)
      for (int64_t g = 0; g < s.kv_heads; ++g)
        in.k[(t * s.kv_heads + g) * s.head_dim] += c.key_ramp * static_cast<float>(t % s.seq) / s.seq;
  }
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
      // Multi-tile shapes (tiles are 32 queries × 64 keys).
      {"mha_hd8_seq70", {2, 70, 3, 3, 8}, {}, 0},
      {"gqa2_hd64_docs_across_tiles", {2, 100, 4, 2, 64}, {{30, 45, 25}, {1, 63, 36}}, 0},
      {"gqa4_hd128_seq129", {1, 129, 8, 2, 128}, {}, 0},
      {"gqa2_hd20_window5", {1, 150, 4, 2, 20}, {}, 5},
      {"mqa_hd16_window40_docs", {2, 150, 2, 1, 16}, {{70, 80}, {150}}, 40},
      {"gqa4_hd256_seq70", {1, 70, 4, 1, 256}, {{33, 37}}, 0},
      {"gqa2_hd64_seq300", {2, 300, 4, 2, 64}, {{100, 200}, {300}}, 0},
      {"rescale_across_tiles", {1, 200, 2, 1, 16}, {}, 0, 2.0f, 30.0f},
  };
  return all;
}

std::vector<AttentionKernel> kernels_to_test() {
  std::vector<AttentionKernel> ks{AttentionKernel::Scalar};
  if (attention_avx512_available()) ks.push_back(AttentionKernel::Avx512);
  return ks;
}

// Selects a kernel set for the scope, and restores the automatic choice after it.
struct UseKernel {
  explicit UseKernel(AttentionKernel k) { set_attention_kernel(k); }
  ~UseKernel() { set_attention_kernel(AttentionKernel::Auto); }
};

class AttentionTest : public ::testing::TestWithParam<std::tuple<Case, AttentionKernel>> {
 protected:
  void SetUp() override {
    if (kernel() == AttentionKernel::Avx512 && !attention_avx512_available())
      GTEST_SKIP() << "no AVX-512F on this CPU";
    set_attention_kernel(kernel());
  }
  void TearDown() override { set_attention_kernel(AttentionKernel::Auto); }
  const Case& param() const { return std::get<0>(GetParam()); }
  AttentionKernel kernel() const { return std::get<1>(GetParam()); }
};

TEST_P(AttentionTest, ForwardMatchesDoubleReference) {
  const Case& c = param();
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
  const Case& c = param();
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
  // Errors are judged against the larger of the gradient's scale and that of the terms that
  // cancel in it, dS = P (dP − delta) · scale with dP = dout·v: when a query sees one key the exact
  // dq and dk are 0, and dP − delta leaves a rounding residue (~1e-8) whose size depends on how
  // each path rounds its dot products.
  const double terms = kt::max_abs(kt::to_double(dout)) * kt::max_abs(kt::to_double(in.v)) * in.scale;
  const auto check = [&](const std::vector<float>& got, const std::vector<double>& ref, const char* what) {
    kt::expect_close(got, ref, tol * std::max(kt::max_abs(ref), terms), tol, what);
  };
  check(dq, want.dq, "dq");
  check(dk, want.dk, "dk");
  check(dv, want.dv, "dv");
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionTest,
                         ::testing::Combine(::testing::ValuesIn(cases()),
                                            ::testing::Values(AttentionKernel::Scalar,
                                                              AttentionKernel::Avx512)),
                         [](const auto& info) {
                           return std::get<0>(info.param).name + "_" +
                                  attention_kernel_name(std::get<1>(info.param));
                         });

TEST(Attention, BackwardMatchesFiniteDifferences) {
  // Small enough to perturb every input: L = Σ r ⊙ out through the double forward.
  const Case c{"fd", {2, 7, 4, 2, 6}, {{3, 4}, {7}}, 5};
  const AttentionShape& s = c.s;
  const Inputs in = make_inputs(c, 31);
  std::vector<double> q = kt::to_double(in.q), k = kt::to_double(in.k), v = kt::to_double(in.v);
  const auto r = kt::random_floats(q.size(), 35);
  const std::vector<double> rd = kt::to_double(r);
  const auto loss = [&] { return kt::dot(rd, ref_attention(q, k, v, in.pos, s, c.window, in.scale).out); };
  const std::vector<double> want_dq = kt::numeric_grad(q, loss), want_dk = kt::numeric_grad(k, loss),
                            want_dv = kt::numeric_grad(v, loss);
  for (AttentionKernel kernel : kernels_to_test()) {
    SCOPED_TRACE(attention_kernel_name(kernel));
    const UseKernel use(kernel);
    const Output fwd = run_forward(in, s);
    std::vector<float> dq(in.q.size()), dk(in.k.size()), dv(in.v.size());
    attention_backward(in.q.data(), in.k.data(), in.v.data(), fwd.out.data(), r.data(), fwd.lse.data(),
                       in.key_start.data(), s, in.scale, dq.data(), dk.data(), dv.data());
    kt::expect_close_scaled(dq, want_dq, 2e-5, "dq_vs_finite_diff");
    kt::expect_close_scaled(dk, want_dk, 2e-5, "dk_vs_finite_diff");
    kt::expect_close_scaled(dv, want_dv, 2e-5, "dv_vs_finite_diff");
  }
}

TEST(Attention, KeyStartFollowsDocumentsAndWindow) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const std::vector<int32_t> pos = positions_for(c);
    const Mask mask(pos, c.s.seq, c.window);
    const auto ks = attention_key_start(pos.data(), c.s.rows, c.s.seq, c.window);
    ASSERT_EQ(static_cast<int64_t>(ks.size()), c.s.rows * c.s.seq);
    for (int64_t b = 0; b < c.s.rows; ++b) {
      for (int64_t i = 0; i < c.s.seq; ++i) {
        // key_start is the first visible key, and every key from there to i is visible.
        const int64_t start = ks[b * c.s.seq + i];
        ASSERT_TRUE(start >= 0 && start <= i) << "row " << b << " query " << i;
        for (int64_t j = 0; j < c.s.seq; ++j)
          EXPECT_EQ(mask.visible(b * c.s.seq, i, j), j >= start && j <= i)
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

// One row packing three documents; perturbing the keys/values of the middle one must change
// exactly its queries, and the last document's queries alone send no gradient to the others.
void expect_documents_isolated(const Case& c, int64_t doc2_begin, int64_t doc2_end) {
  const int64_t seq = c.s.seq;
  std::vector<bool> doc2(seq, false);
  for (int64_t t = doc2_begin; t < doc2_end; ++t) doc2[t] = true;
  const auto changed = outputs_changed_by(c, doc2);
  for (int64_t t = 0; t < seq; ++t)
    EXPECT_EQ(changed[t], doc2[t]) << "query " << t
                                   << (doc2[t] ? " of document 2 must change" : " must not change");

  const Inputs in = make_inputs(c, 43);
  const Output fwd = run_forward(in, c.s);
  std::vector<float> dout(fwd.out.size(), 0.0f);
  const int64_t q_width = c.s.heads * c.s.head_dim, kv_width = c.s.kv_heads * c.s.head_dim;
  for (int64_t x = doc2_end * q_width; x < seq * q_width; ++x) dout[x] = 1.0f;
  std::vector<float> dq(in.q.size()), dk(in.k.size()), dv(in.v.size());
  attention_backward(in.q.data(), in.k.data(), in.v.data(), fwd.out.data(), dout.data(), fwd.lse.data(),
                     in.key_start.data(), c.s, in.scale, dq.data(), dk.data(), dv.data());
  for (int64_t x = 0; x < doc2_end * kv_width; ++x) {
    ASSERT_EQ(dk[x], 0.0f) << x;
    ASSERT_EQ(dv[x], 0.0f) << x;
  }
  for (int64_t x = 0; x < doc2_end * q_width; ++x) ASSERT_EQ(dq[x], 0.0f) << x;
  double dv_doc3 = 0;
  for (int64_t x = doc2_end * kv_width; x < seq * kv_width; ++x) dv_doc3 += std::abs(dv[x]);
  EXPECT_GT(dv_doc3, 1.0);
}

TEST(Attention, NoQueryAttendsAcrossADocumentBoundary) {
  for (AttentionKernel kernel : kernels_to_test()) {
    SCOPED_TRACE(attention_kernel_name(kernel));
    const UseKernel use(kernel);
    // Within one tile: [0, 4), [4, 9), [9, 16).
    expect_documents_isolated({"docs", {1, 16, 4, 2, 8}, {{4, 5, 7}}, 0}, 4, 9);
    // Boundaries inside query and key tiles, documents spanning several: [0, 50), [50, 120), [120, 150).
    expect_documents_isolated({"docs_tiled", {1, 150, 4, 2, 8}, {{50, 70, 30}}, 0}, 50, 120);
  }
}

// Query i sees keys j with i − window < j ≤ i: moving key i − window changes nothing,
// moving key i − window + 1 changes query i. Row b of the batch perturbs key b only, so one
// forward pass covers every key.
void expect_window_boundary(int64_t window, int64_t seq) {
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

TEST(Attention, SlidingWindowBoundaryIsExclusiveOnTheLeft) {
  for (AttentionKernel kernel : kernels_to_test()) {
    SCOPED_TRACE(attention_kernel_name(kernel));
    const UseKernel use(kernel);
    expect_window_boundary(4, 12);
    expect_window_boundary(20, 100);  // windows crossing tile boundaries; most tiles fully masked
  }
}

struct Results {
  std::vector<float> out, lse, dq, dk, dv;
};

Results run_both(const Case& c, const Inputs& in) {
  Results r;
  const Output fwd = run_forward(in, c.s);
  r.out = fwd.out;
  r.lse = fwd.lse;
  const auto dout = kt::random_floats(fwd.out.size(), 61);
  r.dq.assign(in.q.size(), std::nanf(""));
  r.dk.assign(in.k.size(), std::nanf(""));
  r.dv.assign(in.v.size(), std::nanf(""));
  attention_backward(in.q.data(), in.k.data(), in.v.data(), fwd.out.data(), dout.data(), fwd.lse.data(),
                     in.key_start.data(), c.s, in.scale, r.dq.data(), r.dk.data(), r.dv.data());
  return r;
}

void expect_identical(const Results& a, const Results& b) {
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.lse, b.lse);
  EXPECT_EQ(a.dq, b.dq);
  EXPECT_EQ(a.dk, b.dk);
  EXPECT_EQ(a.dv, b.dv);
}

// Every output element is summed in a fixed order by one task, so neither the run nor the
// number of threads changes a bit of the result.
TEST(Attention, BitwiseDeterministicAcrossRunsAndThreadCounts) {
  const Case c{"det", {3, 150, 4, 2, 24}, {{40, 60, 50}, {150}, {100, 50}}, 0};
  const Inputs in = make_inputs(c, 71);
  const int threads = omp_get_max_threads();
  for (AttentionKernel kernel : kernels_to_test()) {
    SCOPED_TRACE(attention_kernel_name(kernel));
    const UseKernel use(kernel);
    omp_set_num_threads(1);
    const Results one = run_both(c, in);
    omp_set_num_threads(3);
    const Results three = run_both(c, in);
    const Results again = run_both(c, in);
    omp_set_num_threads(threads);
    expect_identical(one, three);
    expect_identical(three, again);
  }
}

// The per-thread workspace (transposed keys/values) is reused across calls: results must not
// depend on what an earlier, differently shaped call left in it.
TEST(Attention, ResultsDoNotDependOnEarlierCalls) {
  const Case small{"small", {1, 70, 2, 1, 16}, {{20, 50}}, 0};
  const Case big{"big", {2, 200, 4, 2, 32}, {}, 9};
  const Inputs small_in = make_inputs(small, 81), big_in = make_inputs(big, 82);
  for (AttentionKernel kernel : kernels_to_test()) {
    SCOPED_TRACE(attention_kernel_name(kernel));
    const UseKernel use(kernel);
    const Results first = run_both(small, small_in);
    run_both(big, big_in);
    expect_identical(first, run_both(small, small_in));
  }
}

TEST(Attention, RejectsInvalidShapesAndKeyStarts) {
  const Case c{"bad", {1, 4, 3, 2, 8}, {}, 0};  // 3 query heads cannot share 2 kv heads
  const AttentionShape& s = c.s;
  const std::vector<float> q(s.seq * s.heads * s.head_dim, 0.5f), kv(s.seq * s.kv_heads * s.head_dim, 0.5f);
  std::vector<float> out(q.size()), lse(s.seq * s.heads), dq(q.size()), dk(kv.size()), dv(kv.size());
  std::vector<int32_t> ks{0, 0, 0, 0};
  const auto expect_error = [](const auto& call, const std::string& needle) {
    try {
      call();
      ADD_FAILURE() << "no error; expected one mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error(
      [&] { attention_forward(q.data(), kv.data(), kv.data(), ks.data(), s, 1.0f, out.data(), nullptr); },
      "kv_heads");
  expect_error(
      [&] {
        attention_backward(q.data(), kv.data(), kv.data(), out.data(), out.data(), lse.data(), ks.data(), s,
                           1.0f, dq.data(), dk.data(), dv.data());
      },
      "kv_heads");
  AttentionShape ok = s;
  ok.heads = 4;
  ks[2] = 3;  // query 2 would see no key at all
  std::vector<float> q4(s.seq * ok.heads * s.head_dim, 0.5f), out4(q4.size());
  expect_error(
      [&] { attention_forward(q4.data(), kv.data(), kv.data(), ks.data(), ok, 1.0f, out4.data(), nullptr); },
      "key_start[2] = 3");
}

}  // namespace
}  // namespace bidora
