#include "tokenizer/bpe.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json_util.h"
#include "tokenizer/unicode.h"

namespace bidora::tok {

// ---------------------------------------------------------------------------------------------
// MergeTable

void MergeTable::reserve(size_t n) {
  while (slots_.size() < n * 2) grow();
}

void MergeTable::grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(old.size() * 2, Slot{});
  mask_ = slots_.size() - 1;
  for (const Slot& s : old) {
    if (s.key == kEmpty) continue;
    size_t i = hash(s.key) & mask_;
    while (slots_[i].key != kEmpty) i = (i + 1) & mask_;
    slots_[i] = s;
  }
}

void MergeTable::insert(int32_t a, int32_t b, Value v) {
  if ((size_ + 1) * 2 > slots_.size()) grow();
  const uint64_t key = pack(a, b);
  size_t i = hash(key) & mask_;
  while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask_;
  if (slots_[i].key == kEmpty) ++size_;
  slots_[i] = {key, v};
}

// ---------------------------------------------------------------------------------------------
// Loading

namespace {

// The two parts of merge number r: ["a", "b"] or the legacy "a b" (split at the first space, as
// Rust's splitn(2, ' ')). Views into `m`; the location is only formatted on error (hot loop).
std::pair<std::string_view, std::string_view> merge_parts(const nlohmann::json& m, const std::string& where,
                                                          size_t r) {
  if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
    return {m[0].get_ref<const std::string&>(), m[1].get_ref<const std::string&>()};
  if (m.is_string()) {
    const std::string_view s = m.get_ref<const std::string&>();
    const size_t sp = s.find(' ');
    if (sp == std::string_view::npos) fail("{}.merges[{}]: expected \"left right\", got \"{}\"", where, r, s);
    return {s.substr(0, sp), s.substr(sp + 1)};
  }
  fail("{}.merges[{}]: expected a string \"left right\" or a pair of strings, got {}", where, r,
       m.dump().substr(0, 200));
}

}  // namespace

std::unique_ptr<BpeModel> BpeModel::from_json(const nlohmann::json& model, const std::string& where) {
  using namespace json_util;
  auto m = std::make_unique<BpeModel>();
  const std::string type = opt_string(model, "type", where).value_or("BPE");
  if (type != "BPE") fail("{}: unsupported model type \"{}\" (only BPE is supported)", where, type);
  if (auto dropout = opt_number(model, "dropout", where); dropout && *dropout != 0.0)
    fail("{}: BPE dropout {} is not supported (it makes tokenization random); expected null", where,
         *dropout);
  m->unk_token_ = opt_string(model, "unk_token", where);
  m->prefix_ = opt_string(model, "continuing_subword_prefix", where);
  m->suffix_ = opt_string(model, "end_of_word_suffix", where);
  m->fuse_unk_ = opt_bool(model, "fuse_unk", where).value_or(false);
  m->byte_fallback_ = opt_bool(model, "byte_fallback", where).value_or(false);
  m->ignore_merges_ = opt_bool(model, "ignore_merges", where).value_or(false);

  const auto& vocab = require(model, "vocab", where);
  if (!vocab.is_object()) fail("{}.vocab: expected an object mapping token -> id", where);
  m->vocab_.reserve(vocab.size());
  int64_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer())
      fail("{}.vocab[\"{}\"]: expected an integer id, got {}", where, it.key(), it.value().dump());
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > std::numeric_limits<int32_t>::max() - 1)
      fail("{}.vocab[\"{}\"]: id {} is out of range [0, 2^31-2]", where, it.key(), id);
    if (auto bad = find_invalid_utf8(it.key()))
      fail("{}.vocab: token at id {} is not valid UTF-8 (byte {})", where, id, *bad);
    m->vocab_.emplace(it.key(), static_cast<int32_t>(id));
    max_id = std::max(max_id, id);
  }
  if (max_id >= 0 && static_cast<size_t>(max_id) >= 8 * vocab.size() + 1024)
    fail("{}.vocab: ids are too sparse (max id {} for {} tokens)", where, max_id, vocab.size());
  m->id_to_token_.resize(static_cast<size_t>(max_id + 1));
  m->id_present_.assign(static_cast<size_t>(max_id + 1), false);
  for (const auto& [tok, id] : m->vocab_) {
    if (m->id_present_[id]) continue;  // duplicate id: keep one spelling for decoding
    m->id_to_token_[id] = tok;
    m->id_present_[id] = true;
  }

  m->direct_char_id_.assign(kDirectChars, -1);
  for (const auto& [tok, id] : m->vocab_) {
    size_t i = 0;
    if (tok.empty()) continue;
    const char32_t cp = next_cp(tok, i);
    if (i == tok.size() && cp < kDirectChars) m->direct_char_id_[cp] = id;
  }
  for (int b = 0; b < 256; ++b) {
    auto id = m->token_to_id(fmt::format("<0x{:02X}>", b));
    m->byte_token_id_[b] = id ? *id : -1;
  }
  if (m->unk_token_) m->unk_id_ = m->token_to_id(*m->unk_token_);

  const auto& merges = require(model, "merges", where);
  if (!merges.is_array()) fail("{}.merges: expected an array", where);
  m->merges_.reserve(merges.size());
  const size_t prefix_len = m->prefix_ ? m->prefix_->size() : 0;
  std::string joined;
  for (size_t r = 0; r < merges.size(); ++r) {
    if (merges[r].is_string() && merges[r].get_ref<const std::string&>().starts_with("#version")) continue;
    const auto [a, b] = merge_parts(merges[r], where, r);
    const auto ia = m->token_to_id(a);
    if (!ia) fail("{}.merges[{}]: token \"{}\" is not in the vocabulary", where, r, a);
    const auto ib = m->token_to_id(b);
    if (!ib) fail("{}.merges[{}]: token \"{}\" is not in the vocabulary", where, r, b);
    if (b.size() < prefix_len)
      fail("{}.merges[{}]: token \"{}\" is shorter than continuing_subword_prefix", where, r, b);
    joined.assign(a);
    joined.append(b.substr(prefix_len));
    const auto inew = m->token_to_id(joined);
    if (!inew) fail("{}.merges[{}]: merged token \"{}\" is not in the vocabulary", where, r, joined);
    m->merges_.insert(*ia, *ib, {static_cast<uint32_t>(r), *inew});
  }
  return m;
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !id_present_[id]) return nullptr;
  return &id_to_token_[id];
}

int32_t BpeModel::unk_id() const {
  if (!unk_id_) fail("tokenizer: unk_token \"{}\" is not in the vocabulary", *unk_token_);
  return *unk_id_;
}

// ---------------------------------------------------------------------------------------------
// Encoding

std::optional<int32_t> BpeModel::char_id(std::string_view ch, bool first, bool last) const {
  const bool add_prefix = !first && prefix_ && !prefix_->empty();
  const bool add_suffix = last && suffix_ && !suffix_->empty();
  if (!add_prefix && !add_suffix) {
    size_t i = 0;
    const char32_t cp = next_cp(ch, i);
    if (cp < kDirectChars) {
      const int32_t id = direct_char_id_[cp];
      return id >= 0 ? std::optional(id) : std::nullopt;
    }
    return token_to_id(ch);
  }
  std::string s;
  if (add_prefix) s += *prefix_;
  s += ch;
  if (add_suffix) s += *suffix_;
  return token_to_id(s);
}

// Rust BPE::merge_word, first half: one symbol per char, unknown chars through byte fallback,
// then unk (consecutive ones fused when fuse_unk), else dropped.
void BpeModel::initial_symbols(std::string_view word, std::vector<Symbol>& syms) const {
  syms.clear();
  std::optional<int32_t> pending_unk;  // an unk symbol not yet emitted (fuse_unk extends it)
  auto add = [&](int32_t id) {
    const auto n = static_cast<int32_t>(syms.size());
    syms.push_back({id, n - 1, n + 1, true});
  };
  size_t i = 0;
  while (i < word.size()) {
    const size_t b = i;
    i += utf8_len(static_cast<unsigned char>(word[b]));
    const std::string_view ch = word.substr(b, i - b);
    if (auto id = char_id(ch, b == 0, i >= word.size())) {
      if (pending_unk) {
        add(*pending_unk);
        pending_unk.reset();
      }
      add(*id);
      continue;
    }
    if (byte_fallback_) {
      // Rust falls back on the bytes of the symbol string, which includes prefix/suffix.
      std::string sym;
      if (b != 0 && prefix_) sym += *prefix_;
      sym += ch;
      if (i >= word.size() && suffix_) sym += *suffix_;
      bool all = true;
      for (unsigned char c : sym) all = all && byte_token_id_[c] >= 0;
      if (all) {
        // Like Rust, a pending unk is not flushed here (it is emitted after these bytes).
        for (unsigned char c : sym) add(byte_token_id_[c]);
        continue;
      }
    }
    if (unk_token_) {
      if (pending_unk && fuse_unk_) continue;  // extend the pending unk
      if (pending_unk) add(*pending_unk);
      pending_unk = unk_id();
    }
    // No unk token: Rust silently drops the char.
  }
  if (pending_unk) add(*pending_unk);
  if (!syms.empty()) syms.back().next = -1;
}

// Rust Word::merge_all without dropout: a min-heap on (rank, position); stale entries are
// recognised by re-looking up the pair and comparing the merged id, exactly as Rust does.
void BpeModel::merge_all(std::vector<Symbol>& syms) const {
  struct Cand {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
  };
  // std heap is a max-heap: "less" means lower priority = higher rank, then higher position.
  auto lower = [](const Cand& x, const Cand& y) {
    return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos;
  };
  thread_local std::vector<Cand> heap;
  heap.clear();
  const auto n = static_cast<int32_t>(syms.size());
  for (int32_t k = 0; k + 1 < n; ++k) {
    if (const auto* v = merges_.find(syms[k].id, syms[k + 1].id)) heap.push_back({v->rank, k, v->new_id});
  }
  std::make_heap(heap.begin(), heap.end(), lower);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), lower);
    const Cand top = heap.back();
    heap.pop_back();
    Symbol& cur = syms[top.pos];
    if (!cur.alive || cur.next < 0) continue;
    const int32_t next_pos = cur.next;
    const Symbol right = syms[next_pos];
    const auto* v = merges_.find(cur.id, right.id);
    if (!v || v->new_id != top.new_id) continue;
    cur.id = top.new_id;
    cur.next = right.next;
    syms[next_pos].alive = false;
    if (right.next >= 0) syms[right.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (const auto* pv = merges_.find(syms[cur.prev].id, cur.id)) {
        heap.push_back({pv->rank, cur.prev, pv->new_id});
        std::push_heap(heap.begin(), heap.end(), lower);
      }
    }
    if (cur.next >= 0) {
      if (const auto* nv = merges_.find(cur.id, syms[cur.next].id)) {
        heap.push_back({nv->rank, top.pos, nv->new_id});
        std::push_heap(heap.begin(), heap.end(), lower);
      }
    }
  }
  // Compact the surviving symbols in order.
  size_t out = 0;
  for (int32_t k = 0; k < n; ++k)
    if (syms[k].alive) syms[out++] = syms[k];
  syms.resize(out);
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto id = token_to_id(word)) {
      out.push_back(*id);
      return;
    }
  }
  const bool cacheable = word.size() < kMaxCachedWordBytes;
  CacheShard& shard = cache_[StringHash{}(word) % kCacheShards];
  if (cacheable) {
    std::lock_guard lock(shard.mu);
    if (auto it = shard.map.find(word); it != shard.map.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  thread_local std::vector<Symbol> syms;
  initial_symbols(word, syms);
  merge_all(syms);
  const size_t start = out.size();
  for (const Symbol& s : syms) out.push_back(s.id);
  if (cacheable) {
    std::lock_guard lock(shard.mu);
    if (shard.map.size() >= kCacheShardCapacity) shard.map.clear();
    shard.map.emplace(std::string(word),
                      std::vector<int32_t>(out.begin() + static_cast<std::ptrdiff_t>(start), out.end()));
  }
}

}  // namespace bidora::tok
