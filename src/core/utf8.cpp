#include "core/utf8.h"

namespace bidora {

std::optional<size_t> find_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char b = p[i];
    if (b < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    char32_t min_cp;
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2, min_cp = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3, min_cp = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4, min_cp = 0x10000;
    } else {
      return i;  // continuation byte, C0/C1 overlong lead, or F5..FF
    }
    if (i + len > n) return i;
    char32_t cp = b & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::nullopt;
}

}  // namespace bidora
