#pragma once
// GGUF files, llama.cpp's container (ggml docs/gguf.md; formats.md §4): a strict reader for
// untrusted files and a writer of version 3.
//
// Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 key-value count; the
// key-value pairs (key as u64 length + bytes, u32 value type, value; an array is u32 element type +
// u64 count + elements); the tensor infos (name, u32 n_dims, n_dims x u64 ne, u32 ggml type, u64
// offset into the data section); zero padding up to `general.alignment` (default 32); the data
// section, every tensor starting on an aligned offset. ne is ggml's order: ne[0] is the innermost
// (contiguous) dimension, so ne is the PyTorch shape reversed.
//
// The reader checks every length against the bytes that are really there before it allocates or
// reads anything, so a hostile file fails with an Error naming the file, the key or tensor, and
// what was expected; it never reads out of bounds or allocates more than a small multiple of the
// file size.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "core/mapped_file.h"

namespace bidora {

constexpr uint32_t kGgufVersion = 3;
constexpr uint32_t kGgufDefaultAlignment = 32;
constexpr size_t kGgufMaxTensorNameBytes = 63;  // ggml's GGML_MAX_NAME (64) including the NUL

// Value types, with the wire numbers.
enum class GgufType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};
const char* gguf_type_name(GgufType t);  // "u8", "i8", ... "str", "arr" (gguf.cpp's names)

// One value: a scalar or a homogeneous array (arrays of arrays are refused, as llama.cpp does).
// Construct with an exactly typed C++ value: uint32_t{4}, 1.5f, std::string("x"), true,
// std::vector<int32_t>{...}.
using GgufValue =
    std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool, std::string, uint64_t,
                 int64_t, double, std::vector<uint8_t>, std::vector<int8_t>, std::vector<uint16_t>,
                 std::vector<int16_t>, std::vector<uint32_t>, std::vector<int32_t>, std::vector<float>,
                 std::vector<bool>, std::vector<std::string>, std::vector<uint64_t>, std::vector<int64_t>,
                 std::vector<double>>;
GgufType gguf_value_type(const GgufValue& v);                 // the scalar type, or Array
std::optional<GgufType> gguf_array_type(const GgufValue& v);  // the element type of an array
std::string gguf_type_str(const GgufValue& v);                // "u32", "arr[str]" (for messages)

// ggml tensor types that GGUF files can hold, with the wire numbers (gguf-py GGMLQuantizationType).
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  NVFP4 = 40,
  Q1_0 = 41,
};

// Elements per block and bytes per block (gguf-py GGML_QUANT_SIZES); plain types have blocks of 1.
struct GgmlTypeTraits {
  const char* name;  // "F32", "Q8_0", ...
  uint32_t block_size;
  uint32_t type_size;
};
// nullptr for a number ggml does not define (or defined once and removed, like Q4_2 = 4).
const GgmlTypeTraits* ggml_type_traits(uint32_t id);
const GgmlTypeTraits& ggml_type_traits(GgmlType t);
const char* ggml_type_name(GgmlType t);

struct GgufTensor {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> ne;        // ggml order: ne[0] innermost (the PyTorch shape reversed)
  uint64_t offset = 0;            // from the start of the data section
  const uint8_t* data = nullptr;  // into the file's bytes
  size_t nbytes = 0;

  std::vector<int64_t> shape() const;  // PyTorch order
  int64_t numel() const;
  std::string ne_str() const;  // "{64, 8}" as llama.cpp logs ne
};

class GgufFile {
 public:
  // Maps the file and validates everything but the tensor values; throws Error naming the path.
  explicit GgufFile(const std::string& path);
  // The same over bytes in memory (fuzzing, tests); `source` names them in error messages.
  static GgufFile from_bytes(std::string bytes, const std::string& source);

  GgufFile(GgufFile&&) noexcept = default;
  GgufFile& operator=(GgufFile&&) noexcept = default;

  const std::string& source() const { return source_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // file offset of the data section

  // Key-value pairs in file order.
  const std::vector<std::pair<std::string, GgufValue>>& kvs() const { return kvs_; }
  const GgufValue* find(const std::string& key) const;  // nullptr when absent
  // The value of `key` as T (e.g. std::string, float, std::vector<uint32_t>); Error naming the
  // source, the key and both types if it is missing or of another type.
  template <typename T>
  const T& get(const std::string& key) const {
    const GgufValue& v = require(key);
    if (const T* p = std::get_if<T>(&v)) return *p;
    type_mismatch(key, v, GgufValue(T{}));
  }

  // Tensor infos in file order.
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(const std::string& name) const;  // nullptr when absent
  const GgufTensor& tensor(const std::string& name) const;       // Error when absent

 private:
  GgufFile() = default;
  void parse(const uint8_t* data, size_t size);
  const GgufValue& require(const std::string& key) const;
  [[noreturn]] void type_mismatch(const std::string& key, const GgufValue& found,
                                  const GgufValue& wanted) const;

  std::string source_;
  MappedFile file_;
  std::unique_ptr<const std::string> bytes_;  // from_bytes
  uint32_t version_ = 0;
  uint32_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kvs_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// A tensor's values as float32: F32, F16, BF16 and Q8_0. Error naming `source` for other types.
std::vector<float> gguf_tensor_to_f32(const GgufTensor& t, const std::string& source);

// float32 → the bytes of `type` (F32, F16, BF16, Q8_0), rounded as gguf-py does: ties to even for
// F16/BF16 (NaN stays a quiet NaN); Q8_0 per 32 values d = max|x| / 127 stored as F16 and
// q = round-half-away(x / d). Q8_0 needs a multiple of 32 values per row (`row` elements).
std::vector<uint8_t> gguf_encode_f32(std::span<const float> values, GgmlType type, int64_t row);
uint16_t f32_to_f16_bits(float f);  // IEEE half, round to nearest even, overflow to infinity

class GgufWriter {
 public:
  // `alignment` must be a power of two; anything but 32 is recorded as general.alignment (u32).
  explicit GgufWriter(uint32_t alignment = kGgufDefaultAlignment);

  // Adds a key, or replaces its value where it is (file order is first-insertion order).
  void set(const std::string& key, GgufValue value);
  // `shape` in PyTorch order (written reversed as ne); `bytes` already in `type`'s encoding. The
  // data is copied. Names must be unique, non-empty and at most 63 bytes; 1 to 4 dimensions.
  void add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> shape,
                  std::vector<uint8_t> bytes);
  // Encodes float32 values as `type` (F32, F16, BF16, Q8_0; see gguf_encode_f32).
  void add_tensor_f32(const std::string& name, std::vector<int64_t> shape, std::span<const float> values,
                      GgmlType type);

  size_t num_tensors() const { return tensors_.size(); }
  std::string serialize() const;
  void write(const std::string& path) const;  // atomic: temp file + rename (core/files.h)

 private:
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  uint32_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> kvs_;
  std::vector<Tensor> tensors_;
};

}  // namespace bidora
