// LoRA → llama.cpp GGUF export, read back with bidora's GGUF reader (gguf-py is not installed
// here, so the C++ reader is the check): keys, architecture per family, tensor names, ne order,
// types, alpha (rsLoRA), values, and the q/k row permutation of the llama architecture against an
// independent per-row re-statement and against its purpose: llama.cpp's adjacent-pair rotary
// on the permuted rows gives the same attention scores as transformers' split-half rotary on the
// original rows.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <random>

#include "adapters/gguf_export.h"
#include "core/error.h"
#include "core/half.h"
#include "io/gguf.h"
#include "model/rope.h"
#include "model/tiny_model.h"
#include "model/weights.h"
#include "test_support.h"

namespace bidora {
namespace {

using ::testing::HasSubstr;

const std::vector<LinearKind> kAll = {LinearKind::Q,    LinearKind::K,  LinearKind::V,   LinearKind::O,
                                      LinearKind::Gate, LinearKind::Up, LinearKind::Down};

// A tiny random model of `family`: 2 layers, hidden 64, 4 query heads of 16, 2 KV heads, I = 96.
std::unique_ptr<ModelWeights> tiny(const std::string& family) {
  test::TinyModelSpec spec;
  spec.family = family;
  spec.seed = 3;
  const std::string dir = test::make_temp_dir("gguf-export-" + family);
  return ModelWeights::load(test::write_tiny_model(dir, spec), LoadOptions(WeightStorage::F32));
}

AdapterSet trained(const ModelWeights& m, LoraVariant method, int64_t r, double alpha, bool rslora,
                   std::vector<LinearKind> targets = kAll) {
  AdapterConfig c;
  c.method = method;
  c.r = r;
  c.alpha = alpha;
  c.use_rslora = rslora;
  c.targets = std::move(targets);
  AdapterSet set(c, m.layers(), 11);
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (LoraLayer* l : set.all())
    for (float& b : l->B) b = u(gen);  // PEFT starts B at 0; a trained B is not
  return set;
}

GgufFile export_and_read(const AdapterSet& set, const ModelConfig& cfg, GgufOutType t,
                         GgufExportSummary* summary = nullptr) {
  GgufExportOptions o;
  o.outtype = t;
  o.name = "run-final_model";
  o.base_model = "tiny-base";
  return GgufFile::from_bytes(lora_gguf(set, cfg, o, "adapter-dir", summary).serialize(), "export.gguf");
}

// Within each head of size hd, llama.cpp's row 2i + j holds transformers' row j·hd/2 + i: written
// row by row here, independently of the library's reshape/swap formulation.
std::vector<float> naive_permute(const std::vector<float>& m, int64_t rows, int64_t cols, int64_t heads) {
  const int64_t hd = rows / heads;
  std::vector<float> out(m.size());
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t h = row / hd, within = row % hd;
    const int64_t i = within / 2, j = within % 2;
    const int64_t src = h * hd + j * (hd / 2) + i;
    for (int64_t c = 0; c < cols; ++c) out[row * cols + c] = m[src * cols + c];
  }
  return out;
}

TEST(GgufExport, ArchitectureKeysAndTensorsPerFamily) {
  const std::map<std::string, std::string> arch = {
      {"llama", "llama"}, {"mistral", "llama"}, {"qwen2", "qwen2"}, {"qwen3", "qwen3"}};
  for (const auto& [family, want_arch] : arch) {
    SCOPED_TRACE(family);
    const auto m = tiny(family);
    const ModelConfig& cfg = m->config();
    const AdapterSet set = trained(*m, LoraVariant::LoRA, 4, 8.0, false);
    GgufExportSummary s;
    const GgufFile f = export_and_read(set, cfg, GgufOutType::F32, &s);

    std::vector<std::string> keys;
    for (const auto& kv : f.kvs()) keys.push_back(kv.first);
    EXPECT_EQ(keys, (std::vector<std::string>{"general.architecture", "general.type", "adapter.type",
                                              "general.name", "general.base_model.count",
                                              "general.base_model.0.name", "adapter.lora.alpha",
                                              "general.quantization_version"}));
    EXPECT_EQ(f.get<std::string>("general.architecture"), want_arch);
    EXPECT_EQ(f.get<std::string>("general.type"), "adapter");
    EXPECT_EQ(f.get<std::string>("adapter.type"), "lora");
    EXPECT_EQ(f.get<std::string>("general.name"), "run-final_model");
    EXPECT_EQ(f.get<uint32_t>("general.base_model.count"), 1u);
    EXPECT_EQ(f.get<std::string>("general.base_model.0.name"), "tiny-base");
    EXPECT_EQ(f.get<float>("adapter.lora.alpha"), 8.0f);  // f32, as llama.cpp reads it
    EXPECT_EQ(f.get<uint32_t>("general.quantization_version"), 2u);
    EXPECT_EQ(f.alignment(), 32u);
    EXPECT_EQ(s.architecture, want_arch);
    EXPECT_EQ(s.linears, 14);
    EXPECT_EQ(s.permuted_qk, want_arch == "llama");

    // Two tensors per adapted linear, in (layer, module) order, PEFT's shapes with ne reversed.
    const char* names[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    ASSERT_EQ(f.tensors().size(), 28u);
    size_t idx = 0;
    for (const LoraLayer* l : set.all()) {
      const std::string base =
          fmt::format("blk.{}.{}.weight", l->layer(), names[static_cast<int>(l->kind())]);
      const GgufTensor& a = f.tensors()[idx++];
      const GgufTensor& b = f.tensors()[idx++];
      EXPECT_EQ(a.name, base + ".lora_a");
      EXPECT_EQ(b.name, base + ".lora_b");
      EXPECT_EQ(a.type, GgmlType::F32);
      EXPECT_EQ(b.type, GgmlType::F32);
      EXPECT_EQ(a.ne, (std::vector<int64_t>{l->in_features(), 4})) << a.name;
      EXPECT_EQ(b.ne, (std::vector<int64_t>{4, l->out_features()})) << b.name;
      // What llama-adapter.cpp checks against the base tensor W (ne = {in, out}).
      EXPECT_EQ(a.ne[1], b.ne[0]);
      EXPECT_EQ(gguf_tensor_to_f32(a, "export"), l->A) << a.name;
      const auto bv = gguf_tensor_to_f32(b, "export");
      const bool qk = l->kind() == LinearKind::Q || l->kind() == LinearKind::K;
      if (want_arch == "llama" && qk) {
        const int64_t heads = l->kind() == LinearKind::Q ? cfg.num_heads : cfg.num_kv_heads;
        EXPECT_EQ(bv, naive_permute(l->B, l->out_features(), 4, heads)) << b.name;
        EXPECT_NE(bv, l->B) << b.name;  // the permutation moved something
      } else {
        EXPECT_EQ(bv, l->B) << b.name;  // Qwen: llama.cpp rotates like transformers, no permutation
      }
    }
  }
}

TEST(GgufExport, RsLoraAlphaKeepsTheScale) {
  const auto m = tiny("qwen2");
  for (int64_t r : {4, 16}) {
    const AdapterSet set = trained(*m, LoraVariant::LoRA, r, 8.0, true, {LinearKind::Q, LinearKind::V});
    const GgufFile f = export_and_read(set, m->config(), GgufOutType::F32);
    const float alpha = f.get<float>("adapter.lora.alpha");
    EXPECT_FLOAT_EQ(alpha, static_cast<float>(8.0 * std::sqrt(static_cast<double>(r))));
    // llama.cpp: scale = alpha / r with r = lora_b's ne[0].
    const int64_t rank = f.tensor("blk.0.attn_q.weight.lora_b").ne[0];
    EXPECT_EQ(rank, r);
    EXPECT_NEAR(alpha / static_cast<double>(rank), set.config().scaling(), 1e-6);
    EXPECT_EQ(f.tensors().size(), 8u);  // q and v in 2 layers
  }
  // Plain LoRA: alpha as is (alpha / r is already PEFT's scale).
  const AdapterSet plain = trained(*m, LoraVariant::LoRA, 8, 16.0, false, {LinearKind::Q});
  EXPECT_EQ(export_and_read(plain, m->config(), GgufOutType::F32).get<float>("adapter.lora.alpha"), 16.0f);
}

TEST(GgufExport, OutTypes) {
  const auto m = tiny("llama");
  const AdapterSet set = trained(*m, LoraVariant::LoRA, 4, 8.0, false);
  const LoraLayer* v = set.find(1, LinearKind::V);
  ASSERT_NE(v, nullptr);

  const GgufFile h = export_and_read(set, m->config(), GgufOutType::F16);
  for (const GgufTensor& t : h.tensors()) EXPECT_EQ(t.type, GgmlType::F16) << t.name;
  const auto hb = gguf_tensor_to_f32(h.tensor("blk.1.attn_v.weight.lora_b"), "f16");
  for (size_t i = 0; i < hb.size(); ++i) EXPECT_EQ(hb[i], f16_to_f32(f32_to_f16_bits(v->B[i]))) << i;

  const GgufFile b = export_and_read(set, m->config(), GgufOutType::BF16);
  for (const GgufTensor& t : b.tensors()) EXPECT_EQ(t.type, GgmlType::BF16) << t.name;
  const auto ba = gguf_tensor_to_f32(b.tensor("blk.1.attn_v.weight.lora_a"), "bf16");
  for (size_t i = 0; i < ba.size(); ++i) EXPECT_EQ(ba[i], round_to_bf16(v->A[i])) << i;

  // Q8_0 packs rows of 32: lora_a rows (in = 64 or 96) quantise, lora_b rows (r = 4) fall back to
  // F16 as convert_lora_to_gguf.py does.
  GgufExportSummary s;
  const GgufFile q = export_and_read(set, m->config(), GgufOutType::Q8_0, &s);
  EXPECT_EQ(s.f16_fallbacks, 14);
  for (const GgufTensor& t : q.tensors())
    EXPECT_EQ(t.type, t.name.ends_with(".lora_a") ? GgmlType::Q8_0 : GgmlType::F16) << t.name;
  const auto qa = gguf_tensor_to_f32(q.tensor("blk.1.attn_v.weight.lora_a"), "q8");
  float amax = 0;
  for (float a : v->A) amax = std::max(amax, std::abs(a));
  for (size_t i = 0; i < qa.size(); ++i) EXPECT_NEAR(qa[i], v->A[i], 0.51f * amax / 127 + 1e-3f * amax) << i;

  EXPECT_EQ(gguf_outtype_from_string("q8_0"), GgufOutType::Q8_0);
  EXPECT_EQ(gguf_outtype_from_string("f64"), std::nullopt);
  EXPECT_STREQ(gguf_outtype_name(GgufOutType::BF16), "bf16");
}

TEST(GgufExport, DoraIsRefusedWithTheMergeRoute) {
  const auto m = tiny("qwen2");
  const AdapterSet set = trained(*m, LoraVariant::DoRA, 4, 8.0, false, {LinearKind::Q});
  try {
    export_and_read(set, m->config(), GgufOutType::F32);
    ADD_FAILURE() << "DoRA exported";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("adapter-dir: a DoRA adapter (use_dora: true) cannot be exported"));
    EXPECT_THAT(e.what(), HasSubstr("bidora merge --model M --adapter adapter-dir --output MERGED"));
    EXPECT_THAT(e.what(), HasSubstr("convert_hf_to_gguf.py"));
  }
}

TEST(GgufExport, PermutationRows) {
  // 2 heads of 4 rows, 1 column: per head [0 1 2 3] -> [0 2 1 3].
  const std::vector<float> w = {0, 1, 2, 3, 4, 5, 6, 7};
  EXPECT_EQ(llama_cpp_permute_rows(w, 8, 1, 2), (std::vector<float>{0, 2, 1, 3, 4, 6, 5, 7}));
  EXPECT_EQ(llama_cpp_permute_rows(w, 8, 1, 1), (std::vector<float>{0, 4, 1, 5, 2, 6, 3, 7}));
  EXPECT_EQ(llama_cpp_permute_rows(w, 4, 2, 1), (std::vector<float>{0, 1, 4, 5, 2, 3, 6, 7}));
  EXPECT_THROW(llama_cpp_permute_rows(w, 8, 1, 3), Error);  // 8 rows are not 3 heads of an even size
  EXPECT_EQ(llama_cpp_tensor_name(12, LinearKind::O), "blk.12.attn_output.weight");
  EXPECT_STREQ(llama_cpp_architecture(ModelFamily::Mistral), "llama");
}

// llama.cpp's LLAMA_ROPE_TYPE_NORM: adjacent pairs (2i, 2i + 1) rotate by the angle of frequency i.
void rope_adjacent_pairs(float* x, const int32_t* pos, int64_t n, int64_t heads, int64_t hd,
                         const RopeTable& t) {
  for (int64_t tok = 0; tok < n; ++tok)
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + (tok * heads + h) * hd;
      const float* c = t.cos(pos[tok]);
      const float* s = t.sin(pos[tok]);
      for (int64_t i = 0; i < hd / 2; ++i) {
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * c[i] - b * s[i];
        v[2 * i + 1] = a * s[i] + b * c[i];
      }
    }
}

// x [n, in] -> y [n, out] = (x Aᵀ) Bᵀ
std::vector<float> lora_out(const std::vector<float>& x, int64_t n, const std::vector<float>& A,
                            const std::vector<float>& B, int64_t in, int64_t r, int64_t out) {
  std::vector<float> y(static_cast<size_t>(n * out), 0.0f);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t o = 0; o < out; ++o) {
      double acc = 0;
      for (int64_t k = 0; k < r; ++k) {
        double u = 0;
        for (int64_t j = 0; j < in; ++j) u += x[t * in + j] * A[k * in + j];
        acc += u * B[o * r + k];
      }
      y[t * out + o] = static_cast<float>(acc);
    }
  return y;
}

// Attention logits q_h(t) · k_{h / group}(s) for every head and token pair.
std::vector<double> scores(const std::vector<float>& q, const std::vector<float>& k, int64_t n, int64_t heads,
                           int64_t kv_heads, int64_t hd) {
  std::vector<double> out;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t s = 0; s < n; ++s) {
        double acc = 0;
        const int64_t g = h / (heads / kv_heads);
        for (int64_t d = 0; d < hd; ++d) acc += q[(t * heads + h) * hd + d] * k[(s * kv_heads + g) * hd + d];
        out.push_back(acc);
      }
  return out;
}

TEST(GgufExport, PermutedRowsGiveTransformersAttentionUnderLlamaCppRotary) {
  const auto m = tiny("llama");
  const ModelConfig& cfg = m->config();
  const AdapterSet set = trained(*m, LoraVariant::LoRA, 4, 8.0, false, {LinearKind::Q, LinearKind::K});
  const GgufFile f = export_and_read(set, cfg, GgufOutType::F32);
  const int64_t n = 5, H = cfg.hidden_size, hd = cfg.head_dim, r = 4;
  const std::vector<float> x = [&] {
    std::mt19937 gen(9);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> v(static_cast<size_t>(n * H));
    for (float& e : v) e = u(gen);
    return v;
  }();
  const std::vector<int32_t> pos = {0, 1, 2, 7, 30};
  const RopeTable table(cfg, 64);
  for (int64_t layer = 0; layer < cfg.num_layers; ++layer) {
    const LoraLayer& lq = *set.find(layer, LinearKind::Q);
    const LoraLayer& lk = *set.find(layer, LinearKind::K);
    // transformers: split-half rotary on the original rows.
    auto q = lora_out(x, n, lq.A, lq.B, H, r, cfg.q_dim());
    auto k = lora_out(x, n, lk.A, lk.B, H, r, cfg.kv_dim());
    rope_forward(q.data(), pos.data(), n, cfg.num_heads, hd, table);
    rope_forward(k.data(), pos.data(), n, cfg.num_kv_heads, hd, table);
    const auto want = scores(q, k, n, cfg.num_heads, cfg.num_kv_heads, hd);
    // llama.cpp: adjacent-pair rotary on the exported A and B.
    auto tensor = [&](const std::string& name) {
      return gguf_tensor_to_f32(f.tensor(fmt::format("blk.{}.{}", layer, name)), "gguf");
    };
    auto gq =
        lora_out(x, n, tensor("attn_q.weight.lora_a"), tensor("attn_q.weight.lora_b"), H, r, cfg.q_dim());
    auto gk =
        lora_out(x, n, tensor("attn_k.weight.lora_a"), tensor("attn_k.weight.lora_b"), H, r, cfg.kv_dim());
    rope_adjacent_pairs(gq.data(), pos.data(), n, cfg.num_heads, hd, table);
    rope_adjacent_pairs(gk.data(), pos.data(), n, cfg.num_kv_heads, hd, table);
    const auto got = scores(gq, gk, n, cfg.num_heads, cfg.num_kv_heads, hd);
    ASSERT_EQ(got.size(), want.size());
    double worst = 0, scale = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      worst = std::max(worst, std::abs(got[i] - want[i]));
      scale = std::max(scale, std::abs(want[i]));
    }
    EXPECT_LT(worst, 1e-5 * scale) << "layer " << layer;

    // Control: without the permutation the same rotary gives other scores (the test can fail).
    auto uq = lora_out(x, n, lq.A, lq.B, H, r, cfg.q_dim());
    auto uk = lora_out(x, n, lk.A, lk.B, H, r, cfg.kv_dim());
    rope_adjacent_pairs(uq.data(), pos.data(), n, cfg.num_heads, hd, table);
    rope_adjacent_pairs(uk.data(), pos.data(), n, cfg.num_kv_heads, hd, table);
    const auto wrong = scores(uq, uk, n, cfg.num_heads, cfg.num_kv_heads, hd);
    double diff = 0;
    for (size_t i = 0; i < wrong.size(); ++i) diff = std::max(diff, std::abs(wrong[i] - want[i]));
    EXPECT_GT(diff, 1e-2 * scale);
  }
}

}  // namespace
}  // namespace bidora
