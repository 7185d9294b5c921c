// safetensors: the writer's byte layout, round trips, and every malformed header the reader
// must refuse with a message naming the file and the tensor.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/files.h"
#include "io/safetensors.h"
#include "test_support.h"

namespace bidora {
namespace {

std::string write_raw(const std::string& dir, const std::string& name, const std::string& bytes) {
  const std::string p = dir + "/" + name;
  std::ofstream(p, std::ios::binary) << bytes;
  return p;
}

// A file with the given header JSON (padded) and `data_bytes` bytes of data.
std::string with_header(const std::string& json, size_t data_bytes) {
  std::string h = json;
  while (h.size() % 8) h.push_back(' ');
  std::string out(8, '\0');
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + h + std::string(data_bytes, '\x01');
}

void expect_error(const std::string& path, const std::vector<std::string>& fragments) {
  try {
    SafetensorsFile f(path);
    FAIL() << "expected an error for " << path;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const auto& frag : fragments)
      EXPECT_NE(msg.find(frag), std::string::npos) << "'" << frag << "' not in: " << msg;
  }
}

TEST(Safetensors, WriterMatchesReferenceLayout) {
  SafetensorsWriter w;
  std::vector<float> a{1, 2, 3, 4, 5, 6};
  std::vector<uint8_t> b{1, 2, 3};
  std::vector<uint16_t> c{0x3f80, 0x4000};
  w.add_f32("b.weight", {2, 3}, a);
  w.add("a.mask", DType::U8, {3}, b);
  w.add("c.half", DType::BF16, {2}, {reinterpret_cast<const uint8_t*>(c.data()), 4});
  const std::string s = w.serialize();
  uint64_t n = 0;
  std::memcpy(&n, s.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const std::string header = s.substr(8, n);
  // Compact JSON, metadata first, then dtype order F32 > BF16 > U8 (descending enum order).
  EXPECT_EQ(
      header.substr(0, header.find_last_not_of(' ') + 1),
      R"({"__metadata__":{"format":"pt"},"b.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("c.half":{"dtype":"BF16","shape":[2],"data_offsets":[24,28]},)"
      R"("a.mask":{"dtype":"U8","shape":[3],"data_offsets":[28,31]}})");
  EXPECT_EQ(s.size(), 8 + n + 31);
}

TEST(Safetensors, RoundTripKeepsValuesAndMetadata) {
  const std::string dir = test::make_temp_dir("st");
  SafetensorsWriter w;
  std::vector<float> v(100);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.5f * static_cast<float>(i) - 7;
  w.add_f32("x", {10, 10}, v);
  w.add_f32("scalar", {}, std::vector<float>{3.5f});
  w.add_f32("empty", {0, 4}, std::vector<float>{});
  w.set_metadata({{"format", "pt"}, {"note", "hi"}});
  w.write(dir + "/t.safetensors");
  SafetensorsFile f(dir + "/t.safetensors");
  ASSERT_EQ(f.tensors().size(), 3u);
  const TensorView& x = f.get("x");
  EXPECT_EQ(x.shape, (std::vector<int64_t>{10, 10}));
  std::vector<float> back(100);
  tensor_to_f32(x, back.data(), f.path());
  EXPECT_EQ(back, v);
  EXPECT_EQ(f.get("scalar").numel(), 1);
  EXPECT_EQ(f.get("empty").nbytes, 0u);
  EXPECT_EQ(f.metadata().at("note"), "hi");
  EXPECT_EQ(f.find("nope"), nullptr);
  EXPECT_THROW(f.get("nope"), Error);
}

TEST(Safetensors, RejectsMalformedFiles) {
  const std::string dir = test::make_temp_dir("st-bad");
  const std::string ok_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  expect_error(write_raw(dir, "short", "abc"), {"at least"});
  {  // header length larger than the file
    std::string s = with_header("{" + ok_entry + "}", 8);
    s[0] = '\xff';
    s[1] = '\xff';
    expect_error(write_raw(dir, "hdrlen", s), {"truncated"});
  }
  {  // header length above the 100 MB limit
    std::string s(16, '\0');
    s[4] = '\x01';
    expect_error(write_raw(dir, "huge", s), {"exceeds the limit"});
  }
  expect_error(write_raw(dir, "notjson", with_header("{\"w\": [1,", 0)), {"not valid JSON"});
  expect_error(write_raw(dir, "array", with_header("[1,2]", 0)), {"JSON object"});
  expect_error(write_raw(dir, "trunc", with_header("{" + ok_entry + "}", 4)), {"'w'", "past the end"});
  expect_error(write_raw(dir, "trailing", with_header("{" + ok_entry + "}", 12)), {"trailing"});
  expect_error(
      write_raw(dir, "dtype", with_header(R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8)),
      {"'w'", "unsupported dtype 'Q4'"});
  expect_error(
      write_raw(dir, "size", with_header(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)),
      {"'w'", "12 bytes"});
  expect_error(
      write_raw(dir, "neg", with_header(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8)),
      {"'w'", "non-negative"});
  expect_error(
      write_raw(dir, "order", with_header(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8)),
      {"'w'", "end"});
  expect_error(
      write_raw(dir, "hole", with_header(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)),
      {"'w'", "hole"});
  expect_error(write_raw(dir, "overlap",
                         with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                     R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                     8)),
               {"overlap"});
  expect_error(write_raw(dir, "dup", with_header("{" + ok_entry + "," + ok_entry + "}", 8)), {"'w' twice"});
  expect_error(write_raw(dir, "missing", with_header(R"({"w":{"dtype":"F32","shape":[2]}})", 8)),
               {"data_offsets"});
  expect_error(
      write_raw(
          dir, "bigshape",
          with_header(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8)),
      {"'w'"});
  expect_error(write_raw(dir, "meta", with_header(R"({"__metadata__":{"a":1}})", 0)), {"__metadata__"});
  expect_error(dir + "/does-not-exist", {"cannot open"});
}

TEST(Safetensors, ConversionRejectsNonFloat) {
  const std::string dir = test::make_temp_dir("st-int");
  SafetensorsWriter w;
  std::vector<uint8_t> b{1, 2};
  w.add("ids", DType::U8, {2}, b);
  w.write(dir + "/i.safetensors");
  SafetensorsFile f(dir + "/i.safetensors");
  float out[2];
  EXPECT_THROW(tensor_to_f32(f.get("ids"), out, f.path()), Error);
}

// Fuzzing regression: an empty F32 tensor converted into an empty vector passed nullptr to
// memcpy (UBSan: null pointer passed as argument 1, safetensors.cpp tensor_to_f32).
TEST(Safetensors, EmptyTensorConvertsWithoutTouchingOutput) {
  SafetensorsWriter w;
  w.add("empty", DType::F32, {0, 4}, {});
  w.add("half", DType::BF16, {0}, {});
  auto f = SafetensorsFile::from_bytes(w.serialize(), "mem.safetensors");
  std::vector<float> out;
  tensor_to_f32(f.get("empty"), out.data(), f.path());
  tensor_to_f32(f.get("half"), out.data(), f.path());
  EXPECT_TRUE(out.empty());
}

// The in-memory reader (fuzzing) parses exactly as the file reader and names its source.
TEST(Safetensors, FromBytesMatchesTheFileReader) {
  const std::string dir = test::make_temp_dir("st-bytes");
  SafetensorsWriter w;
  const std::vector<float> v{1.5f, -2.0f, 3.25f};
  w.add_f32("x", {3}, v);
  w.write(dir + "/x.safetensors");
  auto m = SafetensorsFile::from_bytes(read_file(dir + "/x.safetensors"), "mem.safetensors");
  EXPECT_EQ(m.path(), "mem.safetensors");
  std::vector<float> out(3);
  tensor_to_f32(m.get("x"), out.data(), m.path());
  EXPECT_EQ(out, v);
  try {
    SafetensorsFile::from_bytes(std::string(7, '\0'), "short.safetensors");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("short.safetensors: not a safetensors file"), std::string::npos);
  }
}

TEST(AtomicWrite, ReplacesWholeFileAndLeavesNoTemp) {
  const std::string dir = test::make_temp_dir("atomic");
  write_file_atomic(dir + "/f", "first");
  write_file_atomic(dir + "/f", "second");
  EXPECT_EQ(read_file(dir + "/f"), "second");
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);
  EXPECT_THROW(write_file_atomic(dir + "/no/such/dir/f", "x"), Error);
  EXPECT_EQ(read_file(dir + "/f"), "second");
}

}  // namespace
}  // namespace bidora
