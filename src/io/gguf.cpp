#include "io/gguf.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include "core/error.h"
#include "core/files.h"
#include "core/half.h"

namespace bidora {

// The wire format is little-endian; values are copied byte for byte.
static_assert(std::endian::native == std::endian::little,
              "the GGUF reader/writer assumes a little-endian host");

namespace {

// GgufValue alternatives 0..11 are the scalars in this order, 12..23 the arrays of the same types.
constexpr GgufType kScalarOrder[] = {GgufType::U8,     GgufType::I8,  GgufType::U16, GgufType::I16,
                                     GgufType::U32,    GgufType::I32, GgufType::F32, GgufType::Bool,
                                     GgufType::String, GgufType::U64, GgufType::I64, GgufType::F64};
constexpr size_t kNumScalars = std::size(kScalarOrder);
static_assert(std::variant_size_v<GgufValue> == 2 * kNumScalars);

// Bytes of a fixed-size value type; 0 for strings and arrays.
size_t fixed_size(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::Bool:
      return 1;
    case GgufType::U16:
    case GgufType::I16:
      return 2;
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::F32:
      return 4;
    case GgufType::U64:
    case GgufType::I64:
    case GgufType::F64:
      return 8;
    default:
      return 0;
  }
}

bool valid_type(uint32_t t) {
  return t <= static_cast<uint32_t>(GgufType::F64);
}

// The smallest encodings, to bound the counts in the header by the bytes that follow: a key-value
// pair is a key length (8), a key of at least 1 byte, a type (4) and a value of at least 1 byte;
// a tensor info is a name length (8), a name of at least 1 byte, n_dims (4), a type (4) and an
// offset (8).
constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 4 + 8;
constexpr uint32_t kMaxDims = 4;
constexpr size_t kMaxTensorNameBytes = 64;  // the spec's limit (llama.cpp itself stops at 63)

constexpr GgmlTypeTraits kUnknownTraits{"?", 0, 0};

struct TraitsEntry {
  uint32_t id;
  GgmlTypeTraits traits;
};
constexpr uint32_t kQK = 256;
// gguf-py GGML_QUANT_SIZES: (elements per block, bytes per block).
constexpr TraitsEntry kGgmlTypes[] = {
    {0, {"F32", 1, 4}},
    {1, {"F16", 1, 2}},
    {2, {"Q4_0", 32, 2 + 16}},
    {3, {"Q4_1", 32, 2 + 2 + 16}},
    {6, {"Q5_0", 32, 2 + 4 + 16}},
    {7, {"Q5_1", 32, 2 + 2 + 4 + 16}},
    {8, {"Q8_0", 32, 2 + 32}},
    {9, {"Q8_1", 32, 4 + 4 + 32}},
    {10, {"Q2_K", kQK, 2 + 2 + kQK / 16 + kQK / 4}},
    {11, {"Q3_K", kQK, 2 + kQK / 4 + kQK / 8 + 12}},
    {12, {"Q4_K", kQK, 2 + 2 + kQK / 2 + 12}},
    {13, {"Q5_K", kQK, 2 + 2 + kQK / 2 + kQK / 8 + 12}},
    {14, {"Q6_K", kQK, 2 + kQK / 2 + kQK / 4 + kQK / 16}},
    {15, {"Q8_K", kQK, 4 + kQK + kQK / 8}},
    {16, {"IQ2_XXS", kQK, 2 + kQK / 4}},
    {17, {"IQ2_XS", kQK, 2 + kQK / 4 + kQK / 32}},
    {18, {"IQ3_XXS", kQK, 2 + kQK / 4 + kQK / 8}},
    {19, {"IQ1_S", kQK, 2 + kQK / 8 + kQK / 16}},
    {20, {"IQ4_NL", 32, 2 + 16}},
    {21, {"IQ3_S", kQK, 2 + kQK / 4 + kQK / 8 + kQK / 32 + 4}},
    {22, {"IQ2_S", kQK, 2 + kQK / 4 + kQK / 16}},
    {23, {"IQ4_XS", kQK, 2 + 2 + kQK / 2 + kQK / 64}},
    {24, {"I8", 1, 1}},
    {25, {"I16", 1, 2}},
    {26, {"I32", 1, 4}},
    {27, {"I64", 1, 8}},
    {28, {"F64", 1, 8}},
    {29, {"IQ1_M", kQK, kQK / 8 + kQK / 16 + kQK / 32}},
    {30, {"BF16", 1, 2}},
    {34, {"TQ1_0", kQK, 2 + 4 * 13}},
    {35, {"TQ2_0", kQK, 2 + 64}},
    {39, {"MXFP4", 32, 1 + 16}},
    {40, {"NVFP4", 64, 4 + 32}},
    {41, {"Q1_0", 128, 2 + 16}},
};

uint64_t align_up(uint64_t x, uint64_t a) {
  return (x + a - 1) / a * a;  // callers keep x + a - 1 far below 2^64 (x <= file size, a <= 2^31)
}

// Reads the file front to back; every read is checked against the bytes left, and every failure
// names the source and what was being read (`where`, set by the parser as it goes).
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& source)
      : data_(data), size_(size), source_(source) {}

  size_t pos() const { return pos_; }
  size_t left() const { return size_ - pos_; }
  std::string where;

  template <typename... Args>
  [[noreturn]] void fail_here(fmt::format_string<Args...> f, Args&&... args) const {
    const std::string what = fmt::format(f, std::forward<Args>(args)...);
    fail("{}: {}: {}", source_, where, what);
  }

  const uint8_t* take(size_t n, const char* what) {
    if (n > left())
      fail_here("{} needs {} bytes at offset {} but the file ends after {} more (truncated?)", what, n, pos_,
                left());
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }

  template <typename T>
  T read(const char* what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }

  std::string read_string(const char* what) {
    const uint64_t n = read<uint64_t>(what);
    if (n > left())
      fail_here("{} is {} bytes long but the file ends after {} more (truncated, or a corrupt length)", what,
                n, left());
    const uint8_t* p = take(static_cast<size_t>(n), what);
    return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& source_;
};

bool read_bool(Cursor& c) {
  const uint8_t b = c.read<uint8_t>("a bool");
  if (b > 1) c.fail_here("bool value is {}, expected 0 or 1", b);
  return b == 1;
}

template <typename T>
T read_scalar(Cursor& c) {
  if constexpr (std::is_same_v<T, bool>)
    return read_bool(c);
  else if constexpr (std::is_same_v<T, std::string>)
    return c.read_string("the string");
  else
    return c.read<T>("the value");
}

template <typename T>
std::vector<T> read_array(Cursor& c, uint64_t n, GgufType elem) {
  // Bound the count by the bytes left before allocating: every element takes at least
  // `min_bytes` (strings: their 8-byte length).
  const uint64_t min_bytes = elem == GgufType::String ? 8 : fixed_size(elem);
  if (n > c.left() / min_bytes)
    c.fail_here("array of {} {} needs at least {} x {} bytes but the file ends after {} more", n,
                gguf_type_name(elem), n, min_bytes, c.left());
  std::vector<T> out;
  if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, std::string>) {
    out.reserve(static_cast<size_t>(n));
    for (uint64_t i = 0; i < n; ++i) out.push_back(read_scalar<T>(c));
  } else {
    out.resize(static_cast<size_t>(n));
    if (n > 0)
      std::memcpy(out.data(), c.take(static_cast<size_t>(n) * sizeof(T), "the array"), n * sizeof(T));
  }
  return out;
}

// Calls f.template operator()<T>() with the C++ type of the scalar GGUF type `t`.
template <typename F>
decltype(auto) with_type(GgufType t, F&& f) {
  switch (t) {
    case GgufType::U8:
      return f.template operator()<uint8_t>();
    case GgufType::I8:
      return f.template operator()<int8_t>();
    case GgufType::U16:
      return f.template operator()<uint16_t>();
    case GgufType::I16:
      return f.template operator()<int16_t>();
    case GgufType::U32:
      return f.template operator()<uint32_t>();
    case GgufType::I32:
      return f.template operator()<int32_t>();
    case GgufType::F32:
      return f.template operator()<float>();
    case GgufType::Bool:
      return f.template operator()<bool>();
    case GgufType::String:
      return f.template operator()<std::string>();
    case GgufType::U64:
      return f.template operator()<uint64_t>();
    case GgufType::I64:
      return f.template operator()<int64_t>();
    case GgufType::F64:
      return f.template operator()<double>();
    case GgufType::Array:
      break;
  }
  fail("GGUF: no C++ type for value type {}", static_cast<uint32_t>(t));
}

GgufValue read_value(Cursor& c) {
  const uint32_t type = c.read<uint32_t>("the value type");
  if (!valid_type(type)) c.fail_here("unknown value type {} (GGUF defines 0 to 12)", type);
  if (static_cast<GgufType>(type) != GgufType::Array)
    return with_type(static_cast<GgufType>(type), [&]<typename T>() { return GgufValue(read_scalar<T>(c)); });
  const uint32_t elem = c.read<uint32_t>("the array element type");
  if (!valid_type(elem)) c.fail_here("array of unknown value type {} (GGUF defines 0 to 12)", elem);
  if (static_cast<GgufType>(elem) == GgufType::Array)
    c.fail_here("arrays of arrays are not supported (llama.cpp refuses them too)");
  const uint64_t n = c.read<uint64_t>("the array length");
  return with_type(static_cast<GgufType>(elem),
                   [&]<typename T>() { return GgufValue(read_array<T>(c, n, static_cast<GgufType>(elem))); });
}

std::string ne_string(const std::vector<int64_t>& ne) {
  return fmt::format("{{{}}}", fmt::join(ne, ", "));
}

// Little-endian serialisation helpers for the writer.
class ByteSink {
 public:
  std::string out;
  template <typename T>
  void put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out.append(b, sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    out += s;
  }
  void pad_to(uint64_t alignment) { out.append(align_up(out.size(), alignment) - out.size(), '\0'); }
};

void put_value(ByteSink& s, const GgufValue& v) {
  const GgufType type = gguf_value_type(v);
  s.put<uint32_t>(static_cast<uint32_t>(type));
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        auto put_one = [&]<typename E>(const E& e) {
          if constexpr (std::is_same_v<E, std::string>)
            s.put_string(e);
          else if constexpr (std::is_same_v<E, bool>)
            s.put<uint8_t>(e ? 1 : 0);
          else
            s.put<E>(e);
        };
        if constexpr (requires { typename T::value_type; } && !std::is_same_v<T, std::string>) {
          s.put<uint32_t>(static_cast<uint32_t>(*gguf_array_type(v)));
          s.put<uint64_t>(x.size());
          for (auto&& e : x) {
            if constexpr (std::is_same_v<T, std::vector<bool>>)
              put_one(static_cast<bool>(e));
            else
              put_one(e);
          }
        } else {
          put_one(x);
        }
      },
      v);
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::U8:
      return "u8";
    case GgufType::I8:
      return "i8";
    case GgufType::U16:
      return "u16";
    case GgufType::I16:
      return "i16";
    case GgufType::U32:
      return "u32";
    case GgufType::I32:
      return "i32";
    case GgufType::F32:
      return "f32";
    case GgufType::Bool:
      return "bool";
    case GgufType::String:
      return "str";
    case GgufType::Array:
      return "arr";
    case GgufType::U64:
      return "u64";
    case GgufType::I64:
      return "i64";
    case GgufType::F64:
      return "f64";
  }
  return "?";
}

GgufType gguf_value_type(const GgufValue& v) {
  return v.index() < kNumScalars ? kScalarOrder[v.index()] : GgufType::Array;
}

std::optional<GgufType> gguf_array_type(const GgufValue& v) {
  if (v.index() < kNumScalars) return std::nullopt;
  return kScalarOrder[v.index() - kNumScalars];
}

std::string gguf_type_str(const GgufValue& v) {
  const auto elem = gguf_array_type(v);
  return elem ? fmt::format("arr[{}]", gguf_type_name(*elem)) : gguf_type_name(gguf_value_type(v));
}

const GgmlTypeTraits* ggml_type_traits(uint32_t id) {
  for (const TraitsEntry& e : kGgmlTypes)
    if (e.id == id) return &e.traits;
  return nullptr;
}

const GgmlTypeTraits& ggml_type_traits(GgmlType t) {
  const GgmlTypeTraits* p = ggml_type_traits(static_cast<uint32_t>(t));
  return p ? *p : kUnknownTraits;
}

const char* ggml_type_name(GgmlType t) {
  return ggml_type_traits(t).name;
}

std::vector<int64_t> GgufTensor::shape() const {
  return std::vector<int64_t>(ne.rbegin(), ne.rend());
}

int64_t GgufTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;  // the reader checked that the product fits
  return n;
}

std::string GgufTensor::ne_str() const {
  return ne_string(ne);
}

// ---------------------------------------------------------------------------------------------
// Reader

GgufFile::GgufFile(const std::string& path) : source_(path), file_(path) {
  parse(file_.data(), file_.size());
}

GgufFile GgufFile::from_bytes(std::string bytes, const std::string& source) {
  GgufFile f;
  f.source_ = source;
  // Held through a pointer so that moving the GgufFile never moves the bytes the tensors point to.
  f.bytes_ = std::make_unique<const std::string>(std::move(bytes));
  f.parse(reinterpret_cast<const uint8_t*>(f.bytes_->data()), f.bytes_->size());
  return f;
}

void GgufFile::parse(const uint8_t* data, size_t size) {
  Cursor c(data, size, source_);
  c.where = "header";
  if (size < 4) fail("{}: not a GGUF file: {} bytes, too short for the magic \"GGUF\"", source_, size);
  if (std::memcmp(data, "GGUF", 4) != 0) {
    std::string shown;
    for (int i = 0; i < 4; ++i)
      shown += (data[i] >= 0x20 && data[i] < 0x7f) ? static_cast<char>(data[i]) : '?';
    fail("{}: not a GGUF file: starts with \"{}\" ({:02x} {:02x} {:02x} {:02x}), expected the magic \"GGUF\"",
         source_, shown, data[0], data[1], data[2], data[3]);
  }
  c.take(4, "the magic");
  version_ = c.read<uint32_t>("the version");
  if (version_ != 2 && version_ != 3) {
    if ((version_ & 0xffffu) == 0)
      fail("{}: GGUF version {:#010x} looks byte-swapped: big-endian GGUF files are not supported", source_,
           version_);
    fail("{}: GGUF version {} is not supported, expected 2 or 3{}", source_, version_,
         version_ == 1 ? " (version 1 used 32-bit counts; reconvert the file)" : "");
  }
  const uint64_t n_tensors = c.read<uint64_t>("the tensor count");
  const uint64_t n_kv = c.read<uint64_t>("the key-value count");
  if (n_kv > c.left() / kMinKvBytes)
    fail("{}: header: {} key-value pairs cannot fit in the {} bytes that follow (each takes at least {})",
         source_, n_kv, c.left(), kMinKvBytes);

  kvs_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    c.where = fmt::format("key-value pair #{}", i);
    std::string key = c.read_string("the key");
    if (key.empty()) c.fail_here("the key is empty");
    c.where = fmt::format("key '{}'", key);
    if (kv_index_.count(key)) c.fail_here("the key appears twice");
    GgufValue value = read_value(c);
    kv_index_.emplace(key, kvs_.size());
    kvs_.emplace_back(std::move(key), std::move(value));
  }

  if (const GgufValue* a = find("general.alignment")) {
    const uint32_t* v = std::get_if<uint32_t>(a);
    if (!v) fail("{}: key 'general.alignment' has type {}, expected u32", source_, gguf_type_str(*a));
    if (*v == 0 || (*v & (*v - 1)) != 0 || *v > (1u << 30))
      fail("{}: key 'general.alignment' is {}, expected a power of two (at most 2^30)", source_, *v);
    alignment_ = *v;
  }

  if (n_tensors > c.left() / kMinTensorInfoBytes)
    fail(
        "{}: header: {} tensor infos cannot fit in the {} bytes after the key-value pairs (each takes at "
        "least {})",
        source_, n_tensors, c.left(), kMinTensorInfoBytes);
  tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    c.where = fmt::format("tensor info #{}", i);
    GgufTensor t;
    t.name = c.read_string("the tensor name");
    if (t.name.empty()) c.fail_here("the tensor name is empty");
    if (t.name.size() > kMaxTensorNameBytes)
      c.fail_here("the tensor name is {} bytes long, GGUF allows at most {}", t.name.size(),
                  kMaxTensorNameBytes);
    c.where = fmt::format("tensor '{}'", t.name);
    if (tensor_index_.count(t.name)) c.fail_here("the tensor name appears twice");
    const uint32_t n_dims = c.read<uint32_t>("n_dims");
    if (n_dims > kMaxDims) c.fail_here("{} dimensions, GGUF allows at most {}", n_dims, kMaxDims);
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.read<uint64_t>("a dimension");
      if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        c.fail_here("ne[{}] = {} is negative as a signed 64-bit count", d, ne);
      t.ne.push_back(static_cast<int64_t>(ne));
    }
    for (int64_t ne : t.ne)
      if (__builtin_mul_overflow(numel, ne, &numel))
        c.fail_here("ne {} has more than 2^63 - 1 elements", ne_string(t.ne));
    // a 0-dimensional tensor holds one element
    const uint32_t type = c.read<uint32_t>("the ggml type");
    const GgmlTypeTraits* traits = ggml_type_traits(type);
    if (!traits) c.fail_here("unknown ggml type {}", type);
    t.type = static_cast<GgmlType>(type);
    const int64_t ne0 = t.ne.empty() ? 1 : t.ne[0];
    if (ne0 % traits->block_size != 0)
      c.fail_here("type {} packs {} values per block but ne[0] = {} is not a multiple of it", traits->name,
                  traits->block_size, ne0);
    const uint64_t blocks = static_cast<uint64_t>(numel) / traits->block_size;
    if (blocks > std::numeric_limits<size_t>::max() / traits->type_size)
      c.fail_here("{} {} takes more than 2^64 bytes", traits->name, ne_string(t.ne));
    t.nbytes = static_cast<size_t>(blocks * traits->type_size);
    t.offset = c.read<uint64_t>("the data offset");
    if (t.offset % alignment_ != 0)
      c.fail_here("data offset {} is not a multiple of the alignment {}", t.offset, alignment_);
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  // The data section starts at the next aligned offset after the tensor infos.
  data_offset_ = align_up(c.pos(), alignment_);
  if (tensors_.empty()) return;
  if (data_offset_ > size)
    fail(
        "{}: the data section would start at byte {} (tensor infos end at {}, aligned to {}) but the file "
        "has {} bytes (truncated?)",
        source_, data_offset_, c.pos(), alignment_, size);
  const uint64_t data_size = size - data_offset_;
  for (GgufTensor& t : tensors_) {
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      fail(
          "{}: tensor '{}': {} {} needs {} bytes at offset {} of the data section, which has {} (truncated?)",
          source_, t.name, ggml_type_name(t.type), t.ne_str(), t.nbytes, t.offset, data_size);
    t.data = data + data_offset_ + t.offset;
  }
  // Tensors may come in any order, but two must never share bytes.
  std::vector<const GgufTensor*> by_offset;
  for (const GgufTensor& t : tensors_)
    if (t.nbytes > 0) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensor* a, const GgufTensor* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensor& prev = *by_offset[i - 1];
    if (by_offset[i]->offset < prev.offset + prev.nbytes)
      fail("{}: tensor '{}' (data at [{}, {})) overlaps tensor '{}' (data at [{}, {}))", source_,
           by_offset[i]->name, by_offset[i]->offset, by_offset[i]->offset + by_offset[i]->nbytes, prev.name,
           prev.offset, prev.offset + prev.nbytes);
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kvs_[it->second].second;
}

const GgufValue& GgufFile::require(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail("{}: missing key '{}'", source_, key);
  return *v;
}

void GgufFile::type_mismatch(const std::string& key, const GgufValue& found, const GgufValue& wanted) const {
  fail("{}: key '{}' has type {}, expected {}", source_, key, gguf_type_str(found), gguf_type_str(wanted));
}

const GgufTensor* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensor& GgufFile::tensor(const std::string& name) const {
  const GgufTensor* t = find_tensor(name);
  if (!t) fail("{}: missing tensor '{}'", source_, name);
  return *t;
}

std::vector<float> gguf_tensor_to_f32(const GgufTensor& t, const std::string& source) {
  const size_t n = static_cast<size_t>(t.numel());
  std::vector<float> out(n);
  switch (t.type) {
    case GgmlType::F32:
      if (n > 0) std::memcpy(out.data(), t.data, n * 4);
      break;
    case GgmlType::F16:
    case GgmlType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        out[i] = t.type == GgmlType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
      }
      break;
    case GgmlType::Q8_0:
      // Blocks of 32: an F16 scale d, then 32 int8 q; the value is q * d (ggml dequantize_row_q8_0).
      for (size_t b = 0; b < n / 32; ++b) {
        const uint8_t* blk = t.data + b * 34;
        uint16_t d16;
        std::memcpy(&d16, blk, 2);
        const float d = f16_to_f32(d16);
        for (size_t j = 0; j < 32; ++j)
          out[b * 32 + j] = static_cast<float>(static_cast<int8_t>(blk[2 + j])) * d;
      }
      break;
    default:
      fail("{}: tensor '{}' has type {}; only F32, F16, BF16 and Q8_0 can be read as float32", source, t.name,
           ggml_type_name(t.type));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Encoding

uint16_t f32_to_f16_bits(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) {  // NaN: keep the top mantissa bits, as numpy's float16 cast does
    const uint16_t m = static_cast<uint16_t>((a & 0x7fffffu) >> 13);
    return sign | 0x7c00u | (m == 0 ? 1 : m);
  }
  if (a >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 (or inf): rounds to infinity
  if (a < 0x38800000u) {
    // Below 2^-14: half subnormals, multiples of 2^-24. The scaling by 2^24 is exact, and
    // nearbyint rounds half to even in the default rounding mode.
    const float steps = std::nearbyint(std::bit_cast<float>(a) * 0x1p24f);
    return sign | static_cast<uint16_t>(steps);  // 1024 steps is the smallest normal: bits 0x0400
  }
  // Normal: rebias the exponent and keep 10 of 23 mantissa bits, rounding half to even; a carry
  // out of the mantissa correctly bumps the exponent.
  const uint32_t rounded = a + 0xfffu + ((a >> 13) & 1u);
  return sign | static_cast<uint16_t>((rounded - (112u << 23)) >> 13);
}

std::vector<uint8_t> gguf_encode_f32(std::span<const float> values, GgmlType type, int64_t row) {
  const size_t n = values.size();
  std::vector<uint8_t> out;
  switch (type) {
    case GgmlType::F32:
      out.resize(n * 4);
      if (n > 0) std::memcpy(out.data(), values.data(), n * 4);
      return out;
    case GgmlType::F16:
    case GgmlType::BF16:
      out.resize(n * 2);
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = type == GgmlType::F16 ? f32_to_f16_bits(values[i]) : f32_to_bf16(values[i]);
        std::memcpy(out.data() + 2 * i, &h, 2);
      }
      return out;
    case GgmlType::Q8_0: {
      BIDORA_CHECK(row > 0 && row % 32 == 0 && n % 32 == 0,
                   "GGUF: Q8_0 needs rows of a multiple of 32 values, got rows of {}", row);
      out.resize(n / 32 * 34);
      for (size_t b = 0; b < n / 32; ++b) {
        const float* x = values.data() + b * 32;
        float amax = 0.0f;
        for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::abs(x[j]));
        // float32 arithmetic throughout, as gguf-py's numpy code (and ggml's reference) does it.
        const float d = amax / 127.0f;
        const float id = d == 0.0f ? 0.0f : 1.0f / d;
        uint8_t* blk = out.data() + b * 34;
        const uint16_t d16 = f32_to_f16_bits(d);
        std::memcpy(blk, &d16, 2);
        for (size_t j = 0; j < 32; ++j)
          blk[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::round(x[j] * id)));  // half away from 0
      }
      return out;
    }
    default:
      fail("GGUF: cannot encode float32 values as {} (only F32, F16, BF16, Q8_0)", ggml_type_name(type));
  }
}

// ---------------------------------------------------------------------------------------------
// Writer

GgufWriter::GgufWriter(uint32_t alignment) : alignment_(alignment) {
  BIDORA_CHECK(alignment != 0 && (alignment & (alignment - 1)) == 0 && alignment <= (1u << 30),
               "GGUF writer: alignment {} is not a power of two (at most 2^30)", alignment);
  if (alignment != kGgufDefaultAlignment) set("general.alignment", alignment);
}

void GgufWriter::set(const std::string& key, GgufValue value) {
  BIDORA_CHECK(!key.empty(), "GGUF writer: empty key");
  if (key == "general.alignment") {
    const uint32_t* a = std::get_if<uint32_t>(&value);
    BIDORA_CHECK(a && *a == alignment_,
                 "GGUF writer: general.alignment is set by the constructor (this writer aligns to {})",
                 alignment_);
  }
  for (auto& [k, v] : kvs_)
    if (k == key) {
      v = std::move(value);
      return;
    }
  kvs_.emplace_back(key, std::move(value));
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> shape,
                            std::vector<uint8_t> bytes) {
  BIDORA_CHECK(!name.empty() && name.size() <= kGgufMaxTensorNameBytes,
               "GGUF writer: tensor name \"{}\" must be 1 to {} bytes long", name, kGgufMaxTensorNameBytes);
  BIDORA_CHECK(!shape.empty() && shape.size() <= kMaxDims,
               "GGUF writer: tensor '{}' has {} dimensions, expected 1 to {}", name, shape.size(), kMaxDims);
  const GgmlTypeTraits* traits = ggml_type_traits(static_cast<uint32_t>(type));
  BIDORA_CHECK(traits != nullptr, "GGUF writer: tensor '{}': unknown ggml type {}", name,
               static_cast<uint32_t>(type));
  int64_t numel = 1;
  for (int64_t d : shape) {
    BIDORA_CHECK(d >= 0, "GGUF writer: tensor '{}' has a negative dimension", name);
    numel *= d;
  }
  BIDORA_CHECK(shape.back() % traits->block_size == 0,
               "GGUF writer: tensor '{}': {} needs the innermost dimension to be a multiple of {}, got {}",
               name, traits->name, traits->block_size, shape.back());
  const size_t expect = static_cast<size_t>(numel / traits->block_size) * traits->type_size;
  BIDORA_CHECK(bytes.size() == expect, "GGUF writer: tensor '{}' has {} bytes, {} [{}] takes {}", name,
               bytes.size(), traits->name, fmt::join(shape, ", "), expect);
  for (const Tensor& t : tensors_) BIDORA_CHECK(t.name != name, "GGUF writer: tensor '{}' added twice", name);
  tensors_.push_back({name, type, std::move(shape), std::move(bytes)});
}

void GgufWriter::add_tensor_f32(const std::string& name, std::vector<int64_t> shape,
                                std::span<const float> values, GgmlType type) {
  BIDORA_CHECK(!shape.empty(), "GGUF writer: tensor '{}' has no dimensions", name);
  const int64_t row = shape.back();
  BIDORA_CHECK(type != GgmlType::Q8_0 || row % 32 == 0,
               "GGUF writer: tensor '{}': Q8_0 needs the innermost dimension to be a multiple of 32, got {}",
               name, row);
  add_tensor(name, type, std::move(shape), gguf_encode_f32(values, type, row));
}

std::string GgufWriter::serialize() const {
  ByteSink s;
  s.out.append("GGUF", 4);
  s.put<uint32_t>(kGgufVersion);
  s.put<uint64_t>(tensors_.size());
  s.put<uint64_t>(kvs_.size());
  for (const auto& [key, value] : kvs_) {
    s.put_string(key);
    put_value(s, value);
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    s.put_string(t.name);
    s.put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) s.put<uint64_t>(static_cast<uint64_t>(*it));
    s.put<uint32_t>(static_cast<uint32_t>(t.type));
    s.put<uint64_t>(offset);
    offset = align_up(offset + t.bytes.size(), alignment_);
  }
  // Every tensor, the last included, is padded to the alignment, as gguf-py and ggml write them.
  s.pad_to(alignment_);
  const size_t data_start = s.out.size();
  s.out.reserve(data_start + offset);
  for (const Tensor& t : tensors_) {
    s.out.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
    s.out.append(align_up(s.out.size() - data_start, alignment_) - (s.out.size() - data_start), '\0');
  }
  return std::move(s.out);
}

void GgufWriter::write(const std::string& path) const {
  write_file_atomic(path, serialize());
}

}  // namespace bidora
