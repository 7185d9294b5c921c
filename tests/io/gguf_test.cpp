// GGUF: the writer's byte layout against hand-assembled bytes, writer → reader round trips of every
// value type and tensor type, float16 / Q8_0 rounding, and hand-built malformed files that the
// reader must refuse with a message naming the file, the key or tensor and what was expected
// (plus every truncation and many byte flips of a valid file: an Error, never a crash).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>

#include "core/error.h"
#include "core/half.h"
#include "io/gguf.h"
#include "test_support.h"

namespace bidora {
namespace {

using ::testing::HasSubstr;

// Little-endian byte assembly for hand-built files.
struct Raw {
  std::string b;
  Raw& u8(uint8_t v) {
    b.push_back(static_cast<char>(v));
    return *this;
  }
  Raw& u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) u8(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  Raw& u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) u8(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  Raw& str(const std::string& s) {
    u64(s.size());
    b += s;
    return *this;
  }
  Raw& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    b += "GGUF";
    return u32(version).u64(n_tensors).u64(n_kv);
  }
  Raw& kv_u32(const std::string& key, uint32_t v) { return str(key).u32(4).u32(v); }
  Raw& tensor_info(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(ne.size()));
    for (uint64_t d : ne) u64(d);
    return u32(type).u64(offset);
  }
  Raw& pad(size_t alignment = 32) {
    while (b.size() % alignment) u8(0);
    return *this;
  }
  Raw& zeros(size_t n) {
    b.append(n, '\0');
    return *this;
  }
};

// Parses `bytes` and expects an Error whose message holds every fragment.
void expect_refused(const std::string& bytes, const std::vector<std::string>& fragments) {
  try {
    GgufFile::from_bytes(bytes, "bad.gguf");
    ADD_FAILURE() << "accepted a malformed file; expected: " << fragments.front();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_THAT(msg, HasSubstr("bad.gguf: ")) << msg;
    for (const auto& f : fragments) EXPECT_THAT(msg, HasSubstr(f));
  }
}

template <typename T>
std::vector<uint8_t> as_bytes(const std::vector<T>& v) {
  std::vector<uint8_t> out(v.size() * sizeof(T));
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

TEST(Gguf, WriterBytesMatchTheSpecLayout) {
  GgufWriter w;
  w.set("general.architecture", std::string("llama"));
  w.set("adapter.lora.alpha", 16.0f);
  w.add_tensor_f32("a", {2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6}, GgmlType::F32);
  w.add_tensor_f32("b", {2}, std::vector<float>{-1, 0.5f}, GgmlType::F16);

  Raw r;
  r.header(2, 2).str("general.architecture").u32(8).str("llama");
  r.str("adapter.lora.alpha").u32(6).u32(0x41800000);  // 16.0f
  r.tensor_info("a", {3, 2}, 0, 0);                    // ne reversed: innermost first
  r.tensor_info("b", {2}, 1, 32);                      // 24 bytes of "a", padded to 32
  r.pad();
  for (float f : {1.f, 2.f, 3.f, 4.f, 5.f, 6.f}) r.u32(std::bit_cast<uint32_t>(f));
  r.pad();
  r.u8(0x00).u8(0xbc).u8(0x00).u8(0x38);  // f16 -1.0 = 0xbc00, 0.5 = 0x3800
  r.pad();
  EXPECT_EQ(w.serialize(), r.b);
}

TEST(Gguf, RoundTripOfEveryValueType) {
  GgufWriter w;
  w.set("u8", uint8_t{255});
  w.set("i8", int8_t{-128});
  w.set("u16", uint16_t{65535});
  w.set("i16", int16_t{-32768});
  w.set("u32", uint32_t{4000000000u});
  w.set("i32", int32_t{-2000000000});
  w.set("f32", 3.25f);
  w.set("bool.t", true);
  w.set("bool.f", false);
  w.set("str", std::string("héllo\0world", 12));
  w.set("str.empty", std::string());
  w.set("u64", std::numeric_limits<uint64_t>::max());
  w.set("i64", std::numeric_limits<int64_t>::min());
  w.set("f64", -1e300);
  w.set("arr.u8", std::vector<uint8_t>{0, 1, 255});
  w.set("arr.i8", std::vector<int8_t>{-1, 7});
  w.set("arr.u16", std::vector<uint16_t>{1, 65535});
  w.set("arr.i16", std::vector<int16_t>{-5});
  w.set("arr.u32", std::vector<uint32_t>{151643, 151645});
  w.set("arr.i32", std::vector<int32_t>{-1, 0, 1});
  w.set("arr.f32", std::vector<float>{0.5f, -0.0f, 1e-40f});
  w.set("arr.bool", std::vector<bool>{true, false, true});
  w.set("arr.str", std::vector<std::string>{"a", "", "ccc"});
  w.set("arr.u64", std::vector<uint64_t>{1ull << 40});
  w.set("arr.i64", std::vector<int64_t>{-(1ll << 40)});
  w.set("arr.f64", std::vector<double>{0.1, 0.2});
  w.set("arr.empty", std::vector<float>{});
  w.set("u32", uint32_t{7});  // replacing keeps the first position

  const std::string dir = test::make_temp_dir("gguf-kv");
  w.write(dir + "/kv.gguf");
  const GgufFile f(dir + "/kv.gguf");
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_TRUE(f.tensors().empty());
  ASSERT_EQ(f.kvs().size(), 27u);
  EXPECT_EQ(f.kvs()[4].first, "u32");
  EXPECT_EQ(f.get<uint32_t>("u32"), 7u);
  EXPECT_EQ(f.get<uint8_t>("u8"), 255);
  EXPECT_EQ(f.get<int8_t>("i8"), -128);
  EXPECT_EQ(f.get<uint16_t>("u16"), 65535);
  EXPECT_EQ(f.get<int16_t>("i16"), -32768);
  EXPECT_EQ(f.get<int32_t>("i32"), -2000000000);
  EXPECT_EQ(f.get<float>("f32"), 3.25f);
  EXPECT_TRUE(f.get<bool>("bool.t"));
  EXPECT_FALSE(f.get<bool>("bool.f"));
  EXPECT_EQ(f.get<std::string>("str"), std::string("héllo\0world", 12));
  EXPECT_EQ(f.get<std::string>("str.empty"), "");
  EXPECT_EQ(f.get<uint64_t>("u64"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(f.get<int64_t>("i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(f.get<double>("f64"), -1e300);
  EXPECT_EQ(f.get<std::vector<uint8_t>>("arr.u8"), (std::vector<uint8_t>{0, 1, 255}));
  EXPECT_EQ(f.get<std::vector<int8_t>>("arr.i8"), (std::vector<int8_t>{-1, 7}));
  EXPECT_EQ(f.get<std::vector<uint16_t>>("arr.u16"), (std::vector<uint16_t>{1, 65535}));
  EXPECT_EQ(f.get<std::vector<int16_t>>("arr.i16"), (std::vector<int16_t>{-5}));
  EXPECT_EQ(f.get<std::vector<uint32_t>>("arr.u32"), (std::vector<uint32_t>{151643, 151645}));
  EXPECT_EQ(f.get<std::vector<int32_t>>("arr.i32"), (std::vector<int32_t>{-1, 0, 1}));
  const auto& fl = f.get<std::vector<float>>("arr.f32");
  ASSERT_EQ(fl.size(), 3u);
  EXPECT_EQ(fl[0], 0.5f);
  EXPECT_TRUE(std::signbit(fl[1]));
  EXPECT_EQ(fl[2], 1e-40f);  // a float32 subnormal survives
  EXPECT_EQ(f.get<std::vector<bool>>("arr.bool"), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(f.get<std::vector<std::string>>("arr.str"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(f.get<std::vector<uint64_t>>("arr.u64"), (std::vector<uint64_t>{1ull << 40}));
  EXPECT_EQ(f.get<std::vector<int64_t>>("arr.i64"), (std::vector<int64_t>{-(1ll << 40)}));
  EXPECT_EQ(f.get<std::vector<double>>("arr.f64"), (std::vector<double>{0.1, 0.2}));
  EXPECT_TRUE(f.get<std::vector<float>>("arr.empty").empty());
  EXPECT_EQ(gguf_type_str(*f.find("arr.str")), "arr[str]");
  EXPECT_EQ(gguf_type_str(*f.find("f64")), "f64");
  EXPECT_EQ(f.find("absent"), nullptr);

  // Typed access names the file, the key and both types.
  try {
    (void)f.get<uint32_t>("str");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(dir + "/kv.gguf: key 'str' has type str, expected u32"));
  }
  try {
    (void)f.get<std::vector<uint32_t>>("arr.i32");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("key 'arr.i32' has type arr[i32], expected arr[u32]"));
  }
  EXPECT_THROW((void)f.get<float>("absent"), Error);
}

TEST(Gguf, RoundTripOfTensorTypesAndShapes) {
  const std::vector<float> v = {0.0f, 1.0f, -2.5f, 3.140625f, 1e-3f, -65504.0f, 0.33333334f, 7.0f};
  std::vector<float> q(64);
  for (size_t i = 0; i < q.size(); ++i)
    q[i] = std::sin(0.37f * static_cast<float>(i)) * (i < 32 ? 1.0f : 0.01f);

  for (uint32_t alignment : {32u, 64u, 8u}) {
    SCOPED_TRACE(alignment);
    GgufWriter w(alignment);
    w.add_tensor_f32("f32", {2, 4}, v, GgmlType::F32);
    w.add_tensor_f32("f16", {8}, v, GgmlType::F16);
    w.add_tensor_f32("bf16", {4, 2}, v, GgmlType::BF16);
    w.add_tensor_f32("q8_0", {2, 32}, q, GgmlType::Q8_0);
    w.add_tensor_f32("four.dims", {1, 2, 2, 2}, v, GgmlType::F32);
    w.add_tensor("raw.i32", GgmlType::I32, {3}, as_bytes(std::vector<int32_t>{-1, 2, -3}));
    const GgufFile f = GgufFile::from_bytes(w.serialize(), "mem");

    EXPECT_EQ(f.alignment(), alignment);
    if (alignment == 32)
      EXPECT_EQ(f.find("general.alignment"), nullptr);  // the default is not written
    else
      EXPECT_EQ(f.get<uint32_t>("general.alignment"), alignment);
    EXPECT_EQ(f.data_offset() % alignment, 0u);
    ASSERT_EQ(f.tensors().size(), 6u);
    for (const GgufTensor& t : f.tensors()) EXPECT_EQ(t.offset % alignment, 0u) << t.name;

    const GgufTensor& a = f.tensor("f32");
    EXPECT_EQ(a.ne, (std::vector<int64_t>{4, 2}));
    EXPECT_EQ(a.shape(), (std::vector<int64_t>{2, 4}));
    EXPECT_EQ(a.ne_str(), "{4, 2}");
    EXPECT_EQ(a.nbytes, 32u);
    EXPECT_EQ(gguf_tensor_to_f32(a, "mem"), v);

    const GgufTensor& h = f.tensor("f16");
    EXPECT_EQ(h.type, GgmlType::F16);
    EXPECT_EQ(h.nbytes, 16u);
    const auto hv = gguf_tensor_to_f32(h, "mem");
    for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(hv[i], f16_to_f32(f32_to_f16_bits(v[i]))) << i;
    EXPECT_EQ(hv[3], 3.140625f);  // exactly representable values stay exact
    EXPECT_EQ(hv[5], -65504.0f);

    const GgufTensor& b = f.tensor("bf16");
    EXPECT_EQ(b.ne, (std::vector<int64_t>{2, 4}));
    const auto bv = gguf_tensor_to_f32(b, "mem");
    for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(bv[i], round_to_bf16(v[i])) << i;

    const GgufTensor& q8 = f.tensor("q8_0");
    EXPECT_EQ(q8.type, GgmlType::Q8_0);
    EXPECT_EQ(q8.ne, (std::vector<int64_t>{32, 2}));
    EXPECT_EQ(q8.nbytes, 2u * 34u);
    const auto qv = gguf_tensor_to_f32(q8, "mem");
    for (size_t blk = 0; blk < 2; ++blk) {
      float amax = 0;
      for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::abs(q[blk * 32 + j]));
      for (size_t j = 0; j < 32; ++j)  // half a step of d = amax / 127 (plus d's own f16 rounding)
        EXPECT_NEAR(qv[blk * 32 + j], q[blk * 32 + j], 0.51 * amax / 127 + 1e-3 * amax) << blk << " " << j;
    }

    EXPECT_EQ(f.tensor("four.dims").ne, (std::vector<int64_t>{2, 2, 2, 1}));
    const GgufTensor& raw = f.tensor("raw.i32");
    EXPECT_EQ(raw.type, GgmlType::I32);
    int32_t third = 0;
    std::memcpy(&third, raw.data + 8, 4);
    EXPECT_EQ(third, -3);
    try {
      (void)gguf_tensor_to_f32(raw, "mem");
      ADD_FAILURE();
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("mem: tensor 'raw.i32' has type I32"));
    }
    EXPECT_EQ(f.find_tensor("nope"), nullptr);
    EXPECT_THROW((void)f.tensor("nope"), Error);
  }
}

TEST(Gguf, HalfRoundingMatchesIeee) {
  // Every half value converts back to itself (NaNs aside).
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16_bits(f)))) << h;
      continue;
    }
    ASSERT_EQ(f32_to_f16_bits(f), h) << h;
  }
  // Ties go to the even neighbour; beyond the largest half (65504) rounding reaches infinity at 65520.
  EXPECT_EQ(f32_to_f16_bits(1.0f + 0x1p-11f), 0x3c00);             // halfway 1 → 1+2^-10: even is 1
  EXPECT_EQ(f32_to_f16_bits(1.0f + 3 * 0x1p-11f), 0x3c02);         // halfway (odd) → up
  EXPECT_EQ(f32_to_f16_bits(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);  // above halfway → up
  EXPECT_EQ(f32_to_f16_bits(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16_bits(65520.0f), 0x7c00);
  EXPECT_EQ(f32_to_f16_bits(-1e10f), 0xfc00);
  EXPECT_EQ(f32_to_f16_bits(0x1p-25f), 0x0000);         // half of the smallest subnormal: ties to 0
  EXPECT_EQ(f32_to_f16_bits(0x1p-25f * 3.0f), 0x0002);  // 1.5 steps: ties to 2
  EXPECT_EQ(f32_to_f16_bits(-0.0f), 0x8000);
}

TEST(Gguf, Q8_0RoundsLikeGgml) {
  // amax 127 gives d = 1: q is x rounded half away from zero.
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;
  x[1] = -63.5f;
  x[2] = 0.5f;
  x[3] = -0.49f;
  x[4] = 2.5f;
  const auto bytes = gguf_encode_f32(x, GgmlType::Q8_0, 32);
  ASSERT_EQ(bytes.size(), 34u);
  uint16_t d = 0;
  std::memcpy(&d, bytes.data(), 2);
  EXPECT_EQ(d, 0x3c00);  // 1.0
  EXPECT_EQ(static_cast<int8_t>(bytes[2]), 127);
  EXPECT_EQ(static_cast<int8_t>(bytes[3]), -64);
  EXPECT_EQ(static_cast<int8_t>(bytes[4]), 1);
  EXPECT_EQ(static_cast<int8_t>(bytes[5]), 0);
  EXPECT_EQ(static_cast<int8_t>(bytes[6]), 3);
  // An all-zero block has d = 0 and q = 0.
  const auto zero = gguf_encode_f32(std::vector<float>(32, 0.0f), GgmlType::Q8_0, 32);
  EXPECT_EQ(zero, std::vector<uint8_t>(34, 0));
  EXPECT_THROW(gguf_encode_f32(std::vector<float>(48, 1.0f), GgmlType::Q8_0, 48), Error);
}

TEST(Gguf, WriterRefusesBadInput) {
  GgufWriter w;
  EXPECT_THROW(GgufWriter(48), Error);
  EXPECT_THROW(w.set("general.alignment", uint32_t{64}), Error);
  EXPECT_THROW(w.set("", uint32_t{1}), Error);
  EXPECT_THROW(w.add_tensor_f32(std::string(64, 'x'), {1}, std::vector<float>{1}, GgmlType::F32), Error);
  w.add_tensor_f32(std::string(63, 'x'), {1}, std::vector<float>{1}, GgmlType::F32);  // llama.cpp's limit
  EXPECT_THROW(w.add_tensor_f32(std::string(63, 'x'), {1}, std::vector<float>{1}, GgmlType::F32), Error);
  EXPECT_THROW(w.add_tensor("five", GgmlType::F32, {1, 1, 1, 1, 1}, std::vector<uint8_t>(4)), Error);
  EXPECT_THROW(w.add_tensor("short", GgmlType::F32, {2}, std::vector<uint8_t>(4)), Error);
  EXPECT_THROW(w.add_tensor_f32("q", {2, 16}, std::vector<float>(32), GgmlType::Q8_0), Error);
  try {
    w.add_tensor("short", GgmlType::F16, {3}, std::vector<uint8_t>(4));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("tensor 'short' has 4 bytes, F16 [3] takes 6"));
  }
}

TEST(Gguf, TypeTables) {
  EXPECT_STREQ(ggml_type_name(GgmlType::BF16), "BF16");
  EXPECT_EQ(ggml_type_traits(GgmlType::Q4_K).block_size, 256u);
  EXPECT_EQ(ggml_type_traits(GgmlType::Q4_K).type_size, 144u);
  EXPECT_EQ(ggml_type_traits(GgmlType::Q6_K).type_size, 210u);
  EXPECT_EQ(ggml_type_traits(4), nullptr);   // Q4_2, removed from ggml
  EXPECT_EQ(ggml_type_traits(31), nullptr);  // Q4_0_4_4, removed
  EXPECT_EQ(ggml_type_traits(99), nullptr);
  EXPECT_STREQ(gguf_type_name(GgufType::String), "str");
}

// A valid file with two KVs and two tensors, for the mutation tests.
std::string valid_file() {
  GgufWriter w;
  w.set("general.architecture", std::string("qwen2"));
  w.set("tokens", std::vector<std::string>{"a", "bc"});
  w.add_tensor_f32("blk.0.attn_q.weight.lora_a", {2, 8}, std::vector<float>(16, 0.5f), GgmlType::F32);
  w.add_tensor_f32("blk.0.attn_q.weight.lora_b", {30, 2}, std::vector<float>(60, -1.0f), GgmlType::F16);
  return w.serialize();
}

TEST(GgufMalformed, EveryTruncationIsRefused) {
  const std::string good = valid_file();
  EXPECT_NO_THROW(GgufFile::from_bytes(good, "ok"));
  const GgufFile full = GgufFile::from_bytes(good, "ok");
  const GgufTensor& last = full.tensors().back();
  const size_t data_end = full.data_offset() + last.offset + last.nbytes;
  EXPECT_LT(data_end, good.size());  // the writer pads the last tensor too
  for (size_t n = 0; n < good.size(); ++n) {
    try {
      GgufFile::from_bytes(good.substr(0, n), "cut.gguf");
      // Only cuts inside the final padding may succeed: that padding is not needed.
      EXPECT_GE(n, data_end) << "accepted a file cut at " << n;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("cut.gguf: "));
    }
  }
  // A cut inside the last tensor names it and says what is missing.
  expect_refused(good.substr(0, good.size() - 40), {"tensor 'blk.0.attn_q.weight.lora_b'", "truncated"});
}

TEST(GgufMalformed, ByteFlipsNeverCrash) {
  // Each byte of the header and tensor infos set to values that stress lengths and types: the
  // reader either accepts the result or throws Error (ASan/UBSan builds check the rest).
  const std::string good = valid_file();
  const GgufFile f = GgufFile::from_bytes(good, "ok");
  int refused = 0;
  for (size_t pos = 0; pos < f.data_offset(); ++pos)
    for (uint8_t v : {uint8_t{0x00}, uint8_t{0x01}, uint8_t{0x7f}, uint8_t{0x80}, uint8_t{0xff}}) {
      std::string bad = good;
      bad[pos] = static_cast<char>(v);
      try {
        GgufFile::from_bytes(bad, "flip.gguf");
      } catch (const Error& e) {
        ++refused;
        EXPECT_THAT(e.what(), HasSubstr("flip.gguf: "));
      }
    }
  EXPECT_GT(refused, 100);
}

TEST(GgufMalformed, HeaderErrors) {
  expect_refused("GGU", {"not a GGUF file: 3 bytes"});
  expect_refused(Raw().u32(0x12345678).u32(3).b, {"expected the magic \"GGUF\""});
  expect_refused(Raw().header(0, 0, 1).b, {"GGUF version 1 is not supported, expected 2 or 3"});
  expect_refused(Raw().header(0, 0, 4).b, {"GGUF version 4 is not supported"});
  expect_refused(Raw().header(0, 0, 0x03000000).b, {"byte-swapped", "big-endian"});
  expect_refused("GGUF\x03", {"header: the version needs 4 bytes at offset 4"});
  // Version 2 has the same layout as 3.
  EXPECT_EQ(GgufFile::from_bytes(Raw().header(0, 1, 2).kv_u32("k", 1).b, "v2").version(), 2u);
  // Counts far beyond what the file can hold are refused before anything is allocated.
  expect_refused(Raw().header(0, 1ull << 62).kv_u32("k", 1).b,
                 {"header: 4611686018427387904 key-value pairs cannot fit in the 17 bytes"});
  expect_refused(Raw().header(~0ull, 0).zeros(100).b,
                 {"header: 18446744073709551615 tensor infos cannot fit"});
}

TEST(GgufMalformed, KeyValueErrors) {
  // A string length that runs past the end of the file.
  expect_refused(Raw().header(0, 1).u64(1000).b + "abcdefghijklmn",
                 {"key-value pair #0: the key is 1000 bytes long but the file ends after 14 more"});
  expect_refused(Raw().header(0, 1).str("name").u32(8).u64(1ull << 40).zeros(8).b,
                 {"key 'name': the string is 1099511627776 bytes long"});
  // Array length x element size beyond the file (and beyond 2^64).
  expect_refused(Raw().header(0, 1).str("a").u32(9).u32(10).u64(1ull << 62).zeros(16).b,
                 {"key 'a': array of 4611686018427387904 u64 needs at least 4611686018427387904 x 8 bytes"});
  expect_refused(Raw().header(0, 1).str("a").u32(9).u32(8).u64(2).u64(1).b + "x" + Raw().u64(1ull << 50).b,
                 {"key 'a': the string is 1125899906842624 bytes long"});
  expect_refused(Raw().header(0, 1).str("t").u32(13).zeros(8).b, {"key 't': unknown value type 13"});
  expect_refused(Raw().header(0, 1).str("t").u32(9).u32(77).u64(0).b,
                 {"key 't': array of unknown value type 77"});
  expect_refused(Raw().header(0, 1).str("t").u32(9).u32(9).u64(0).zeros(4).b, {"key 't': arrays of arrays"});
  expect_refused(Raw().header(0, 1).str("b").u32(7).u8(2).b, {"key 'b': bool value is 2, expected 0 or 1"});
  expect_refused(Raw().header(0, 1).str("").u32(4).u32(0).b, {"key-value pair #0: the key is empty"});
  expect_refused(Raw().header(0, 2).kv_u32("k", 1).kv_u32("k", 2).b, {"key 'k': the key appears twice"});
  expect_refused(Raw().header(0, 1).str("general.alignment").u32(10).u64(32).b,
                 {"key 'general.alignment' has type u64, expected u32"});
  expect_refused(Raw().header(0, 1).kv_u32("general.alignment", 48).b,
                 {"key 'general.alignment' is 48, expected a power of two"});
}

TEST(GgufMalformed, TensorInfoErrors) {
  auto one_tensor = [](std::vector<uint64_t> ne, uint32_t type, uint64_t offset, size_t data) {
    return Raw().header(1, 0).tensor_info("w", std::move(ne), type, offset).pad().zeros(data).b;
  };
  EXPECT_NO_THROW(GgufFile::from_bytes(one_tensor({8, 2}, 0, 0, 64), "ok"));
  expect_refused(one_tensor({1, 1, 1, 1, 1}, 0, 0, 64), {"tensor 'w': 5 dimensions, GGUF allows at most 4"});
  expect_refused(one_tensor({1ull << 32, 1ull << 32}, 0, 0, 64),
                 {"tensor 'w': ne {4294967296, 4294967296} has more than 2^63 - 1 elements"});
  expect_refused(one_tensor({1ull << 63}, 0, 0, 64), {"tensor 'w': ne[0] = 9223372036854775808 is negative"});
  expect_refused(one_tensor({1ull << 62}, 0, 0, 64),
                 {"tensor 'w': F32 {4611686018427387904} takes more than 2^64"});
  expect_refused(one_tensor({8, 2}, 99, 0, 64), {"tensor 'w': unknown ggml type 99"});
  expect_refused(one_tensor({8, 2}, 4, 0, 64), {"tensor 'w': unknown ggml type 4"});
  expect_refused(one_tensor({33, 1}, 8, 0, 64),
                 {"tensor 'w': type Q8_0 packs 32 values per block but ne[0] = 33 is not a multiple of it"});
  expect_refused(one_tensor({8, 2}, 0, 4, 64),
                 {"tensor 'w': data offset 4 is not a multiple of the alignment 32"});
  expect_refused(
      one_tensor({8, 2}, 0, 32, 64),
      {"tensor 'w': F32 {8, 2} needs 64 bytes at offset 32 of the data section, which has 64", "truncated"});
  expect_refused(one_tensor({8, 2}, 0, 0, 63), {"tensor 'w'", "needs 64 bytes at offset 0", "which has 63"});
  // The data section starts at the aligned offset after the infos; a file that stops before it.
  expect_refused(Raw().header(1, 0).tensor_info("w", {0}, 0, 0).b,
                 {"the data section would start at byte 64"});
  // Names: empty, too long, twice.
  expect_refused(Raw().header(1, 0).tensor_info("", {1}, 0, 0).pad().zeros(32).b,
                 {"the tensor name is empty"});
  expect_refused(Raw().header(1, 0).tensor_info(std::string(65, 'n'), {1}, 0, 0).pad().zeros(32).b,
                 {"tensor info #0: the tensor name is 65 bytes long, GGUF allows at most 64"});
  expect_refused(
      Raw().header(2, 0).tensor_info("w", {1}, 0, 0).tensor_info("w", {1}, 0, 32).pad().zeros(64).b,
      {"tensor 'w': the tensor name appears twice"});
  // Two tensors sharing bytes.
  expect_refused(
      Raw().header(2, 0).tensor_info("a", {16}, 0, 0).tensor_info("b", {8}, 0, 32).pad().zeros(64).b,
      {"tensor 'b' (data at [32, 64)) overlaps tensor 'a' (data at [0, 64))"});
  // general.alignment governs the offsets.
  expect_refused(
      Raw().header(1, 1).kv_u32("general.alignment", 64).tensor_info("w", {4}, 0, 32).pad(64).zeros(64).b,
      {"tensor 'w': data offset 32 is not a multiple of the alignment 64"});
  // A zero-dimensional tensor holds one value; zero-sized tensors may share an offset.
  const GgufFile ok = GgufFile::from_bytes(Raw()
                                               .header(3, 0)
                                               .tensor_info("s", {}, 0, 0)
                                               .tensor_info("e", {0, 4}, 0, 0)
                                               .tensor_info("z", {0}, 0, 32)
                                               .pad()
                                               .zeros(34)
                                               .b,
                                           "ok");
  EXPECT_EQ(ok.tensor("s").numel(), 1);
  EXPECT_EQ(ok.tensor("s").nbytes, 4u);
  EXPECT_EQ(ok.tensor("e").nbytes, 0u);
}

TEST(GgufMalformed, ErrorsNameTheFile) {
  const std::string dir = test::make_temp_dir("gguf-bad");
  const std::string path = dir + "/truncated.gguf";
  const std::string good = valid_file();
  std::ofstream(path, std::ios::binary) << good.substr(0, 60);
  try {
    GgufFile f(path);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                HasSubstr(path + ": key 'general.architecture': the string needs 8 bytes at offset 56"));
  }
  EXPECT_THROW(GgufFile(dir + "/missing.gguf"), Error);
}

}  // namespace
}  // namespace bidora
