#pragma once
// The `pattern` field of Split / Replace: {"String": literal} or {"Regex": oniguruma pattern}.
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/regex.h"

namespace bidora::tok {

using Span = std::pair<size_t, size_t>;  // [begin, end) byte offsets

class Pattern {
 public:
  // `where` names the JSON location for error messages, e.g. "tokenizer.json: normalizer.pattern".
  static Pattern from_json(const nlohmann::json& j, const std::string& where);
  static Pattern literal(std::string s);

  // Non-overlapping matches, left to right.
  void find_all(std::string_view text, std::vector<Span>& out) const;

 private:
  std::string literal_;
  std::optional<Regex> regex_;
};

// How a split treats the matches of its pattern (Rust SplitDelimiterBehavior).
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
SplitBehavior parse_split_behavior(const std::string& s, const std::string& where);

// Cuts `text` (of length n) into the pieces a split with these matches produces; empty pieces
// are dropped, as in Rust's PreTokenizedString::split. `invert` flips which spans are matches.
void split_spans(size_t n, const std::vector<Span>& matches, SplitBehavior behavior, bool invert,
                 std::vector<Span>& out);

}  // namespace bidora::tok
