// Text forms of configuration values: parsing (YAML scalars and flags), display, ranges and
// did-you-mean suggestions.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

#include "config/config_fields.h"

namespace bidora::config {
namespace {

std::string lower_snake(std::string_view s) {
  std::string out;
  for (char ch : s) {
    if (ch == '-') ch = '_';
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  return out;
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::string format_number(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // keep floats recognisable: 1 -> 1.0
  return s;
}

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i];
  }
  return out;
}

// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions), case-insensitive.
size_t edit_distance(std::string_view a, std::string_view b) {
  const std::string x = lower_snake(a), y = lower_snake(b);
  const size_t n = x.size(), m = y.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = x[i - 1] == y[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && x[i - 1] == y[j - 2] && x[i - 2] == y[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[n][m];
}

}  // namespace

bool Range::contains(double v) const {
  if (std::isnan(v)) return false;
  if (min && (min_exclusive ? !(v > *min) : !(v >= *min))) return false;
  if (max && (max_exclusive ? !(v < *max) : !(v <= *max))) return false;
  return true;
}

std::string Range::describe(std::string_view name) const {
  auto num = [](double v) {
    if (std::abs(v) >= 1e15 || v != std::floor(v)) return fmt::format("{}", v);
    return fmt::format("{}", static_cast<int64_t>(v));
  };
  if (min && max) {
    return fmt::format("{} {} {} {} {}", num(*min), min_exclusive ? "<" : "<=", name,
                       max_exclusive ? "<" : "<=", num(*max));
  }
  if (min) return fmt::format("{} {} {}", name, min_exclusive ? ">" : ">=", num(*min));
  if (max) return fmt::format("{} {} {}", name, max_exclusive ? "<" : "<=", num(*max));
  return "any value";
}

std::string expected_type(const FieldInfo& f) {
  switch (f.type) {
    case FieldType::Int:
      return "an integer";
    case FieldType::Float:
      return "a number";
    case FieldType::Bool:
      return "true or false";
    case FieldType::String:
      return "a string";
    case FieldType::Enum:
      return "one of " + join(f.choices, ", ");
    case FieldType::List:
      return "a list of " + join(f.choices, ", ") +
             " (short names q, k, v, o, gate, up, down, or all-linear)";
  }
  return "?";
}

std::optional<std::string> did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (const auto& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  // Close enough to be a typo: a third of the word's length, at least 1 and at most 3 edits.
  const size_t limit = std::clamp<size_t>(word.size() / 3, 1, 3);
  if (!best || best_d > limit || best_d == 0) return std::nullopt;
  return best;
}

std::optional<FieldValue> parse_list(const FieldInfo& f, const std::vector<std::string>& items,
                                     std::string& problem) {
  // Targets: canonical *_proj names, their short forms, or all-linear; stored in block order.
  std::vector<bool> chosen(f.choices.size(), false);
  for (const auto& raw : items) {
    const std::string item = lower_snake(trim(raw));
    if (item.empty()) continue;
    if (item == "all_linear" || item == "all") {
      std::fill(chosen.begin(), chosen.end(), true);
      continue;
    }
    bool found = false;
    for (size_t i = 0; i < f.choices.size(); ++i) {
      const std::string& c = f.choices[i];
      const std::string short_name = c.substr(0, c.find("_proj"));
      if (item == c || item == short_name) {
        chosen[i] = true;
        found = true;
      }
    }
    if (!found) {
      problem = fmt::format("unknown module '{}': expected {}", trim(raw), expected_type(f));
      std::vector<std::string> all = f.choices;
      if (auto s = did_you_mean(item, all)) problem += fmt::format(" (did you mean '{}'?)", *s);
      return std::nullopt;
    }
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < f.choices.size(); ++i) {
    if (chosen[i]) out.push_back(f.choices[i]);
  }
  return FieldValue{std::move(out)};
}

std::optional<FieldValue> parse_value(const FieldInfo& f, std::string_view raw, std::string& problem) {
  const std::string text = trim(raw);
  auto bad = [&](const std::string& extra = "") -> std::optional<FieldValue> {
    problem = fmt::format("expected {}, got '{}'{}", expected_type(f), text, extra);
    return std::nullopt;
  };
  switch (f.type) {
    case FieldType::Int: {
      std::string_view t = text;
      if (!t.empty() && t.front() == '+') t.remove_prefix(1);
      int64_t v = 0;
      auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
      if (t.empty() || ec != std::errc() || p != t.data() + t.size()) return bad();
      return std::optional<FieldValue>(std::in_place, std::in_place_type<int64_t>, v);
    }
    case FieldType::Float: {
      std::string_view t = text;
      if (!t.empty() && t.front() == '+') t.remove_prefix(1);
      double v = 0;
      auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
      if (t.empty() || ec != std::errc() || p != t.data() + t.size() || !std::isfinite(v)) return bad();
      return std::optional<FieldValue>(std::in_place, std::in_place_type<double>, v);
    }
    case FieldType::Bool: {
      const std::string t = lower_snake(text);
      if (t == "true" || t == "yes" || t == "on" || t == "1")
        return std::optional<FieldValue>(std::in_place, true);
      if (t == "false" || t == "no" || t == "off" || t == "0")
        return std::optional<FieldValue>(std::in_place, false);
      return bad();
    }
    case FieldType::String:
      return FieldValue{std::string(raw)};
    case FieldType::Enum: {
      const std::string t = lower_snake(text);
      if (auto canonical = f.canonical(t)) return FieldValue{*canonical};
      if (auto s = did_you_mean(t, f.choices)) return bad(fmt::format(" (did you mean '{}'?)", *s));
      return bad();
    }
    case FieldType::List: {
      std::vector<std::string> items;
      size_t start = 0;
      while (start <= text.size()) {
        size_t comma = text.find(',', start);
        if (comma == std::string::npos) comma = text.size();
        items.push_back(text.substr(start, comma - start));
        start = comma + 1;
      }
      return parse_list(f, items, problem);
    }
  }
  return bad();
}

std::string format_value(const FieldValue& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, int64_t>) {
          return std::to_string(x);
        } else if constexpr (std::is_same_v<T, double>) {
          return format_number(x);
        } else if constexpr (std::is_same_v<T, bool>) {
          return x ? "true" : "false";
        } else if constexpr (std::is_same_v<T, std::string>) {
          return x;
        } else {
          return join(x, ", ");
        }
      },
      v);
}

}  // namespace bidora::config
