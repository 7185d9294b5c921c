#pragma once
// Test helpers for src/quant: a tiny safetensors reader for the files written by
// tests/reference/quant_reference.py (test_quant does not link the io module), and bitwise float
// comparisons.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace bidora::test {

struct RefTensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;

  template <class T>
  std::vector<T> as() const {
    std::vector<T> v(bytes.size() / sizeof(T));
    if (!v.empty()) std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
    return v;
  }
  std::vector<float> f32() const;  // checks the dtype
  std::vector<uint8_t> u8() const;
  std::vector<int8_t> i8() const;
};

class RefFile {
 public:
  // Reads <reference_dir()>/quant/<name>; a missing file throws with instructions.
  explicit RefFile(const std::string& name);
  const RefTensor& get(const std::string& key) const;  // throws naming the key when absent
  bool has(const std::string& key) const { return tensors_.count(key) != 0; }
  const std::map<std::string, RefTensor>& tensors() const { return tensors_; }
  const std::string& meta(const std::string& key) const;
  std::vector<std::string> cases() const;  // meta("cases") split at commas
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::map<std::string, RefTensor> tensors_;
  std::map<std::string, std::string> meta_;
};

// Cached per file name.
const RefFile& quant_ref(const std::string& name);

// Bitwise equality of float arrays: reports the count and the first mismatches with both values.
::testing::AssertionResult bits_equal(std::span<const float> got, std::span<const float> want);

template <class T>
::testing::AssertionResult bytes_equal(std::span<const T> got, std::span<const T> want) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " vs expected " << want.size();
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] != want[i] && bad++ == 0) first = i;
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << got.size() << " differ; first at " << first << ": "
         << static_cast<int>(got[first]) << " vs expected " << static_cast<int>(want[first]);
}

}  // namespace bidora::test
