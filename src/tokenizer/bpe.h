#pragma once
// tokenizer.json `model` of type BPE: vocabulary, ranked merges and the merge algorithm of HF
// `tokenizers` (lowest rank first, leftmost on ties), with unk / fuse_unk / byte_fallback /
// ignore_merges / continuing_subword_prefix / end_of_word_suffix. Thread-safe for encoding.
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace bidora::tok {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// (left id, right id) -> (rank, merged id), open addressing: the merge lookup is the inner loop.
class MergeTable {
 public:
  struct Value {
    uint32_t rank;
    int32_t new_id;
  };
  void reserve(size_t n);
  void insert(int32_t a, int32_t b, Value v);  // an existing pair is overwritten (later rank wins)
  const Value* find(int32_t a, int32_t b) const {
    const uint64_t key = pack(a, b);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key == key) return &s.value;
      if (s.key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  struct Slot {
    uint64_t key = kEmpty;
    Value value{};
  };
  static uint64_t pack(int32_t a, int32_t b) {
    return (uint64_t{static_cast<uint32_t>(a)} << 32) | static_cast<uint32_t>(b);
  }
  static size_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return static_cast<size_t>(k);
  }
  void grow();
  std::vector<Slot> slots_ = std::vector<Slot>(16);
  size_t mask_ = 15;
  size_t size_ = 0;
};

class BpeModel {
 public:
  // `model` is tokenizer.json's "model" object; `where` prefixes error messages.
  static std::unique_ptr<BpeModel> from_json(const nlohmann::json& model, const std::string& where);

  // Appends the ids of one pre-tokenized word (in the vocabulary's alphabet).
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  const std::string* id_to_token(int32_t id) const;  // nullptr when unknown
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }
  size_t merge_count() const { return merges_.size(); }
  const std::optional<std::string>& unk_token() const { return unk_token_; }

 private:
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool alive;  // false once merged into its left neighbour
  };
  void initial_symbols(std::string_view word, std::vector<Symbol>& syms) const;
  void merge_all(std::vector<Symbol>& syms) const;
  std::optional<int32_t> char_id(std::string_view ch, bool first, bool last) const;
  int32_t unk_id() const;

  Vocab vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> id_present_;
  MergeTable merges_;
  // Fast path for single-char symbols without prefix/suffix: code point -> id (-1: not a token).
  static constexpr char32_t kDirectChars = 0x3000;
  std::vector<int32_t> direct_char_id_;
  std::optional<std::string> unk_token_;
  std::optional<int32_t> unk_id_;
  std::optional<std::string> prefix_, suffix_;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  std::array<int32_t, 256> byte_token_id_{};  // <0xXX> ids, -1 when absent

  // Cache of finished words (Rust caches words shorter than 256 bytes). Sharded so that threads
  // encoding different texts rarely wait for each other; a full shard is simply cleared.
  static constexpr size_t kCacheShards = 16, kCacheShardCapacity = 8192, kMaxCachedWordBytes = 256;
  struct CacheShard {
    std::mutex mu;
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> map;
  };
  mutable std::array<CacheShard, kCacheShards> cache_;
};

}  // namespace bidora::tok
