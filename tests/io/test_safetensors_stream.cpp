// SafetensorsStreamWriter: the same bytes as SafetensorsWriter for the same tensors (data given in
// chunks, mixed dtypes, an empty tensor), read back by the strict reader; misuse is an error naming
// the file and the tensor; an unfinished writer leaves no file behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/files.h"
#include "io/safetensors.h"
#include "test_support.h"

namespace bidora {
namespace {

namespace fs = std::filesystem;

struct Tensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

std::vector<Tensor> sample() {
  auto fill = [](size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + 7 * i);
    return v;
  };
  return {{"w.bf16", DType::BF16, {3, 5}, fill(30, 1)}, {"a.f32", DType::F32, {4, 2}, fill(32, 2)},
          {"ids", DType::I32, {3}, fill(12, 3)},        {"empty", DType::F32, {0, 4}, {}},
          {"b.f32", DType::F32, {5}, fill(20, 4)},      {"half", DType::F16, {1, 1, 3}, fill(6, 5)}};
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::vector<SafetensorsStreamWriter::Entry> entries_of(const std::vector<Tensor>& ts) {
  std::vector<SafetensorsStreamWriter::Entry> e;
  for (const Tensor& t : ts) e.push_back({t.name, t.dtype, t.shape});
  return e;
}

TEST(SafetensorsStream, SameBytesAsTheWriter) {
  const std::string dir = test::make_temp_dir("st-stream");
  const auto ts = sample();
  SafetensorsWriter ref;
  ref.set_metadata({{"format", "pt"}, {"note", "x"}});
  for (const Tensor& t : ts) ref.add(t.name, t.dtype, t.shape, t.bytes);

  SafetensorsStreamWriter w(dir + "/s.safetensors", entries_of(ts), {{"format", "pt"}, {"note", "x"}});
  // order(): dtype rank descending (F32 before I32 before BF16 before F16), then by name.
  std::vector<std::string> order;
  for (const auto& e : w.order()) order.push_back(e.name);
  EXPECT_EQ(order, (std::vector<std::string>{"a.f32", "b.f32", "empty", "ids", "w.bf16", "half"}));
  for (const auto& e : w.order()) {
    const Tensor& t = *std::find_if(ts.begin(), ts.end(), [&](const Tensor& x) { return x.name == e.name; });
    // In chunks of 7 bytes: a tensor's data may arrive piecewise.
    for (size_t i = 0; i < t.bytes.size(); i += 7)
      w.append(t.name, {t.bytes.data() + i, std::min<size_t>(7, t.bytes.size() - i)});
  }
  EXPECT_FALSE(fs::exists(dir + "/s.safetensors"));  // only the temporary file until finish()
  w.finish();
  const std::string got = read_file(dir + "/s.safetensors");
  EXPECT_EQ(got, ref.serialize());
  EXPECT_EQ(w.file_size(), got.size());
  const SafetensorsFile f(dir + "/s.safetensors");
  EXPECT_EQ(f.tensors().size(), ts.size());
  EXPECT_EQ(f.get("half").shape, (std::vector<int64_t>{1, 1, 3}));
  EXPECT_EQ(std::vector<uint8_t>(f.get("w.bf16").data, f.get("w.bf16").data + 30), ts[0].bytes);
  EXPECT_EQ(fs::directory_iterator(dir)->path().filename(), "s.safetensors");  // nothing else
}

TEST(SafetensorsStream, MisuseIsAnErrorAndLeavesNoFile) {
  const std::string dir = test::make_temp_dir("st-stream-errors");
  const auto ts = sample();
  const std::string path = dir + "/bad.safetensors";
  {
    SafetensorsStreamWriter w(path, entries_of(ts));
    std::string msg = error_of([&] { w.append("b.f32", {ts[4].bytes.data(), 4}); });
    EXPECT_NE(msg.find("out of order (expected 'a.f32')"), std::string::npos) << msg;
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    w.append("a.f32", {ts[1].bytes.data(), 30});
    msg = error_of([&] { w.append("a.f32", {ts[1].bytes.data(), 4}); });
    EXPECT_NE(msg.find("'a.f32'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("past its end"), std::string::npos) << msg;
    msg = error_of([&] { w.finish(); });
    EXPECT_NE(msg.find("tensor 'a.f32' incomplete"), std::string::npos) << msg;
  }  // destroyed unfinished: the temporary file goes too
  EXPECT_TRUE(fs::is_empty(dir));
  const std::string dup = error_of([&] {
    SafetensorsStreamWriter w(path, {{"x", DType::F32, {1}}, {"x", DType::BF16, {1}}});
  });
  EXPECT_NE(dup.find("'x' declared twice"), std::string::npos) << dup;
  const std::string nodir = error_of([&] { SafetensorsStreamWriter w(dir + "/no/such/f.safetensors", {}); });
  EXPECT_NE(nodir.find("cannot create"), std::string::npos) << nodir;
  EXPECT_TRUE(fs::is_empty(dir));
}

}  // namespace
}  // namespace bidora
