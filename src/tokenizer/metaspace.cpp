#include "tokenizer/metaspace.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json_util.h"
#include "tokenizer/unicode.h"

namespace bidora::tok {

MetaspaceConfig parse_metaspace(const nlohmann::json& j, const std::string& where) {
  using namespace json_util;
  MetaspaceConfig c;
  c.replacement = opt_string(j, "replacement", where).value_or("\u2581");
  size_t i = 0;
  if (c.replacement.empty() || find_invalid_utf8(c.replacement))
    fail("{}: field \"replacement\" must be one character", where);
  next_cp(c.replacement, i);
  if (i != c.replacement.size())
    fail("{}: field \"replacement\" must be one character, got \"{}\"", where, c.replacement);
  if (auto s = opt_string(j, "prepend_scheme", where)) {
    if (*s == "always") {
      c.scheme = PrependScheme::Always;
    } else if (*s == "first") {
      c.scheme = PrependScheme::First;
    } else if (*s == "never") {
      c.scheme = PrependScheme::Never;
    } else {
      fail("{}: field \"prepend_scheme\" must be always, first or never, got \"{}\"", where, *s);
    }
  } else if (opt_bool(j, "add_prefix_space", where) == false) {
    c.scheme = PrependScheme::Never;  // legacy files
  }
  return c;
}

}  // namespace bidora::tok
