#include "data/tokenize.h"

#include <algorithm>
#include <exception>

#include "core/error.h"

namespace bidora::data {

int64_t TokenizedExample::num_trained() const {
  return std::count(trained.begin(), trained.end(), uint8_t{1});
}

ExampleTokenizer::ExampleTokenizer(EncodeFn encode) : encode_(std::move(encode)) {
  // Any plain word works as a probe: post-processors only add tokens around the encoding.
  const std::vector<int32_t> plain = encode_("a", false);
  const std::vector<int32_t> with = encode_("a", true);
  auto it = std::search(with.begin(), with.end(), plain.begin(), plain.end());
  if (plain.empty() || it == with.end())
    fail(
        "cannot tell which special tokens the tokenizer's post-processor adds: encoding \"a\" gives {} "
        "tokens without and {} with special tokens",
        plain.size(), with.size());
  prefix_.assign(with.begin(), it);
  suffix_.assign(it + static_cast<std::ptrdiff_t>(plain.size()), with.end());
}

namespace {

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = std::min(a.size(), b.size()), i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

size_t common_suffix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = std::min(a.size(), b.size()), i = 0;
  while (i < n && a[a.size() - 1 - i] == b[b.size() - 1 - i]) ++i;
  return i;
}

}  // namespace

TokenizedExample ExampleTokenizer::tokenize(const Example& ex, const TokenizeOptions& opt) const {
  BIDORA_CHECK(!ex.segments.empty(), "{}: empty example", ex.source);
  const std::string text = ex.text();
  const std::vector<int32_t> plain = encode_(text, false);

  // ends[k] = index in `plain` one past the last token of segment k.
  const size_t nseg = ex.segments.size();
  std::vector<size_t> ends(nseg, plain.size());
  int32_t split = 0;
  if (nseg > 1) {
    std::vector<int32_t> joined;
    joined.reserve(plain.size());
    for (size_t k = 0; k < nseg; ++k) {
      const auto ids = encode_(ex.segments[k].text, false);
      joined.insert(joined.end(), ids.begin(), ids.end());
      ends[k] = joined.size();
    }
    if (joined != plain) {
      size_t chars = 0, prev = 0;
      const std::string_view whole(text);
      for (size_t k = 0; k + 1 < nseg; ++k) {
        chars += ex.segments[k].text.size();
        const auto head = encode_(whole.substr(0, chars), false);
        const size_t lo = common_prefix(head, plain);
        size_t hi = lo;
        if (head.size() != lo) {
          // Tokens from `lo` on may still lie (partly) before the boundary; the suffix's encoding
          // bounds the uncertain region from the right.
          const auto tail = encode_(whole.substr(chars), false);
          hi = std::max(lo, plain.size() - common_suffix(tail, plain));
          ++split;
        }
        // The uncertain region is trained: it belongs to whichever neighbour is the answer.
        const size_t cut = std::clamp(ex.segments[k].trained ? hi : lo, prev, plain.size());
        ends[k] = prev = cut;
      }
      ends[nseg - 1] = plain.size();
    }
  }

  TokenizedExample out;
  out.format = ex.format;
  out.line = ex.line;
  out.split_boundaries = split;
  const bool specials = ex.add_special_tokens;
  const size_t total = plain.size() + (specials ? prefix_.size() + suffix_.size() : 0);
  out.ids.reserve(total);
  out.trained.reserve(total);
  auto push = [&](int32_t id, bool trained) {
    out.ids.push_back(id);
    out.trained.push_back(opt.train_on_prompt || trained ? 1 : 0);
  };
  if (specials)
    for (int32_t id : prefix_) push(id, false);
  size_t k = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    while (i >= ends[k]) ++k;
    push(plain[i], ex.segments[k].trained);
  }
  // A suffix (an EOS added by the post-processor) ends the last segment.
  if (specials)
    for (int32_t id : suffix_) push(id, ex.segments.back().trained);

  // Nothing precedes the first token, so it is never a prediction target; clearing its flag keeps
  // the flags equal to the loss terms (and to the batch labels, see batch.h).
  if (!out.trained.empty()) out.trained[0] = 0;
  out.full_length = static_cast<int64_t>(out.ids.size());
  if (opt.max_seq_len > 0 && out.full_length > opt.max_seq_len) {
    out.ids.resize(static_cast<size_t>(opt.max_seq_len));
    out.trained.resize(static_cast<size_t>(opt.max_seq_len));
    out.truncated = true;
  }
  return out;
}

std::vector<TokenizedExample> ExampleTokenizer::tokenize_all(const std::vector<Example>& examples,
                                                             const std::vector<int64_t>* indices,
                                                             const TokenizeOptions& opt) const {
  const auto n = static_cast<int64_t>(indices ? indices->size() : examples.size());
  std::vector<TokenizedExample> out(static_cast<size_t>(n));
  // Exceptions cannot leave an OpenMP region: keep the first one and rethrow it afterwards.
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < n; ++i) {
    try {
      const auto k = static_cast<size_t>(indices ? (*indices)[static_cast<size_t>(i)] : i);
      out[static_cast<size_t>(i)] = tokenize(examples.at(k), opt);
    } catch (...) {
#pragma omp critical(bidora_tokenize_all_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  return out;
}

}  // namespace bidora::data
