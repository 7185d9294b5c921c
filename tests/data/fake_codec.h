#pragma once
// A tiny deterministic tokenizer for testing the data pipeline without a real tokenizer.json.
// It has the features that make segment-to-token mapping hard in real tokenizers:
//   - special-token strings are split out first (leftmost-longest), like HF added tokens;
//   - every other byte is one token (id = byte value);
//   - optional merges of adjacent tokens by rank (a BPE in miniature), which can join bytes
//     across a segment boundary;
//   - optionally a marker token prepended to every non-special piece, like the "▁" that
//     SentencePiece's Prepend normalizer adds (Llama 2, Mistral);
//   - an optional BOS added by the "post-processor".
// encode_with_offsets() reports each token's byte span, the ground truth tests compare with.
#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "data/codec.h"
#include "data/segment.h"
#include "test_support.h"

namespace bidora::data {
// Readable gtest failure output for segments.
inline void PrintTo(const Segment& s, std::ostream* os) {
  *os << (s.trained ? "trained" : "masked") << " \"";
  for (char c : s.text) {
    if (c == '\n') {
      *os << "\\n";
    } else {
      *os << c;
    }
  }
  *os << "\"";
}
}  // namespace bidora::data

namespace bidora::data::fake {

class FakeTokenizer {
 public:
  static constexpr int32_t kMarker = 300;  // the "▁" piece prefix
  static constexpr int32_t kFirstSpecial = 1000;
  static constexpr int32_t kFirstMerge = 2000;

  struct Token {
    int32_t id;
    size_t begin, end;  // byte span in the input; the marker has an empty span
  };

  explicit FakeTokenizer(std::vector<std::string> specials = {"<s>", "</s>", "<|im_start|>", "<|im_end|>",
                                                              "<|eot_id|>", "<|start_header_id|>",
                                                              "<|end_header_id|>", "<|begin_of_text|>"})
      : specials_(std::move(specials)) {}

  FakeTokenizer& with_bos(std::string bos) {
    bos_ = std::move(bos);
    return *this;
  }
  FakeTokenizer& with_piece_marker() {
    marker_ = true;
    return *this;
  }
  // Merges the two strings into one token; earlier calls have higher priority.
  FakeTokenizer& with_merge(const std::string& a, const std::string& b) {
    const int32_t ia = id_of(a), ib = id_of(b);
    const auto id = static_cast<int32_t>(kFirstMerge + merge_text_.size());
    merges_[{ia, ib}] = {static_cast<int32_t>(merges_.size()), id};
    merge_text_.push_back(a + b);
    return *this;
  }

  int32_t special_id(std::string_view s) const {
    for (size_t i = 0; i < specials_.size(); ++i)
      if (specials_[i] == s) return kFirstSpecial + static_cast<int32_t>(i);
    return -1;
  }

  std::vector<Token> encode_with_offsets(std::string_view text, bool add_special) const {
    std::vector<Token> out;
    if (add_special && !bos_.empty()) out.push_back({special_id(bos_), 0, 0});
    size_t piece_start = 0, i = 0;
    while (i <= text.size()) {
      size_t best = 0;
      int32_t best_id = -1;
      if (i < text.size()) {
        for (size_t k = 0; k < specials_.size(); ++k) {
          const std::string& s = specials_[k];
          if (s.size() > best && text.substr(i, s.size()) == s) {
            best = s.size();
            best_id = kFirstSpecial + static_cast<int32_t>(k);
          }
        }
      }
      if (best_id >= 0 || i == text.size()) {
        encode_piece(text, piece_start, i, out);
        if (best_id >= 0) out.push_back({best_id, i, i + best});
        i += best_id >= 0 ? best : 1;
        piece_start = i;
      } else {
        ++i;
      }
    }
    return out;
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special) const {
    std::vector<int32_t> ids;
    for (const Token& t : encode_with_offsets(text, add_special)) ids.push_back(t.id);
    return ids;
  }

  std::string decode(std::span<const int32_t> ids) const {
    std::string s;
    for (int32_t id : ids) s += piece(id);
    return s;
  }

  std::string piece(int32_t id) const {
    if (id < 256) return std::string(1, static_cast<char>(id));
    if (id == kMarker) return "";
    if (id >= kFirstMerge) return merge_text_.at(static_cast<size_t>(id - kFirstMerge));
    return specials_.at(static_cast<size_t>(id - kFirstSpecial));
  }

  // A TextCodec whose functions share this tokenizer.
  static TextCodec codec(std::shared_ptr<const FakeTokenizer> tok, std::string eos = "</s>",
                         std::string chat_template = "") {
    TextCodec c;
    c.encode = [tok](std::string_view t, bool add) { return tok->encode(t, add); };
    c.decode = [tok](std::span<const int32_t> ids) { return tok->decode(ids); };
    c.bos_token = tok->bos_;
    c.eos_token = eos;
    c.eos_id = tok->special_id(eos);
    c.pad_id = c.eos_id;
    c.pad_is_eos = true;
    c.chat_template = std::move(chat_template);
    return c;
  }

 private:
  int32_t id_of(const std::string& s) const {
    if (s.size() == 1) return static_cast<unsigned char>(s[0]);
    for (size_t k = 0; k < merge_text_.size(); ++k)
      if (merge_text_[k] == s) return kFirstMerge + static_cast<int32_t>(k);
    return -1;
  }

  void encode_piece(std::string_view text, size_t begin, size_t end, std::vector<Token>& out) const {
    if (begin == end) return;
    if (marker_) out.push_back({kMarker, begin, begin});
    std::vector<Token> toks;
    for (size_t i = begin; i < end; ++i) toks.push_back({static_cast<unsigned char>(text[i]), i, i + 1});
    for (;;) {  // lowest rank first, leftmost on ties: a BPE in miniature
      size_t at = toks.size();
      int32_t best_rank = 0, best_id = 0;
      for (size_t k = 0; k + 1 < toks.size(); ++k) {
        auto it = merges_.find({toks[k].id, toks[k + 1].id});
        if (it != merges_.end() && (at == toks.size() || it->second.first < best_rank)) {
          at = k;
          best_rank = it->second.first;
          best_id = it->second.second;
        }
      }
      if (at == toks.size()) break;
      toks[at] = {best_id, toks[at].begin, toks[at + 1].end};
      toks.erase(toks.begin() + static_cast<std::ptrdiff_t>(at) + 1);
    }
    out.insert(out.end(), toks.begin(), toks.end());
  }

  std::vector<std::string> specials_;
  std::string bos_;
  bool marker_ = false;
  std::map<std::pair<int32_t, int32_t>, std::pair<int32_t, int32_t>> merges_;  // pair -> (rank, id)
  std::vector<std::string> merge_text_;
};

inline TextCodec fake_codec(std::string chat_template = "", std::string eos = "</s>") {
  return FakeTokenizer::codec(std::make_shared<FakeTokenizer>(), std::move(eos), std::move(chat_template));
}

// The fixture with good and bad lines of every format (tests/fixtures/data/mixed.jsonl).
inline std::string mixed_jsonl() {
  return test::fixture_dir() + "/data/mixed.jsonl";
}

// A codec like Llama's: BOS "<s>" added by the post-processor, EOS "</s>".
inline TextCodec llama_like_codec() {
  auto t = std::make_shared<FakeTokenizer>();
  t->with_bos("<s>");
  return FakeTokenizer::codec(t, "</s>");
}

}  // namespace bidora::data::fake
