#include "data/jsonl_reader.h"

#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace bidora::data {

void BadLineLog::add(int64_t line, std::string reason) {
  ++count;
  if (first.size() < kMaxKeptBadLines) first.push_back({line, std::move(reason)});
}

JsonlReader::JsonlReader(const std::string& path, BadLinePolicy policy)
    : path_(path), policy_(policy), in_(path, std::ios::binary) {
  if (!in_) fail("cannot open data file {}: {}", path, std::strerror(errno));
}

namespace {

bool is_blank(const std::string& s) {
  return s.find_first_not_of(" \t\r\n") == std::string::npos;
}

// nlohmann's message starts with "[json.exception.parse_error.101] parse error at line 1,
// column 7: ..."; the line is ours, so keep the column and the reason only.
std::string parse_error_reason(const nlohmann::json::parse_error& e) {
  std::string what = e.what();
  auto col = what.find("column ");
  if (col != std::string::npos) return what.substr(col);
  auto colon = what.find(": ");
  return colon == std::string::npos ? what : what.substr(colon + 2);
}

}  // namespace

std::optional<Record> JsonlReader::next() {
  std::string text;
  while (std::getline(in_, text)) {
    ++line_;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (line_ == 1 && text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);
    if (is_blank(text)) {
      ++blank_;
      continue;
    }
    const std::string where = fmt::format("{}:{}", path_, line_);
    try {
      nlohmann::json value;
      try {
        value = nlohmann::json::parse(text);
      } catch (const nlohmann::json::parse_error& e) {
        fail("{}: malformed JSON at {}", where, parse_error_reason(e));
      } catch (const nlohmann::json::exception& e) {
        // A number too large for a double (1e400) is out_of_range.406, not a parse_error.
        const std::string what = e.what();
        const size_t close = what.find("] ");
        fail("{}: malformed JSON: {}", where, close == std::string::npos ? what : what.substr(close + 2));
      }
      Record r = parse_record(value, where);
      r.line = line_;
      return r;
    } catch (const Error& e) {
      if (policy_ == BadLinePolicy::Stop) throw;
      skipped_.add(line_, e.what());
    }
  }
  if (in_.bad()) fail("error reading data file {}: {}", path_, std::strerror(errno));
  return std::nullopt;
}

}  // namespace bidora::data
