#include "tokenizer/regex.h"

#include <oniguruma.h>

#include <mutex>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace bidora::tok {

namespace {

void init_oniguruma_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
  });
}

std::string onig_message(int code, OnigErrorInfo* info) {
  OnigUChar buf[ONIG_MAX_ERROR_MESSAGE_LEN];
  const int n = info ? onig_error_code_to_str(buf, code, info) : onig_error_code_to_str(buf, code);
  return std::string(reinterpret_cast<const char*>(buf), n > 0 ? static_cast<size_t>(n) : 0);
}

struct RegionDeleter {
  void operator()(OnigRegion* r) const { onig_region_free(r, 1); }
};

}  // namespace

struct Regex::Impl {
  OnigRegex re = nullptr;
  ~Impl() {
    if (re) onig_free(re);
  }
};

Regex::Regex(const std::string& pattern, const std::string& where)
    : impl_(std::make_unique<Impl>()), pattern_(pattern) {
  init_oniguruma_once();
  if (auto bad = find_invalid_utf8(pattern)) fail("{}: regex is not valid UTF-8 at byte {}", where, *bad);
  OnigErrorInfo info;
  const auto* p = reinterpret_cast<const OnigUChar*>(pattern.data());
  const int rc = onig_new(&impl_->re, p, p + pattern.size(), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8,
                          ONIG_SYNTAX_DEFAULT, &info);
  if (rc != ONIG_NORMAL) {
    impl_->re = nullptr;
    fail("{}: invalid regex '{}': {}", where, pattern, onig_message(rc, &info));
  }
}

Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;
Regex::~Regex() = default;

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const {
  out.clear();
  // One region per thread: onig_search writes into it, the compiled regex is only read.
  thread_local std::unique_ptr<OnigRegion, RegionDeleter> region(onig_region_new());
  const auto* str = reinterpret_cast<const OnigUChar*>(text.data());
  const auto* end = str + text.size();
  size_t pos = 0;
  bool have_last = false;
  size_t last_match_end = 0;
  while (pos <= text.size()) {
    onig_region_clear(region.get());
    const int r = onig_search(impl_->re, str, end, str + pos, end, region.get(), ONIG_OPTION_NONE);
    if (r == ONIG_MISMATCH) break;
    if (r < 0) fail("tokenizer: regex search failed for '{}': {}", pattern_, onig_message(r, nullptr));
    const auto b = static_cast<size_t>(region->beg[0]);
    const auto e = static_cast<size_t>(region->end[0]);
    if (b == e && have_last && last_match_end == e) {
      // Empty match glued to the previous one: step over one character and retry.
      if (pos >= text.size()) break;
      pos += utf8_len(static_cast<unsigned char>(text[pos]));
      continue;
    }
    out.emplace_back(b, e);
    have_last = true;
    last_match_end = e;
    if (e == b) {
      // An empty match: the next search must start past it or it would repeat forever.
      if (e >= text.size()) break;
      pos = e + utf8_len(static_cast<unsigned char>(text[e]));
    } else {
      pos = e;
    }
  }
}

}  // namespace bidora::tok
