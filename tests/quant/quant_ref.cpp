#include "quant_ref.h"

#include <bit>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "test_support.h"

namespace bidora::test {
namespace {

size_t dtype_size(const std::string& d) {
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "U8" || d == "I8") return 1;
  if (d == "I64" || d == "F64") return 8;
  if (d == "F16" || d == "BF16") return 2;
  throw std::runtime_error("unexpected dtype " + d);
}

}  // namespace

std::vector<float> RefTensor::f32() const {
  if (dtype != "F32") throw std::runtime_error("reference tensor is " + dtype + ", expected F32");
  return as<float>();
}
std::vector<uint8_t> RefTensor::u8() const {
  if (dtype != "U8") throw std::runtime_error("reference tensor is " + dtype + ", expected U8");
  return bytes;
}
std::vector<int8_t> RefTensor::i8() const {
  if (dtype != "I8") throw std::runtime_error("reference tensor is " + dtype + ", expected I8");
  return as<int8_t>();
}

RefFile::RefFile(const std::string& name) : path_(reference_dir() + "/quant/" + name) {
  std::ifstream in(path_, std::ios::binary);
  if (!in)
    throw std::runtime_error(
        "quantisation reference file " + path_ +
        " is missing: generate it with `/usr/bin/python3 tests/reference/quant_reference.py " +
        reference_dir() + "/quant` (or set BIDORA_REFERENCE_DIR)");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string data = ss.str();
  if (data.size() < 8) throw std::runtime_error(path_ + ": truncated");
  uint64_t n = 0;
  std::memcpy(&n, data.data(), 8);
  if (n > data.size() - 8) throw std::runtime_error(path_ + ": header length beyond the file");
  const auto header = nlohmann::json::parse(data.substr(8, n));
  const size_t base = 8 + n;
  for (const auto& [key, v] : header.items()) {
    if (key == "__metadata__") {
      for (const auto& [mk, mv] : v.items()) meta_[mk] = mv.get<std::string>();
      continue;
    }
    RefTensor t;
    t.dtype = v.at("dtype").get<std::string>();
    t.shape = v.at("shape").get<std::vector<int64_t>>();
    const auto off = v.at("data_offsets").get<std::vector<uint64_t>>();
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    if (off.size() != 2 || off[1] < off[0] || base + off[1] > data.size() ||
        off[1] - off[0] != static_cast<uint64_t>(numel) * dtype_size(t.dtype))
      throw std::runtime_error(path_ + ": bad data_offsets for " + key);
    t.bytes.assign(data.begin() + static_cast<std::ptrdiff_t>(base + off[0]),
                   data.begin() + static_cast<std::ptrdiff_t>(base + off[1]));
    tensors_.emplace(key, std::move(t));
  }
}

const RefTensor& RefFile::get(const std::string& key) const {
  auto it = tensors_.find(key);
  if (it == tensors_.end())
    throw std::runtime_error(path_ + ": no tensor " + key + " (stale reference data?)");
  return it->second;
}

const std::string& RefFile::meta(const std::string& key) const {
  auto it = meta_.find(key);
  if (it == meta_.end()) throw std::runtime_error(path_ + ": no metadata " + key);
  return it->second;
}

std::vector<std::string> RefFile::cases() const {
  std::vector<std::string> out;
  std::stringstream ss(meta("cases"));
  for (std::string c; std::getline(ss, c, ',');) out.push_back(c);
  return out;
}

const RefFile& quant_ref(const std::string& name) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<RefFile>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[name];
  if (!slot) slot = std::make_unique<RefFile>(name);
  return *slot;
}

::testing::AssertionResult bits_equal(std::span<const float> got, std::span<const float> want) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " vs expected " << want.size();
  size_t bad = 0;
  std::ostringstream first;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(want[i])) {
      if (bad < 3)
        first << " [" << i << "] " << std::hexfloat << got[i] << " vs expected " << want[i]
              << std::defaultfloat << " (" << got[i] << " vs " << want[i] << ");";
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << got.size() << " floats differ bitwise:" << first.str();
}

}  // namespace bidora::test
