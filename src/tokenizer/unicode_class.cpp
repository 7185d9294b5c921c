#include "tokenizer/unicode_class.h"

#include <oniguruma.h>

#include <array>
#include <bitset>
#include <cstring>
#include <memory>
#include <mutex>

namespace bidora::tok {

namespace {

enum Class { kNumeric, kLetter, kWord, kSpace, kClassCount };

struct Tables {
  int ctype[kClassCount];
  // Bitmaps for the Basic Multilingual Plane; other planes ask Oniguruma directly.
  std::array<std::bitset<0x10000>, kClassCount> bmp;
};

int property_ctype(const char* name) {
  const auto* p = reinterpret_cast<const OnigUChar*>(name);
  return ONIGENC_PROPERTY_NAME_TO_CTYPE(ONIG_ENCODING_UTF8, const_cast<OnigUChar*>(p),
                                        const_cast<OnigUChar*>(p + std::strlen(name)));
}

const Tables& tables() {
  static std::unique_ptr<Tables> t;
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
    t = std::make_unique<Tables>();
    t->ctype[kNumeric] = property_ctype("N");
    t->ctype[kLetter] = property_ctype("L");
    t->ctype[kWord] = ONIGENC_CTYPE_WORD;
    t->ctype[kSpace] = ONIGENC_CTYPE_SPACE;
    for (int c = 0; c < kClassCount; ++c)
      for (OnigCodePoint cp = 0; cp < 0x10000; ++cp)
        if (ONIGENC_IS_CODE_CTYPE(ONIG_ENCODING_UTF8, cp, static_cast<unsigned>(t->ctype[c])))
          t->bmp[c].set(cp);
  });
  return *t;
}

bool has_class(char32_t cp, Class c) {
  const Tables& t = tables();
  if (cp < 0x10000) return t.bmp[c].test(cp);
  if (cp > 0x10FFFF) return false;
  return ONIGENC_IS_CODE_CTYPE(ONIG_ENCODING_UTF8, cp, static_cast<unsigned>(t.ctype[c]));
}

}  // namespace

bool is_numeric(char32_t cp) {
  return has_class(cp, kNumeric);
}
bool is_letter(char32_t cp) {
  return has_class(cp, kLetter);
}
bool is_word_char(char32_t cp) {
  return has_class(cp, kWord);
}
bool is_regex_space(char32_t cp) {
  return has_class(cp, kSpace);
}

}  // namespace bidora::tok
