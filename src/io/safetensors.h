#pragma once
// safetensors files: a strict, bounds-checked memory-mapped reader and a writer that produces
// the same bytes as the reference Rust implementation (shared/reference/formats.md §1).
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "io/dtype.h"

namespace bidora {

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // points into the mapped file
  size_t nbytes = 0;
  int64_t numel() const;
  std::string shape_str() const;  // "[896, 4864]"
};

class SafetensorsFile {
 public:
  // Maps the file and validates the whole header; throws Error naming the file (and tensor).
  explicit SafetensorsFile(const std::string& path);
  // The same over bytes in memory (fuzzing: out-of-bounds reads of a heap buffer are caught by
  // ASan, those past a mapping are not); `source` names them in error messages.
  static SafetensorsFile from_bytes(std::string bytes, const std::string& source);
  const std::string& path() const { return source_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }  // in data-offset order
  const TensorView* find(const std::string& name) const;               // nullptr when absent
  // Like find, but a missing tensor, or one whose dtype/shape differ from the expectation, is an
  // error naming the file and the tensor.
  const TensorView& get(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  void parse(const uint8_t* data, size_t size);

  std::string source_;
  MappedFile file_;
  std::unique_ptr<const std::string> bytes_;  // from_bytes
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Converts any floating tensor (F32/BF16/F16) to float32; `out` must hold numel() floats.
void tensor_to_f32(const TensorView& t, float* out, const std::string& source);

class SafetensorsWriter {
 public:
  // The data is copied; shape in PyTorch order.
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, std::span<const uint8_t> bytes);
  void add_f32(const std::string& name, std::vector<int64_t> shape, std::span<const float> values);
  void set_metadata(std::map<std::string, std::string> md) { metadata_ = std::move(md); }
  std::string serialize() const;
  void write(const std::string& path) const;  // atomic: temp file + rename

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_{{"format", "pt"}};
};

// Writes one safetensors file tensor by tensor without holding all the data in memory (merged
// models, where every tensor is produced just before it is written). All names, dtypes and shapes
// are given up front, so the header with every offset goes first; the data then follows in
// order(), which is SafetensorsWriter's order (same header, same bytes as SafetensorsWriter for
// the same tensors). The file is written as "<path>.tmp.<pid>" and renamed by finish(); a writer
// destroyed before finish() removes its temporary file, so no half-written file is left at path.
class SafetensorsStreamWriter {
 public:
  struct Entry {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    size_t nbytes() const;
  };
  SafetensorsStreamWriter(std::string path, std::vector<Entry> tensors,
                          std::map<std::string, std::string> metadata = {{"format", "pt"}});
  ~SafetensorsStreamWriter();
  SafetensorsStreamWriter(const SafetensorsStreamWriter&) = delete;
  SafetensorsStreamWriter& operator=(const SafetensorsStreamWriter&) = delete;

  // The order in which append() expects the tensors' data.
  const std::vector<Entry>& order() const { return order_; }
  // Appends the next bytes of tensor `name`, which must be the tensor the data has reached (a
  // tensor may come in several chunks, never past its end). Error naming the file otherwise.
  void append(const std::string& name, std::span<const uint8_t> bytes);
  // Checks that every tensor is complete, fsyncs and renames the file into place.
  void finish();
  // Header + data bytes of the finished file.
  uint64_t file_size() const { return header_bytes_ + data_bytes_; }

 private:
  void write_all(const void* p, size_t n);

  std::string path_, tmp_;
  int fd_ = -1;
  std::vector<Entry> order_;
  std::vector<uint64_t> ends_;  // end offset of each tensor of order_ in the data section
  uint64_t header_bytes_ = 0, data_bytes_ = 0, written_ = 0;
  size_t current_ = 0;  // index in order_ of the tensor the data has reached
  bool finished_ = false;
};

}  // namespace bidora
