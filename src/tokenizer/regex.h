#pragma once
// Oniguruma regex, the engine Hugging Face `tokenizers` itself uses for Split patterns (Rust
// `onig` crate: UTF-8, default syntax, no options), so \p{L}, \s and look-arounds mean exactly
// what they mean there. Thread-safe: a compiled Regex may be searched from several threads.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bidora::tok {

class Regex {
 public:
  // Throws bidora::Error naming `where` (e.g. "tokenizer.json: pre_tokenizer.pattern.Regex")
  // and Oniguruma's message when the pattern does not compile.
  Regex(const std::string& pattern, const std::string& where);
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  ~Regex();

  // All non-overlapping matches [begin, end) in byte offsets, left to right, with the onig
  // crate's find_iter rules: the search resumes at the previous match end, and an empty match
  // right at the previous match end is skipped by advancing one character.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string pattern_;
};

}  // namespace bidora::tok
