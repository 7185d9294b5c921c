#include "io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "core/half.h"

namespace bidora {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference reader's limit

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Reads a non-negative integer that fits in 48 bits (the schema's limit), else fails.
uint64_t as_offset(const nlohmann::json& v, const std::string& path, const std::string& name,
                   const char* what) {
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
    fail("{}: tensor '{}': {} must be a non-negative integer, got {}", path, name, what, v.dump());
  uint64_t x = v.get<uint64_t>();
  if (x >= (uint64_t{1} << 48)) fail("{}: tensor '{}': {} {} exceeds 2^48", path, name, what, x);
  return x;
}

// The reference writer's data order: dtype descending by enum order (larger alignment first),
// then name ascending.
bool before_in_file(DType a_dtype, const std::string& a_name, DType b_dtype, const std::string& b_name) {
  if (a_dtype != b_dtype) return dtype_rank(a_dtype) > dtype_rank(b_dtype);
  return a_name < b_name;
}

// The 8-byte length and the JSON header (space-padded to a multiple of 8 bytes, as the Rust
// writer aligns the data section) for tensors already in file order.
struct HeaderEntry {
  const std::string& name;
  DType dtype;
  const std::vector<int64_t>& shape;
  uint64_t nbytes;
};
std::string header_bytes(const std::vector<HeaderEntry>& order,
                         const std::map<std::string, std::string>& md) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!md.empty()) header["__metadata__"] = md;
  uint64_t offset = 0;
  for (const HeaderEntry& e : order) {
    nlohmann::ordered_json t;
    t["dtype"] = dtype_name(e.dtype);
    t["shape"] = e.shape;
    t["data_offsets"] = {offset, offset + e.nbytes};
    header[e.name] = std::move(t);
    offset += e.nbytes;
  }
  std::string json = header.dump();
  while (json.size() % 8 != 0) json.push_back(' ');
  std::string out;
  out.reserve(8 + json.size());
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += json;
  return out;
}

size_t numel_bytes(const std::vector<int64_t>& shape, DType dtype) {
  size_t n = dtype_size(dtype);
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::shape_str() const {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

SafetensorsFile::SafetensorsFile(const std::string& path) : source_(path), file_(path) {
  parse(file_.data(), file_.size());
}

SafetensorsFile SafetensorsFile::from_bytes(std::string bytes, const std::string& source) {
  SafetensorsFile f;
  f.source_ = source;
  f.bytes_ = std::make_unique<const std::string>(std::move(bytes));
  f.parse(reinterpret_cast<const uint8_t*>(f.bytes_->data()), f.bytes_->size());
  return f;
}

void SafetensorsFile::parse(const uint8_t* data, size_t size) {
  const std::string& path = source_;
  if (size < 8)
    fail("{}: not a safetensors file: {} bytes, need at least the 8-byte header length", path, size);
  const uint64_t n = read_u64_le(data);
  if (n > kMaxHeaderBytes)
    fail("{}: header length {} exceeds the limit of {} bytes", path, n, kMaxHeaderBytes);
  if (n > size - 8) fail("{}: truncated: header length {} but only {} bytes follow", path, n, size - 8);
  const char* hdr = reinterpret_cast<const char*>(data + 8);
  const uint8_t* buffer = data + 8 + n;
  const uint64_t buffer_size = size - 8 - n;

  // Duplicate keys are an error in the reference reader; nlohmann silently keeps the last, so
  // watch the top-level keys while parsing.
  std::set<std::string> seen;
  std::string duplicate;
  auto on_event = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    if (depth == 1 && ev == nlohmann::json::parse_event_t::key) {
      auto key = parsed.get<std::string>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(hdr, hdr + n, on_event);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: header is not valid JSON: {}", path, e.what());
  }
  if (!duplicate.empty()) fail("{}: header has the key '{}' twice", path, duplicate);
  if (!header.is_object()) fail("{}: header must be a JSON object", path);

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail("{}: __metadata__ must be an object of strings", path);
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail("{}: __metadata__ field '{}' must be a string", path, m.key());
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) fail("{}: tensor '{}': entry must be an object", path, name);
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) fail("{}: tensor '{}': missing string field 'dtype'", path, name);
    if (sh == v.end() || !sh->is_array()) fail("{}: tensor '{}': missing array field 'shape'", path, name);
    if (off == v.end() || !off->is_array() || off->size() != 2)
      fail("{}: tensor '{}': 'data_offsets' must be [begin, end]", path, name);

    TensorView t;
    t.name = name;
    auto dtype = dtype_from_string(dt->get<std::string>());
    if (!dtype) fail("{}: tensor '{}': unsupported dtype '{}'", path, name, dt->get<std::string>());
    t.dtype = *dtype;
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      uint64_t dim = as_offset(d, path, name, "a shape dimension");
      if (dim != 0 && numel > (uint64_t{1} << 48) / dim)
        fail("{}: tensor '{}': shape is too large", path, name);
      numel *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    const uint64_t begin = as_offset((*off)[0], path, name, "data_offsets[0]");
    const uint64_t end = as_offset((*off)[1], path, name, "data_offsets[1]");
    if (end < begin) fail("{}: tensor '{}': data_offsets end {} < begin {}", path, name, end, begin);
    const uint64_t expect = numel * dtype_size(t.dtype);
    if (end - begin != expect)
      fail("{}: tensor '{}': {} {} holds {} bytes but data_offsets span {}", path, name, dtype_name(t.dtype),
           t.shape_str(), expect, end - begin);
    if (end > buffer_size)
      fail("{}: tensor '{}': data_offsets [{}, {}] run past the end of the data ({} bytes); file truncated?",
           path, name, begin, end, buffer_size);
    t.data = buffer + begin;
    t.nbytes = static_cast<size_t>(expect);
    tensors_.push_back(std::move(t));
  }

  // Entries must tile the data buffer exactly: no holes, no overlaps, nothing after the last.
  std::sort(tensors_.begin(), tensors_.end(), [](const TensorView& a, const TensorView& b) {
    return a.data != b.data ? a.data < b.data : a.nbytes < b.nbytes;
  });
  uint64_t pos = 0;
  for (const auto& t : tensors_) {
    const uint64_t begin = static_cast<uint64_t>(t.data - buffer);
    if (begin != pos)
      fail("{}: tensor '{}' begins at byte {} of the data but the previous tensor ends at {} ({})", path,
           t.name, begin, pos, begin > pos ? "hole" : "overlap");
    pos = begin + t.nbytes;
  }
  if (pos != buffer_size)
    fail("{}: data section is {} bytes but the tensors cover {} (trailing or missing bytes)", path,
         buffer_size, pos);
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorView& SafetensorsFile::get(const std::string& name) const {
  const TensorView* t = find(name);
  if (!t) fail("{}: missing tensor '{}'", path(), name);
  return *t;
}

void tensor_to_f32(const TensorView& t, float* out, const std::string& source) {
  const size_t n = static_cast<size_t>(t.numel());
  switch (t.dtype) {
    case DType::F32:
      // An empty tensor may come with out == nullptr (an empty vector's data()): memcpy must not
      // see it even for 0 bytes.
      if (n > 0) std::memcpy(out, t.data, n * 4);
      return;
    case DType::BF16:
    case DType::F16: {
      // The mapping may not be 2-byte aligned in principle; copy through a small aligned buffer.
      constexpr size_t kChunk = 4096;
      uint16_t tmp[kChunk];
      for (size_t i = 0; i < n; i += kChunk) {
        const size_t m = std::min(kChunk, n - i);
        std::memcpy(tmp, t.data + 2 * i, 2 * m);
        if (t.dtype == DType::BF16)
          bf16_to_f32_n(tmp, out + i, m);
        else
          f16_to_f32_n(tmp, out + i, m);
      }
      return;
    }
    default:
      fail("{}: tensor '{}' has dtype {}, expected a floating type (F32, BF16 or F16)", source, t.name,
           dtype_name(t.dtype));
  }
}

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape,
                            std::span<const uint8_t> bytes) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  BIDORA_CHECK(static_cast<size_t>(numel) * dtype_size(dtype) == bytes.size(),
               "safetensors writer: tensor '{}' has {} bytes, expected {}", name, bytes.size(),
               static_cast<size_t>(numel) * dtype_size(dtype));
  for (const auto& e : entries_)
    BIDORA_CHECK(e.name != name, "safetensors writer: tensor '{}' added twice", name);
  entries_.push_back({name, dtype, std::move(shape), std::vector<uint8_t>(bytes.begin(), bytes.end())});
}

void SafetensorsWriter::add_f32(const std::string& name, std::vector<int64_t> shape,
                                std::span<const float> values) {
  add(name, DType::F32, std::move(shape),
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(values.data()), values.size_bytes()));
}

std::string SafetensorsWriter::serialize() const {
  std::vector<const Entry*> order;
  for (const auto& e : entries_) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return before_in_file(a->dtype, a->name, b->dtype, b->name);
  });
  std::vector<HeaderEntry> items;
  uint64_t data = 0;
  for (const Entry* e : order) {
    items.push_back({e->name, e->dtype, e->shape, e->bytes.size()});
    data += e->bytes.size();
  }
  std::string out = header_bytes(items, metadata_);
  out.reserve(out.size() + data);
  for (const Entry* e : order) out.append(reinterpret_cast<const char*>(e->bytes.data()), e->bytes.size());
  return out;
}

void SafetensorsWriter::write(const std::string& path) const {
  write_file_atomic(path, serialize());
}

size_t SafetensorsStreamWriter::Entry::nbytes() const {
  return numel_bytes(shape, dtype);
}

SafetensorsStreamWriter::SafetensorsStreamWriter(std::string path, std::vector<Entry> tensors,
                                                 std::map<std::string, std::string> metadata)
    : path_(std::move(path)), order_(std::move(tensors)) {
  std::sort(order_.begin(), order_.end(),
            [](const Entry& a, const Entry& b) { return before_in_file(a.dtype, a.name, b.dtype, b.name); });
  std::set<std::string> names;
  std::vector<HeaderEntry> items;
  for (const Entry& e : order_) {
    BIDORA_CHECK(names.insert(e.name).second, "{}: tensor '{}' declared twice", path_, e.name);
    BIDORA_CHECK(e.name != "__metadata__", "{}: '__metadata__' is not a tensor name", path_);
    items.push_back({e.name, e.dtype, e.shape, e.nbytes()});
    data_bytes_ += e.nbytes();
    ends_.push_back(data_bytes_);
  }
  const std::string header = header_bytes(items, metadata);
  header_bytes_ = header.size();
  tmp_ = path_ + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("{}: cannot create: {}", tmp_, std::strerror(errno));
  write_all(header.data(), header.size());
}

SafetensorsStreamWriter::~SafetensorsStreamWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_ && !tmp_.empty()) ::unlink(tmp_.c_str());
}

void SafetensorsStreamWriter::write_all(const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd_, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("{}: write failed: {}", path_, std::strerror(errno));
    }
    c += w;
    n -= static_cast<size_t>(w);
  }
}

void SafetensorsStreamWriter::append(const std::string& name, std::span<const uint8_t> bytes) {
  BIDORA_CHECK(!finished_, "{}: append after finish", path_);
  // Skip zero-byte tensors the data has already passed (they occupy no bytes).
  while (current_ < order_.size() && written_ == ends_[current_] && order_[current_].name != name) ++current_;
  BIDORA_CHECK(current_ < order_.size() && order_[current_].name == name,
               "{}: data for tensor '{}' out of order (expected '{}')", path_, name,
               current_ < order_.size() ? order_[current_].name : std::string("nothing: all written"));
  BIDORA_CHECK(
      written_ + bytes.size() <= ends_[current_], "{}: tensor '{}' ({} {}) gets {} bytes past its end", path_,
      name, dtype_name(order_[current_].dtype), fmt::format("[{}]", fmt::join(order_[current_].shape, ", ")),
      written_ + bytes.size() - ends_[current_]);
  write_all(bytes.data(), bytes.size());
  written_ += bytes.size();
}

void SafetensorsStreamWriter::finish() {
  BIDORA_CHECK(!finished_, "{}: finished twice", path_);
  if (written_ != data_bytes_) {
    while (current_ < order_.size() && written_ == ends_[current_]) ++current_;
    fail("{}: only {} of {} data bytes written (tensor '{}' incomplete)", path_, written_, data_bytes_,
         current_ < order_.size() ? order_[current_].name : std::string("?"));
  }
  if (::fsync(fd_) != 0) fail("{}: fsync failed: {}", path_, std::strerror(errno));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("{}: close failed: {}", path_, std::strerror(errno));
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("{}: rename failed: {}", path_, std::strerror(errno));
  finished_ = true;
}

}  // namespace bidora
