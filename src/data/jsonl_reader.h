#pragma once
// Streams a JSONL file one record at a time. Every problem is reported as "path:line: reason";
// with BadLinePolicy::Skip the offending line is counted and remembered instead of stopping.
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "data/record.h"

namespace bidora::data {

enum class BadLinePolicy { Stop, Skip };

struct BadLine {
  int64_t line = 0;
  std::string reason;  // full message, starting with "path:line:"
};

// Skipped lines: all are counted, the first kMaxKeptBadLines are kept with their reason.
struct BadLineLog {
  static constexpr size_t kMaxKeptBadLines = 20;
  int64_t count = 0;
  std::vector<BadLine> first;
  void add(int64_t line, std::string reason);
};

class JsonlReader {
 public:
  // Opens `path`; throws bidora::Error when it cannot be read.
  JsonlReader(const std::string& path, BadLinePolicy policy);

  // The next valid record, or nullopt at the end of the file. Blank lines are ignored; a UTF-8
  // byte-order mark on the first line and "\r\n" line ends are accepted.
  std::optional<Record> next();

  const std::string& path() const { return path_; }
  int64_t lines_read() const { return line_; }
  int64_t blank_lines() const { return blank_; }
  BadLinePolicy policy() const { return policy_; }
  // Lines skipped under BadLinePolicy::Skip (later stages add their own rejections here too).
  BadLineLog& skipped() { return skipped_; }
  const BadLineLog& skipped() const { return skipped_; }

 private:
  std::string path_;
  BadLinePolicy policy_;
  std::ifstream in_;
  int64_t line_ = 0;
  int64_t blank_ = 0;
  BadLineLog skipped_;
};

}  // namespace bidora::data
