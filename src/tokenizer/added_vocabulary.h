#pragma once
// Added tokens (tokenizer.json `added_tokens`): strings such as <|im_start|> or <s> that are cut
// out of the text before normalization and the model, as HF `AddedVocabulary` does.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace bidora::tok {

class Normalizer;

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

struct Segment {
  size_t begin, end;  // byte range in the searched text
  int32_t id;         // the added token's id, or -1 for ordinary text
};

class AddedVocabulary {
 public:
  void add(AddedToken t);  // tokens are matched by content; a later duplicate replaces an earlier one
  // Builds the matchers; tokens with normalized=true are matched by their normalized form.
  void build(const Normalizer* normalizer);

  // Cuts `text` into token and non-token segments covering it. `normalized_pass` selects the
  // tokens with normalized=true (matched inside normalized text) instead of the raw ones.
  // With skip_special, special tokens are not recognised (transformers split_special_tokens).
  void split(std::string_view text, bool normalized_pass, bool skip_special, std::vector<Segment>& out) const;

  bool has_normalized_tokens() const { return !tries_[1].nodes.empty() && tries_[1].nodes.size() > 1; }
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  const AddedToken* find_by_id(int32_t id) const;
  const AddedToken* find_by_content(std::string_view content) const;

 private:
  // Byte trie, leftmost-longest (the Aho-Corasick MatchKind HF uses) by walking from each start.
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> next;
    int32_t token = -1;  // index into tokens_ when a token ends here
  };
  struct Trie {
    std::vector<Node> nodes;
    bool first_byte[256] = {};
    void insert(std::string_view key, int32_t token);
    // Longest token starting at text[pos]: (token index, end) or (-1, pos).
    std::pair<int32_t, size_t> longest_at(std::string_view text, size_t pos) const;
  };
  std::vector<AddedToken> tokens_;
  std::unordered_map<int32_t, size_t> by_id_;  // -> index in tokens_
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, size_t, Hash, std::equal_to<>> by_content_;  // -> index in tokens_
  Trie tries_[2];  // [0] raw (normalized=false), [1] normalized=true
};

}  // namespace bidora::tok
