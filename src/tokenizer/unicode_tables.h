#pragma once
// Raw Unicode Character Database tables (generated, see gen_unicode_tables.py). All arrays are
// sorted by their first field so lookups are binary searches; unicode.h wraps them.
#include <cstddef>
#include <cstdint>

namespace bidora::tok::unicode_tables {

struct CccEntry {
  char32_t cp;
  uint8_t ccc;  // canonical combining class, only entries != 0
};
struct MappingEntry {
  char32_t cp;
  uint32_t offset, length;  // into the mapping's pool
};
struct Mapping {
  const MappingEntry* entries;
  size_t count;
  const char32_t* pool;
};
struct CompositionEntry {
  char32_t first, second, composite;  // sorted by (first, second)
};
struct Range {
  char32_t lo, hi;  // inclusive
};

extern const char* const kUnicodeVersion;
extern const CccEntry ccc_entries[];
extern const size_t ccc_count;
extern const Mapping canonical;      // full (recursive) canonical decompositions, Hangul excluded
extern const Mapping compatibility;  // full compatibility decompositions, Hangul excluded
extern const Mapping lowercase;      // full lowercase mapping of a single char (no context rules)
extern const CompositionEntry composition_entries[];
extern const size_t composition_count;
extern const Range nfc_unsafe_ranges[];  // chars that may change or reorder under NFC
extern const size_t nfc_unsafe_count;
extern const Range nfkc_unsafe_ranges[];  // same for NFKC
extern const size_t nfkc_unsafe_count;

}  // namespace bidora::tok::unicode_tables
