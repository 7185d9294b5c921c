#include "tokenizer/added_vocabulary.h"

#include <algorithm>

#include "tokenizer/normalizer.h"
#include "tokenizer/unicode.h"
#include "tokenizer/unicode_class.h"

namespace bidora::tok {

void AddedVocabulary::add(AddedToken t) {
  if (auto it = by_content_.find(t.content); it != by_content_.end()) {
    AddedToken& existing = tokens_[it->second];
    by_id_.erase(existing.id);
    by_id_[t.id] = it->second;
    existing = std::move(t);
    return;
  }
  by_id_[t.id] = tokens_.size();
  by_content_[t.content] = tokens_.size();
  tokens_.push_back(std::move(t));
}

const AddedToken* AddedVocabulary::find_by_id(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::find_by_content(std::string_view content) const {
  auto it = by_content_.find(content);
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

void AddedVocabulary::Trie::insert(std::string_view key, int32_t token) {
  if (nodes.empty()) nodes.emplace_back();
  if (key.empty()) return;  // Rust ignores empty added tokens
  first_byte[static_cast<unsigned char>(key[0])] = true;
  int32_t cur = 0;
  for (unsigned char c : key) {
    auto& next = nodes[cur].next;
    auto it = std::find_if(next.begin(), next.end(), [c](const auto& e) { return e.first == c; });
    if (it != next.end()) {
      cur = it->second;
    } else {
      const auto id = static_cast<int32_t>(nodes.size());
      nodes[cur].next.emplace_back(c, id);
      nodes.emplace_back();
      cur = id;
    }
  }
  nodes[cur].token = token;
}

std::pair<int32_t, size_t> AddedVocabulary::Trie::longest_at(std::string_view text, size_t pos) const {
  std::pair<int32_t, size_t> best{-1, pos};
  int32_t cur = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    const auto& next = nodes[cur].next;
    auto it = std::find_if(next.begin(), next.end(), [c](const auto& e) { return e.first == c; });
    if (it == next.end()) break;
    cur = it->second;
    if (nodes[cur].token >= 0) best = {nodes[cur].token, i + 1};
  }
  return best;
}

void AddedVocabulary::build(const Normalizer* normalizer) {
  tries_[0] = Trie{};
  tries_[1] = Trie{};
  tries_[0].nodes.emplace_back();
  tries_[1].nodes.emplace_back();
  for (size_t k = 0; k < tokens_.size(); ++k) {
    const AddedToken& t = tokens_[k];
    if (!t.normalized) {
      tries_[0].insert(t.content, static_cast<int32_t>(k));
    } else {
      std::string n = t.content;
      if (normalizer) normalizer->normalize(n);
      tries_[1].insert(n, static_cast<int32_t>(k));
    }
  }
}

namespace {

// Last char of text[0, end) / first char of text[begin, ...) is a word char (\w).
bool word_char_before(std::string_view text, size_t end) {
  if (end == 0) return false;
  size_t s = end - 1;
  while (s > 0 && (static_cast<unsigned char>(text[s]) & 0xC0) == 0x80) --s;
  return is_word_char(next_cp(text, s));
}
bool word_char_after(std::string_view text, size_t begin) {
  if (begin >= text.size()) return false;
  return is_word_char(next_cp(text, begin));
}

}  // namespace

void AddedVocabulary::split(std::string_view text, bool normalized_pass, bool skip_special,
                            std::vector<Segment>& out) const {
  out.clear();
  const Trie& trie = tries_[normalized_pass ? 1 : 0];
  size_t start_offset = 0;  // end of the last accepted token
  size_t pos = 0;           // where the (non-overlapping) match iteration resumes
  while (pos < text.size() && trie.nodes.size() > 1) {
    if (!trie.first_byte[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    auto [k, stop] = trie.longest_at(text, pos);
    if (k < 0) {
      ++pos;
      continue;
    }
    size_t start = pos;
    pos = stop;  // like an Aho-Corasick iterator, a rejected match is still consumed
    const AddedToken& t = tokens_[k];
    if (skip_special && t.special) continue;
    if (t.single_word && (word_char_before(text, start) || word_char_after(text, stop))) continue;
    if (t.lstrip) {
      size_t s = start;
      while (s > start_offset) {
        size_t b = s - 1;
        while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
        size_t j = b;
        if (!is_white_space(next_cp(text, j))) break;
        s = b;
      }
      start = s;
    }
    if (t.rstrip) {
      while (stop < text.size()) {
        size_t j = stop;
        if (!is_white_space(next_cp(text, j))) break;
        stop = j;
      }
      pos = std::max(pos, stop);
    }
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, t.id});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back({start_offset, text.size(), -1});
}

}  // namespace bidora::tok
