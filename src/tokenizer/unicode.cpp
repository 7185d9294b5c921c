#include "tokenizer/unicode.h"

#include <algorithm>
#include <span>
#include <vector>

#include "tokenizer/unicode_tables.h"

namespace bidora::tok {

namespace ut = unicode_tables;

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

const char* unicode_version() {
  return ut::kUnicodeVersion;
}

namespace {

// Hangul syllables are composed/decomposed arithmetically (Unicode §3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

uint8_t ccc_of(char32_t cp) {
  if (cp < 0x300) return 0;
  const auto* end = ut::ccc_entries + ut::ccc_count;
  const auto* it =
      std::lower_bound(ut::ccc_entries, end, cp, [](const ut::CccEntry& e, char32_t c) { return e.cp < c; });
  return (it != end && it->cp == cp) ? it->ccc : 0;
}

std::span<const char32_t> lookup(const ut::Mapping& m, char32_t cp) {
  const auto* end = m.entries + m.count;
  const auto* it =
      std::lower_bound(m.entries, end, cp, [](const ut::MappingEntry& e, char32_t c) { return e.cp < c; });
  if (it == end || it->cp != cp) return {};
  return {m.pool + it->offset, it->length};
}

bool in_ranges(const ut::Range* r, size_t n, char32_t cp) {
  const auto* end = r + n;
  const auto* it = std::upper_bound(r, end, cp, [](char32_t c, const ut::Range& e) { return c < e.lo; });
  return it != r && cp <= (it - 1)->hi;
}

std::optional<char32_t> compose_pair(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  const auto* end = ut::composition_entries + ut::composition_count;
  const auto* it =
      std::lower_bound(ut::composition_entries, end, std::pair{a, b},
                       [](const ut::CompositionEntry& e, const std::pair<char32_t, char32_t>& k) {
                         return e.first < k.first || (e.first == k.first && e.second < k.second);
                       });
  if (it != end && it->first == a && it->second == b) return it->composite;
  return std::nullopt;
}

void decompose_into(char32_t cp, bool compat, std::vector<char32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  auto d = lookup(compat ? ut::compatibility : ut::canonical, cp);
  if (d.empty()) {
    out.push_back(cp);
  } else {
    out.insert(out.end(), d.begin(), d.end());
  }
}

// Canonical ordering: stable sort of every run of non-starters by combining class.
void reorder(std::vector<char32_t>& cps) {
  size_t i = 0;
  while (i < cps.size()) {
    if (ccc_of(cps[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && ccc_of(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + static_cast<std::ptrdiff_t>(i),
                     cps.begin() + static_cast<std::ptrdiff_t>(j),
                     [](char32_t a, char32_t b) { return ccc_of(a) < ccc_of(b); });
    i = j;
  }
}

// Canonical composition (UAX #15 §1.3): a char combines with the last starter unless blocked
// by an intervening char of equal or higher combining class.
void compose(std::vector<char32_t>& cps) {
  if (cps.empty()) return;
  size_t starter = 0;
  bool have_starter = ccc_of(cps[0]) == 0;
  int last_ccc = have_starter ? 0 : 256;
  size_t out = 1;
  for (size_t i = 1; i < cps.size(); ++i) {
    const char32_t c = cps[i];
    const int cc = ccc_of(c);
    const bool blocked = out - 1 != starter && (last_ccc == 0 || last_ccc >= cc);
    if (have_starter && !blocked) {
      if (auto comp = compose_pair(cps[starter], c)) {
        cps[starter] = *comp;
        continue;
      }
    }
    if (cc == 0) {
      starter = out;
      have_starter = true;
    }
    last_ccc = cc;
    cps[out++] = c;
  }
  cps.resize(out);
}

}  // namespace

bool is_quick_normalized(std::string_view s, NormalForm form) {
  const bool k = form == NormalForm::NFKC || form == NormalForm::NFKD;
  const bool decomposed = form == NormalForm::NFD || form == NormalForm::NFKD;
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const char32_t cp = next_cp(s, i);
    if (decomposed) {
      // NFD/NFKD quick check: no decomposable char and no non-starter.
      if (ccc_of(cp) != 0 || (cp >= kSBase && cp < kSBase + kSCount) ||
          !lookup(k ? ut::compatibility : ut::canonical, cp).empty())
        return false;
    } else if (k ? in_ranges(ut::nfkc_unsafe_ranges, ut::nfkc_unsafe_count, cp)
                 : in_ranges(ut::nfc_unsafe_ranges, ut::nfc_unsafe_count, cp)) {
      return false;
    }
  }
  return true;
}

std::string normalize(std::string_view s, NormalForm form) {
  if (is_quick_normalized(s, form)) return std::string(s);
  const bool compat = form == NormalForm::NFKC || form == NormalForm::NFKD;
  std::vector<char32_t> cps;
  cps.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) decompose_into(next_cp(s, i), compat, cps);
  reorder(cps);
  if (form == NormalForm::NFC || form == NormalForm::NFKC) compose(cps);
  std::string out;
  out.reserve(s.size());
  for (char32_t c : cps) append_utf8(out, c);
  return out;
}

std::string to_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      out.push_back(static_cast<char>(b >= 'A' && b <= 'Z' ? b + 32 : b));
      ++i;
      continue;
    }
    const char32_t cp = next_cp(s, i);
    auto m = lookup(ut::lowercase, cp);
    if (m.empty()) {
      append_utf8(out, cp);
    } else {
      for (char32_t c : m) append_utf8(out, c);
    }
  }
  return out;
}

}  // namespace bidora::tok
