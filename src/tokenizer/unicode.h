#pragma once
// UTF-8 handling and Unicode normalization for the tokenizer. Text inside the tokenizer is
// always valid UTF-8 (checked once at the entry point), so the decoders here may assume it.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/utf8.h"

namespace bidora::tok {

using bidora::find_invalid_utf8;  // core/utf8.h

// Decodes the code point starting at s[i] (valid UTF-8 assumed) and advances i past it.
inline char32_t next_cp(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  auto cont = [&](size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[i + k]) & 0x3F); };
  char32_t cp;
  if (b0 < 0xE0) {
    cp = ((b0 & 0x1Fu) << 6) | cont(1);
    i += 2;
  } else if (b0 < 0xF0) {
    cp = ((b0 & 0x0Fu) << 12) | (cont(1) << 6) | cont(2);
    i += 3;
  } else {
    cp = ((b0 & 0x07u) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3);
    i += 4;
  }
  return cp;
}

// Length in bytes of the UTF-8 sequence that starts with byte b (1 for stray bytes).
inline size_t utf8_len(unsigned char b) {
  return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}

void append_utf8(std::string& out, char32_t cp);

enum class NormalForm { NFC, NFD, NFKC, NFKD };

// Unicode normalization (UAX #15) of valid UTF-8 text, with the tables of unicode_version().
std::string normalize(std::string_view s, NormalForm form);
// True when normalize(s, form) == s is guaranteed by the quick check (no allocation).
bool is_quick_normalized(std::string_view s, NormalForm form);

// Full Unicode lowercase, char by char (Rust's char::to_lowercase: no context-dependent rules
// such as the Greek final sigma).
std::string to_lower(std::string_view s);

const char* unicode_version();

}  // namespace bidora::tok
