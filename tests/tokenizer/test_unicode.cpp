// Unicode normalization against Python's unicodedata (goldens from
// tests/reference/tokenizer/gen_unicode_goldens.py), UTF-8 validation, and the byte-level table.
#include <gtest/gtest.h>

#include "io/json_util.h"
#include "test_support.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/unicode.h"
#include "tokenizer/unicode_class.h"

namespace bidora::tok {
namespace {

TEST(Normalization, MatchesPythonUnicodedataOnEveryTableEntry) {
  const auto j = json_util::parse_file(test::fixture_dir() + "/tokenizer/unicode_normalization.json");
  EXPECT_EQ(j.at("unicode_version").get<std::string>(), unicode_version());
  const auto& cases = j.at("cases");
  ASSERT_GT(cases.size(), 3000u);
  int failures = 0;
  for (const auto& c : cases) {
    const std::string in = c[0];
    const std::string expect[] = {c[1], c[2], c[3], c[4]};
    const NormalForm forms[] = {NormalForm::NFC, NormalForm::NFD, NormalForm::NFKC, NormalForm::NFKD};
    for (int f = 0; f < 4; ++f) {
      const std::string got = normalize(in, forms[f]);
      if (got != expect[f] && ++failures < 20)
        ADD_FAILURE() << "form " << f << " of '" << in << "': got '" << got << "'";
      // The quick check may only claim "normalized" when it really is.
      if (is_quick_normalized(in, forms[f]) && in != expect[f] && ++failures < 20)
        ADD_FAILURE() << "quick check wrongly accepts '" << in << "' for form " << f;
    }
    if (to_lower(in) != c[5].get<std::string>() && ++failures < 20)
      ADD_FAILURE() << "lowercase of '" << in << "'";
  }
  EXPECT_EQ(failures, 0);
}

TEST(Normalization, HandPickedCases) {
  EXPECT_EQ(normalize("e\xCC\x81", NormalForm::NFC), "\xC3\xA9");     // e + U+0301 -> é
  EXPECT_EQ(normalize("\xE2\x84\xAB", NormalForm::NFC), "\xC3\x85");  // U+212B ANGSTROM -> Å
  EXPECT_EQ(normalize("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", NormalForm::NFC),
            "\xEA\xB0\x81");  // jamo -> 각
  EXPECT_EQ(normalize("\xEA\xB0\x81", NormalForm::NFD), "\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8");
  EXPECT_EQ(normalize("\xEF\xAC\x81", NormalForm::NFKC), "fi");  // ligature
  EXPECT_EQ(normalize("\xEF\xAC\x81", NormalForm::NFC), "\xEF\xAC\x81");
  EXPECT_EQ(normalize("plain ascii", NormalForm::NFC), "plain ascii");
  EXPECT_EQ(to_lower("\xC4\xB0"), "i\xCC\x87");  // U+0130 -> i + U+0307 (longer than the input)
  EXPECT_EQ(to_lower("ABC \xCE\xA3"), "abc \xCF\x83");
}

TEST(Utf8, Validation) {
  EXPECT_FALSE(find_invalid_utf8("").has_value());
  EXPECT_FALSE(find_invalid_utf8("abc \xC3\xA9 \xE4\xBD\xA0 \xF0\x9F\x98\x80").has_value());
  EXPECT_FALSE(find_invalid_utf8("\xF4\x8F\xBF\xBF").has_value());  // U+10FFFF
  EXPECT_EQ(find_invalid_utf8("ab\x80"), 2u);                       // stray continuation
  EXPECT_EQ(find_invalid_utf8("a\xC3"), 1u);                        // truncated
  EXPECT_EQ(find_invalid_utf8("a\xC0\x80"), 1u);                    // overlong NUL
  EXPECT_EQ(find_invalid_utf8("\xE0\x80\xAF"), 0u);                 // overlong 3-byte
  EXPECT_EQ(find_invalid_utf8("x\xED\xB0\x80"), 1u);                // surrogate U+DC00
  EXPECT_EQ(find_invalid_utf8("\xF4\x90\x80\x80"), 0u);             // > U+10FFFF
  EXPECT_EQ(find_invalid_utf8("\xFF"), 0u);
  EXPECT_EQ(find_invalid_utf8("\xE4\xBD"), 0u);
  std::string s;
  for (char32_t cp : {0x41u, 0x7FFu, 0x800u, 0xFFFFu, 0x10000u, 0x10FFFFu}) append_utf8(s, cp);
  EXPECT_FALSE(find_invalid_utf8(s).has_value());
  size_t i = 0;
  for (char32_t cp : {0x41u, 0x7FFu, 0x800u, 0xFFFFu, 0x10000u, 0x10FFFFu}) EXPECT_EQ(next_cp(s, i), cp);
  EXPECT_EQ(i, s.size());
}

TEST(ByteLevel, Gpt2Table) {
  // The checks of tokenizers.md §4.1.
  const std::pair<int, char32_t> known[] = {{0x00, 0x100}, {0x09, 0x109}, {0x0A, 0x10A}, {0x0D, 0x10D},
                                            {0x20, 0x120}, {0x7F, 0x121}, {0x80, 0x122}, {0xA0, 0x142},
                                            {0xAD, 0x143}, {'A', 'A'},    {0xFF, 0xFF},  {0xA1, 0xA1}};
  for (auto [b, cp] : known) EXPECT_EQ(byte_to_char(static_cast<uint8_t>(b)), cp) << b;
  for (int b = 0; b < 256; ++b) EXPECT_EQ(char_to_byte(byte_to_char(static_cast<uint8_t>(b))), b);
  EXPECT_FALSE(char_to_byte(0x144).has_value());
  EXPECT_FALSE(char_to_byte(0xAD).has_value());  // 0xAD is remapped, so U+00AD is not in the table
  std::string out;
  append_byte_level(out, " world\n");
  EXPECT_EQ(out, "\xC4\xA0world\xC4\x8A");  // "Ġworld" + "Ċ"
}

TEST(CharClasses, AgreeWithRegexClasses) {
  EXPECT_TRUE(is_numeric('7'));
  EXPECT_TRUE(is_numeric(0x0663));  // ARABIC-INDIC DIGIT THREE (Nd)
  EXPECT_TRUE(is_numeric(0x2460));  // CIRCLED DIGIT ONE (No)
  EXPECT_TRUE(is_numeric(0x2163));  // ROMAN NUMERAL FOUR (Nl)
  EXPECT_FALSE(is_numeric('a'));
  EXPECT_TRUE(is_letter(0x4E2D));
  EXPECT_FALSE(is_letter(0x0301));  // combining marks are not \p{L}
  EXPECT_TRUE(is_word_char('_'));
  EXPECT_FALSE(is_word_char('-'));
  EXPECT_TRUE(is_regex_space(0x3000));
  EXPECT_FALSE(is_regex_space(0xFEFF));  // the BOM is not \s for Oniguruma (it is for JS)
  EXPECT_TRUE(is_white_space(0x85));
  EXPECT_FALSE(is_white_space(0x200B));
  EXPECT_TRUE(is_numeric(0x1D7CE));  // MATHEMATICAL BOLD DIGIT ZERO, outside the BMP
}

}  // namespace
}  // namespace bidora::tok
