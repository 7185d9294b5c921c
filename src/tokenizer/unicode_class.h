#pragma once
// Character classes used outside regexes (Digits pre-tokenizer, added-token single_word,
// lstrip/rstrip, Strip). They are read from Oniguruma's own Unicode tables so that they agree
// with what \p{N}, \w and \s mean inside the Split regexes.
#include <cstdint>

namespace bidora::tok {

bool is_numeric(char32_t cp);      // \p{N}: Nd, Nl, No (Rust char::is_numeric)
bool is_letter(char32_t cp);       // \p{L}
bool is_word_char(char32_t cp);    // \w: letters, marks, decimal digits, connector punctuation
bool is_regex_space(char32_t cp);  // \s as Oniguruma matches it

// Rust char::is_whitespace (White_Space property): what added tokens' lstrip/rstrip and the
// Strip normalizer/decoder trim.
constexpr bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

}  // namespace bidora::tok
