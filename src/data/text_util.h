#pragma once
// String operations with the exact semantics of the Python/Jinja functions the chat templates
// call (str.strip(), str.lstrip('\n'), ...), so the C++ renderers reproduce them byte for byte.
#include <string>
#include <string_view>

namespace bidora::data {

// Python str.strip()/lstrip()/rstrip() without arguments (also Jinja's `trim` filter): removes
// the code points for which str.isspace() is true (ASCII \t\n\v\f\r, \x1c-\x1f, space, U+0085,
// U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000). `s` must be UTF-8.
std::string_view py_strip(std::string_view s);
std::string_view py_lstrip(std::string_view s);
std::string_view py_rstrip(std::string_view s);

// Python str.strip(chars) and friends for a set of ASCII characters.
std::string_view strip_chars(std::string_view s, std::string_view chars);
std::string_view lstrip_chars(std::string_view s, std::string_view chars);
std::string_view rstrip_chars(std::string_view s, std::string_view chars);

// Python `s.split(sep)[0]` and `s.split(sep)[-1]`: text before the first / after the last `sep`
// (the whole string when `sep` does not occur).
std::string_view before_first(std::string_view s, std::string_view sep);
std::string_view after_last(std::string_view s, std::string_view sep);

}  // namespace bidora::data
