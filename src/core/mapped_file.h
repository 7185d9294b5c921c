#pragma once
// Read-only memory map of a whole file. Weights that need no conversion are used in place.
#include <cstddef>
#include <cstdint>
#include <string>

namespace bidora {

class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);  // throws Error naming the path
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void release();
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Tells the kernel that the mapped bytes [p, p + n) will not be read again (they were converted
// into another form), so their page-cache pages stop counting in this process's RSS. Only whole
// pages inside the range are released; reading them again is still valid (they fault back in).
void release_mapped_range(const void* p, size_t n);

}  // namespace bidora
