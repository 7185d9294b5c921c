#pragma once
// Checked access to JSON read from untrusted files: every error names the file and the field.
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"

namespace bidora::json_util {

// Parses `text`; a syntax error names `source` and the byte position.
nlohmann::json parse(const std::string& text, const std::string& source);
nlohmann::json parse_file(const std::string& path);

// Typed getters. `source` is the file, `field` the key path shown to the user.
const nlohmann::json& require(const nlohmann::json& obj, const char* key, const std::string& source);
int64_t get_int(const nlohmann::json& obj, const char* key, const std::string& source);
double get_number(const nlohmann::json& obj, const char* key, const std::string& source);
std::string get_string(const nlohmann::json& obj, const char* key, const std::string& source);
bool get_bool(const nlohmann::json& obj, const char* key, const std::string& source);

// Optional variants: nullopt when the key is absent or null; a wrong type is still an error.
std::optional<int64_t> opt_int(const nlohmann::json& obj, const char* key, const std::string& source);
std::optional<double> opt_number(const nlohmann::json& obj, const char* key, const std::string& source);
std::optional<std::string> opt_string(const nlohmann::json& obj, const char* key, const std::string& source);
std::optional<bool> opt_bool(const nlohmann::json& obj, const char* key, const std::string& source);

}  // namespace bidora::json_util
