#include "generate/text_stream.h"

#include <algorithm>

namespace bidora {

namespace {
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
}

size_t trailing_replacement_bytes(std::string_view s) {
  size_t n = 0;
  while (s.size() - n >= kReplacement.size() &&
         s.substr(s.size() - n - kReplacement.size(), kReplacement.size()) == kReplacement)
    n += kReplacement.size();
  return n;
}

TextStream::TextStream(DecodeFn decode, std::vector<std::string> stop_strings) : decode_(std::move(decode)) {
  for (auto& s : stop_strings)
    if (!s.empty()) stops_.push_back(std::move(s));
}

std::string TextStream::release(const std::string& full, size_t end) {
  // A decoder whose earlier output changed (never seen with HF decoders) cannot take back what was
  // printed: release nothing until the text is consistent again.
  if (end <= released_.size() || full.compare(0, released_.size(), released_) != 0) return {};
  std::string out = full.substr(released_.size(), end - released_.size());
  released_ += out;
  return out;
}

std::string TextStream::push(int32_t id) {
  if (stopped_) return {};
  ids_.push_back(id);
  const std::string full = decode_(ids_);
  // The earliest stop string, searched from where a new match could start.
  size_t longest = 0;
  for (const auto& s : stops_) longest = std::max(longest, s.size());
  const size_t from = released_.size() > longest ? released_.size() - longest : 0;
  size_t cut = std::string::npos;
  for (const auto& s : stops_) cut = std::min(cut, full.find(s, from));
  if (cut != std::string::npos) {
    stopped_ = true;
    return release(full, cut);
  }
  const size_t complete = full.size() - trailing_replacement_bytes(full);
  // Hold back the longest tail that a stop string starts with.
  size_t hold = 0;
  for (const auto& s : stops_)
    for (size_t k = std::min(s.size() - 1, complete); k > hold; --k)
      if (full.compare(complete - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
  return release(full, complete - hold);
}

std::string TextStream::finish() {
  if (stopped_) return {};
  const std::string full = decode_(ids_);
  return release(full, full.size());
}

}  // namespace bidora
