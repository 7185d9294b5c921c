#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/unicode.h"

namespace bidora::tok {

namespace {

struct Table {
  std::array<char32_t, 256> to_char{};
  std::array<int16_t, 0x144> to_byte{};  // every mapped code point is < U+0144
  std::array<std::string, 256> utf8;     // to_char as UTF-8, for fast appends
  Table() {
    to_byte.fill(-1);
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      to_char[b] = printable ? static_cast<char32_t>(b) : next++;
      to_byte[to_char[b]] = static_cast<int16_t>(b);
      append_utf8(utf8[b], to_char[b]);
    }
  }
};

const Table& table() {
  static const Table t;
  return t;
}

}  // namespace

char32_t byte_to_char(uint8_t b) {
  return table().to_char[b];
}

std::optional<uint8_t> char_to_byte(char32_t cp) {
  if (cp >= table().to_byte.size() || table().to_byte[cp] < 0) return std::nullopt;
  return static_cast<uint8_t>(table().to_byte[cp]);
}

void append_byte_level(std::string& out, std::string_view bytes) {
  const Table& t = table();
  for (unsigned char b : bytes) out += t.utf8[b];
}

}  // namespace bidora::tok
