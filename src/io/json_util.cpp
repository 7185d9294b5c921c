#include "io/json_util.h"

#include "core/files.h"

namespace bidora::json_util {

using nlohmann::json;

json parse(const std::string& text, const std::string& source) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    fail("{}: invalid JSON at byte {}: {}", source, e.byte, e.what());
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
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
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
