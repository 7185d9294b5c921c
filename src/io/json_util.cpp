#include "io/json_util.h"

#include <cmath>
#include <cstdint>

#include "core/files.h"

namespace bidora::json_util {

using nlohmann::json;

json parse(const std::string& text, const std::string& source) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    fail("{}: invalid JSON at byte {}: {}", source, e.byte, e.what());
  } catch (const json::exception& e) {
    // Not only syntax: a number too large for a double (1e400) is out_of_range.406.
    fail("{}: invalid JSON: {}", source, e.what());
  }
}

json parse_file(const std::string& path) {
  return parse(read_file(path), path);
}

const json& require(const json& obj, const char* key, const std::string& source) {
  if (!obj.is_object()) fail("{}: expected a JSON object", source);
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) fail("{}: missing required field \"{}\"", source, key);
  return *it;
}

namespace {
const json* find_opt(const json& obj, const char* key, const std::string& source) {
  if (!obj.is_object()) fail("{}: expected a JSON object", source);
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}
int64_t as_int(const json& v, const char* key, const std::string& source) {
  // An unsigned value past INT64_MAX would wrap to a negative number.
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    fail("{}: field \"{}\" is out of the 64-bit integer range: {}", source, key, v.dump());
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    // 4.0 is accepted as 4. The range check comes first: converting a double outside int64's range
    // (1e300) is undefined behaviour. 2^63 is exact as a double and the first value outside.
    const double d = v.get<double>();
    constexpr double kTwo63 = 9223372036854775808.0;
    if (d >= -kTwo63 && d < kTwo63 && d == std::trunc(d)) return static_cast<int64_t>(d);
  }
  fail("{}: field \"{}\" must be an integer, got {}", source, key, v.dump());
}
double as_number(const json& v, const char* key, const std::string& source) {
  if (v.is_number()) return v.get<double>();
  fail("{}: field \"{}\" must be a number, got {}", source, key, v.dump());
}
std::string as_string(const json& v, const char* key, const std::string& source) {
  if (v.is_string()) return v.get<std::string>();
  fail("{}: field \"{}\" must be a string, got {}", source, key, v.dump());
}
bool as_bool(const json& v, const char* key, const std::string& source) {
  if (v.is_boolean()) return v.get<bool>();
  fail("{}: field \"{}\" must be true or false, got {}", source, key, v.dump());
}
}  // namespace

int64_t get_int(const json& obj, const char* key, const std::string& source) {
  return as_int(require(obj, key, source), key, source);
}
double get_number(const json& obj, const char* key, const std::string& source) {
  return as_number(require(obj, key, source), key, source);
}
std::string get_string(const json& obj, const char* key, const std::string& source) {
  return as_string(require(obj, key, source), key, source);
}
bool get_bool(const json& obj, const char* key, const std::string& source) {
  return as_bool(require(obj, key, source), key, source);
}
std::optional<int64_t> opt_int(const json& obj, const char* key, const std::string& source) {
  const json* v = find_opt(obj, key, source);
  return v ? std::optional(as_int(*v, key, source)) : std::nullopt;
}
std::optional<double> opt_number(const json& obj, const char* key, const std::string& source) {
  const json* v = find_opt(obj, key, source);
  return v ? std::optional(as_number(*v, key, source)) : std::nullopt;
}
std::optional<std::string> opt_string(const json& obj, const char* key, const std::string& source) {
  const json* v = find_opt(obj, key, source);
  return v ? std::optional(as_string(*v, key, source)) : std::nullopt;
}
std::optional<bool> opt_bool(const json& obj, const char* key, const std::string& source) {
  const json* v = find_opt(obj, key, source);
  return v ? std::optional(as_bool(*v, key, source)) : std::nullopt;
}

}  // namespace bidora::json_util
