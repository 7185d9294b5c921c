#include "core/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/fault_injection.h"

namespace bidora {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open: {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("{}: read error", path);
  return ss.str();
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  // Test hook (fault_injection.h): half of the bytes reach the disk, then the disk is full.
  const bool disk_full = fault::reached("write_enospc");
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot create: {}", tmp, std::strerror(errno));
  auto abort_with = [&](const char* what) {
    int e = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    fail("{}: {}: {}", path, what, std::strerror(e));
  };
  const size_t end = disk_full ? bytes.size() / 2 : bytes.size();
  size_t done = 0;
  while (done < end) {
    ssize_t w = ::write(fd, bytes.data() + done, end - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      abort_with("write failed");
    }
    done += static_cast<size_t>(w);
  }
  if (disk_full) {
    errno = ENOSPC;
    abort_with("write failed");
  }
  if (::fsync(fd) != 0) abort_with("fsync failed");
  if (::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail("{}: close failed: {}", path, std::strerror(e));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail("{}: rename failed: {}", path, std::strerror(e));
  }
}

void append_file_synced(const std::string& path, std::string_view bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot open for appending: {}", path, std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      fail("{}: append failed: {}", path, std::strerror(e));
    }
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) fail("{}: fsync failed: {}", path, std::strerror(errno));
}

void sync_directory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

void replace_directory(const std::string& dir, const std::function<void(const std::string& tmp_dir)>& fill) {
  namespace fs = std::filesystem;
  fs::path target = fs::path(dir).lexically_normal();
  if (target.filename().empty()) target = target.parent_path();  // "out/adapter/" names "out/adapter"
  BIDORA_CHECK(!target.empty(), "output directory \"{}\" is not a directory name", dir);
  const fs::path tmp = target.string() + ".tmp." + std::to_string(::getpid());
  const fs::path old = target.string() + ".old." + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  BIDORA_CHECK(!ec, "{}: cannot create directory: {}", tmp.string(), ec.message());
  try {
    fill(tmp.string());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  sync_directory(tmp.string());
  // rename cannot replace a non-empty directory: move the previous one aside first.
  const bool had_old = fs::exists(target);
  if (had_old) {
    fs::rename(target, old, ec);
    if (ec) {
      const std::string why = ec.message();
      fs::remove_all(tmp, ec);
      fail("{}: cannot move the previous directory aside: {}", target.string(), why);
    }
  }
  fs::rename(tmp, target, ec);
  if (ec) {
    const std::string why = ec.message();
    if (had_old) fs::rename(old, target, ec);
    fs::remove_all(tmp, ec);
    fail("{}: cannot move the new directory into place: {}", target.string(), why);
  }
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  sync_directory(parent.string());
  if (had_old) fs::remove_all(old, ec);
}

}  // namespace bidora
