// The generation forward with a KV cache (model/inference.h, model/kv_cache.h): prefill + cached
// decode steps give the logits of the full-sequence forward (Decoder::logits) on tiny random
// models of every family (llama with and without biases, qwen2's q/k/v biases, qwen3's q/k norms
// with head_dim != hidden/heads, mistral's sliding window shorter than the sequence); chunked
// continuations, cache growth and truncation; bf16 / NF4 storage (the GEMV paths); and the cached
// attention kernel against attention_forward directly.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "model/attention.h"
#include "model/attention_kernels.h"
#include "model/inference.h"
#include "model/kv_cache.h"
#include "model/kv_cache_check.h"
#include "model/test_kernels_support.h"
#include "model/tiny_model.h"
#include "test_support.h"

namespace bidora {
namespace {

struct Case {
  const char* name;
  test::TinyModelSpec spec;
};

test::TinyModelSpec spec(const char* family) {
  test::TinyModelSpec s;
  s.family = family;
  return s;
}

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

std::vector<Case> cases() {
  std::vector<Case> v;
  v.push_back({"llama", spec("llama")});
  test::TinyModelSpec lb = spec("llama");
  lb.llama_biases = true;
  lb.tied = true;
  lb.seed = 2;
  v.push_back({"llama_biases_tied", lb});
  test::TinyModelSpec q2 = spec("qwen2");
  q2.tied = true;
  q2.seed = 3;
  v.push_back({"qwen2", q2});
  test::TinyModelSpec q3 = spec("qwen3");
  q3.head_dim = 32;  // q_dim 128 != hidden 64
  q3.seed = 4;
  v.push_back({"qwen3", q3});
  test::TinyModelSpec m = spec("mistral");
  m.sliding_window = 5;
  m.kv_heads = 1;
  m.seed = 5;
  v.push_back({"mistral_window", m});
  return v;
}

std::string model_dir(const Case& c) {
  const std::string dir = test::make_temp_dir(std::string("kv-") + c.name);
  return test::write_tiny_model(dir, c.spec);
}

class KvCacheModels : public ::testing::TestWithParam<Case> {};

TEST_P(KvCacheModels, PrefillThenDecodeStepsMatchFullForward) {
  auto w = ModelWeights::load(model_dir(GetParam()), LoadOptions(WeightStorage::F32));
  const auto ids = test::random_ids(14, w->config().vocab_size, 11);
  const double worst = test::expect_cached_logits_match(*w, nullptr, ids, 6, 1e-5, GetParam().name);
  RecordProperty("max_rel_error", std::to_string(worst));
}

TEST_P(KvCacheModels, ChunkedContinuationsAndCacheGrowth) {
  auto w = ModelWeights::load(model_dir(GetParam()), LoadOptions(WeightStorage::F32));
  const auto ids = test::random_ids(17, w->config().vocab_size, 12);
  // Capacity 3: the cache grows (and copies) several times; chunks of 5 tokens (> kGemvMaxRows,
  // the GEMM path) and 3 attend to the cache with several queries at once.
  test::expect_cached_logits_match(*w, nullptr, ids, 4, 1e-5, GetParam().name, {5, 1, 3, 1}, 3);
}

TEST_P(KvCacheModels, TruncateThenRerunGivesTheSameLogits) {
  auto w = ModelWeights::load(model_dir(GetParam()), LoadOptions(WeightStorage::F32));
  const int64_t V = w->config().vocab_size;
  const auto ids = test::random_ids(10, V, 13);
  const std::vector<float> full = test::full_logits(*w, nullptr, ids);
  InferenceDecoder inf(*w, 10);
  inf.append(ids);
  // A different continuation overwrites positions 6.., then the original one again.
  inf.truncate(6);
  const std::vector<int32_t> other = {static_cast<int32_t>(V - 1), 0};
  inf.append(other);
  inf.truncate(6);
  EXPECT_EQ(inf.length(), 6);
  const float* got = nullptr;
  for (size_t i = 6; i < ids.size(); ++i) got = inf.append(std::span<const int32_t>(&ids[i], 1));
  const std::vector<float> g(got, got + V);
  const std::vector<double> want(full.end() - V, full.end());
  kt::expect_close_scaled(g, want, 1e-5, "after truncate");
}

TEST(InferenceDecoder, RejectsIdsOutsideTheVocabularyAndEmptyPasses) {
  const std::string dir = test::write_tiny_model(test::make_temp_dir("kv-errors"), spec("llama"));
  auto w = ModelWeights::load(dir, LoadOptions(WeightStorage::F32));
  InferenceDecoder inf(*w, 4);
  const std::vector<int32_t> bad = {1, static_cast<int32_t>(w->config().vocab_size)}, negative = {-1};
  EXPECT_THROW(inf.append(bad), Error);
  EXPECT_THROW(inf.append(negative), Error);
  EXPECT_THROW(inf.append({}), Error);
  EXPECT_EQ(inf.length(), 0);  // nothing was cached by the refused passes
  EXPECT_THROW(inf.truncate(1), Error);
}

INSTANTIATE_TEST_SUITE_P(Families, KvCacheModels, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return std::string(info.param.name); });

// Compact storage: the single-token passes take the GEMV paths (bf16 read in place, NF4 through
// rows_f32), the full forward expands tiles for a GEMM; both multiply the same values.
TEST(KvCacheStorage, Bf16AndNf4MatchTheFullForwardOnTheSameWeights) {
  test::TinyModelSpec s = spec("qwen2");
  s.hidden = 128;  // NF4 blocks of 64 values
  s.intermediate = 192;
  const std::string dir = test::write_tiny_model(test::make_temp_dir("kv-storage"), s);
  for (WeightStorage st : {WeightStorage::BF16, WeightStorage::NF4, WeightStorage::INT8}) {
    auto w = ModelWeights::load(dir, LoadOptions(st));
    const auto ids = test::random_ids(9, w->config().vocab_size, 14);
    test::expect_cached_logits_match(*w, nullptr, ids, 4, 2e-5, storage_name(st));
  }
}

TEST(KvCache, ReserveKeepsTheCachedPositions) {
  ModelConfig c;
  c.num_layers = 2;
  c.num_kv_heads = 3;
  c.head_dim = 5;
  KvCache cache(c, 4);
  const int64_t stride = c.num_kv_heads * c.head_dim;
  const std::vector<float> k = kt::random_floats(4 * stride, 1), v = kt::random_floats(4 * stride, 2);
  for (int64_t l = 0; l < 2; ++l) cache.store(l, 0, 4, k.data(), v.data());
  cache.set_length(4);
  cache.reserve(9);
  EXPECT_EQ(cache.capacity(), 9);
  EXPECT_EQ(cache.length(), 4);
  for (int64_t l = 0; l < 2; ++l)
    for (int64_t g = 0; g < 3; ++g)
      for (int64_t t = 0; t < 4; ++t)
        for (int64_t c2 = 0; c2 < 5; ++c2) {
          EXPECT_EQ(cache.keys_t(l, g)[c2 * 9 + t], k[t * stride + g * 5 + c2]);
          EXPECT_EQ(cache.values(l, g)[t * 5 + c2], v[t * stride + g * 5 + c2]);
        }
  EXPECT_THROW(cache.truncate(5), Error);
  EXPECT_THROW(cache.store(0, 7, 3, k.data(), v.data()), Error);
}

// attention_cached for the last queries of a sequence equals attention_forward's rows for them,
// with and without a window, on both kernel sets; 70 keys cross the 64-key tiles and head_dim 20
// is not a multiple of 16.
TEST(AttentionCached, MatchesAttentionForwardOnTheLastQueries) {
  const int64_t T = 70, heads = 6, kvh = 2, hd = 20;
  ModelConfig c;
  c.num_layers = 1;
  c.num_kv_heads = kvh;
  c.head_dim = hd;
  const auto q = kt::random_floats(T * heads * hd, 3, -2.0f, 2.0f);
  const auto k = kt::random_floats(T * kvh * hd, 4, -2.0f, 2.0f);
  const auto v = kt::random_floats(T * kvh * hd, 5);
  KvCache cache(c, T);
  cache.store(0, 0, T, k.data(), v.data());
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<AttentionKernel> kernels = {AttentionKernel::Scalar};
  if (attention_avx512_available()) kernels.push_back(AttentionKernel::Avx512);
  for (AttentionKernel kern : kernels) {
    set_attention_kernel(kern);
    for (int64_t window : {0, 13}) {
      std::vector<int32_t> pos(T);
      for (int64_t t = 0; t < T; ++t) pos[t] = static_cast<int32_t>(t);
      const auto ks = attention_key_start(pos.data(), 1, T, window);
      std::vector<float> ref(T * heads * hd);
      attention_forward(q.data(), k.data(), v.data(), ks.data(), {1, T, heads, kvh, hd}, scale, ref.data(),
                        nullptr);
      for (int64_t p0 : {0, 50, 69}) {
        const int64_t n = T - p0;
        std::vector<float> got(n * heads * hd);
        attention_cached(q.data() + p0 * heads * hd, n, p0, cache, 0, heads, window, scale, got.data());
        const std::vector<double> want(ref.begin() + p0 * heads * hd, ref.end());
        kt::expect_close_scaled(got, want, 1e-6,
                                fmt::format("{} window {} p0 {}", attention_kernel_name(kern), window, p0));
      }
    }
  }
  set_attention_kernel(AttentionKernel::Auto);
}

}  // namespace
}  // namespace bidora
