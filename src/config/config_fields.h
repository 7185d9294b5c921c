#pragma once
// One table describing every configuration field: its path, type, allowed values, help text and
// command-line flags. YAML loading, validation, to_yaml/to_json, the CLI options and
// `bidora config` are all driven by it, so a field added here is handled everywhere.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config/train_config.h"

namespace bidora::config {

enum class FieldType { Int, Float, Bool, String, Enum, List };

// Enum values travel as their canonical name; lists as canonical item names.
using FieldValue = std::variant<int64_t, double, bool, std::string, std::vector<std::string>>;

// An allowed numeric range; either end may be open (exclusive) or absent.
struct Range {
  std::optional<double> min, max;
  bool min_exclusive = false, max_exclusive = false;
  bool contains(double v) const;
  // "0 < learning_rate <= 1", "r >= 1", ...
  std::string describe(std::string_view name) const;
};

struct FieldInfo {
  std::string path;  // "training.learning_rate"
  FieldType type = FieldType::String;
  std::string help;
  std::string flags;  // CLI11 names, e.g. "--lr,--learning-rate"; bools also get "--no-..." forms
  Range range;        // Int and Float
  std::vector<std::string> choices;  // Enum: canonical names; List: allowed canonical items
  std::vector<std::string> aliases;  // other YAML keys accepted (the Python original's names)
  // String fields: the value a bare flag takes (e.g. "--resume" alone means "latest"); empty:
  // the flag needs a value.
  std::string implicit_value;
  std::function<FieldValue(const TrainConfig&)> get;
  std::function<void(TrainConfig&, const FieldValue&)> set;
  // Enum: the canonical name for an accepted spelling (already lower-cased, '-' -> '_').
  std::function<std::optional<std::string>(const std::string&)> canonical;

  std::string key() const;     // last path component: "learning_rate"
  std::string parent() const;  // path without the key: "training" or "training.bidora"
};

const std::vector<FieldInfo>& config_fields();
const FieldInfo* find_field(std::string_view path);
// Sub-sections that hold fields: "model", ..., "training.bidora".
const std::vector<std::string>& config_sections();

// Parses `text` as a value of `f`. On failure returns nullopt and sets `problem` to what was
// expected, e.g. "expected an integer, got 'four'".
std::optional<FieldValue> parse_value(const FieldInfo& f, std::string_view text, std::string& problem);
// A list field from several items (a YAML sequence or repeated flags).
std::optional<FieldValue> parse_list(const FieldInfo& f, const std::vector<std::string>& items,
                                     std::string& problem);

// Display form of a value: numbers in shortest round-trip form, lists comma-separated.
std::string format_value(const FieldValue& v);
// "an integer", "a number", "true or false", "a string", "one of lora, dora, bidora", ...
std::string expected_type(const FieldInfo& f);

// The closest of `candidates` to `word` by edit distance, if close enough to be a likely typo.
std::optional<std::string> did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace bidora::config
