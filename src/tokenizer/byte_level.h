#pragma once
// The GPT-2 byte <-> char table of byte-level BPE (ByteLevel pre-tokenizer and decoder): every
// byte is shown as a printable code point so that vocabularies are plain strings ("Ġworld").
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bidora::tok {

// Code point standing for byte b: printable Latin-1 bytes map to themselves, the other 68
// bytes (0x00-0x20, 0x7F-0xA0, 0xAD) in increasing order to U+0100..U+0143.
char32_t byte_to_char(uint8_t b);
// Inverse, nullopt for code points outside the table.
std::optional<uint8_t> char_to_byte(char32_t cp);

// Appends the byte-level form of `bytes` (each byte -> its char, UTF-8 encoded) to out.
void append_byte_level(std::string& out, std::string_view bytes);

}  // namespace bidora::tok
