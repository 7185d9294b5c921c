#include "tokenizer/pattern.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace bidora::tok {

Pattern Pattern::from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || j.size() != 1)
    fail("{}: expected {{\"String\": ...}} or {{\"Regex\": ...}}, got {}", where, j.dump().substr(0, 200));
  if (auto it = j.find("String"); it != j.end()) {
    if (!it->is_string()) fail("{}.String: expected a string", where);
    std::string s = it->get<std::string>();
    if (s.empty()) fail("{}.String: the pattern must not be empty", where);
    return literal(std::move(s));
  }
  if (auto it = j.find("Regex"); it != j.end()) {
    if (!it->is_string()) fail("{}.Regex: expected a string", where);
    Pattern p;
    p.regex_.emplace(it->get<std::string>(), where + ".Regex");
    return p;
  }
  fail("{}: expected {{\"String\": ...}} or {{\"Regex\": ...}}, got {}", where, j.dump().substr(0, 200));
}

Pattern Pattern::literal(std::string s) {
  Pattern p;
  p.literal_ = std::move(s);
  return p;
}

void Pattern::find_all(std::string_view text, std::vector<Span>& out) const {
  if (regex_) {
    regex_->find_all(text, out);
    return;
  }
  out.clear();
  size_t pos = 0;
  while ((pos = text.find(literal_, pos)) != std::string_view::npos) {
    out.emplace_back(pos, pos + literal_.size());
    pos += literal_.size();
  }
}

SplitBehavior parse_split_behavior(const std::string& s, const std::string& where) {
  if (s == "Removed") return SplitBehavior::Removed;
  if (s == "Isolated") return SplitBehavior::Isolated;
  if (s == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (s == "Contiguous") return SplitBehavior::Contiguous;
  fail(
      "{}: unknown split behavior \"{}\" (expected Removed, Isolated, MergedWithPrevious, MergedWithNext or "
      "Contiguous)",
      where, s);
}

void split_spans(size_t n, const std::vector<Span>& matches, SplitBehavior behavior, bool invert,
                 std::vector<Span>& out) {
  out.clear();
  if (n == 0) return;
  // 1. The whole text as alternating gaps and matches, each flagged.
  struct Part {
    Span span;
    bool is_match;
  };
  thread_local std::vector<Part> parts;
  parts.clear();
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev < b) parts.push_back({{prev, b}, invert});
    parts.push_back({{b, e}, !invert});
    prev = e;
  }
  if (prev < n) parts.push_back({{prev, n}, invert});

  // 2. Apply the behavior (mirrors Rust NormalizedString::split).
  auto push = [&](Span s) {
    if (s.first != s.second) out.push_back(s);
  };
  switch (behavior) {
    case SplitBehavior::Isolated:
      for (const auto& p : parts) push(p.span);
      break;
    case SplitBehavior::Removed:
      for (const auto& p : parts)
        if (!p.is_match) push(p.span);
      break;
    case SplitBehavior::Contiguous: {
      std::vector<Span> acc;
      bool previous_match = false;
      for (const auto& p : parts) {
        if (p.is_match == previous_match && !acc.empty()) {
          acc.back().second = p.span.second;
        } else {
          acc.push_back(p.span);
        }
        previous_match = p.is_match;
      }
      for (auto s : acc) push(s);
      break;
    }
    case SplitBehavior::MergedWithPrevious: {
      std::vector<Span> acc;
      bool previous_match = false;
      for (const auto& p : parts) {
        if (p.is_match && !previous_match && !acc.empty()) {
          acc.back().second = p.span.second;
        } else {
          acc.push_back(p.span);
        }
        previous_match = p.is_match;
      }
      for (auto s : acc) push(s);
      break;
    }
    case SplitBehavior::MergedWithNext: {
      std::vector<Span> acc;  // built right to left
      bool previous_match = false;
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->is_match && !previous_match && !acc.empty()) {
          acc.back().first = it->span.first;
        } else {
          acc.push_back(it->span);
        }
        previous_match = it->is_match;
      }
      for (auto it = acc.rbegin(); it != acc.rend(); ++it) push(*it);
      break;
    }
  }
}

}  // namespace bidora::tok
