#include "tokenizer/pre_tokenizer.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json_util.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/metaspace.h"
#include "tokenizer/pattern.h"
#include "tokenizer/unicode.h"
#include "tokenizer/unicode_class.h"

namespace bidora::tok {

const char* const kGpt2SplitRegex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

// Replaces every piece by the pieces `split_one` cuts it into. The first sub-piece keeps the
// parent's at_origin only if it starts at the parent's first byte.
template <typename SplitOne>
void split_each(std::vector<Piece>& pieces, SplitOne&& split_one) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  thread_local std::vector<Span> spans;
  for (Piece& p : pieces) {
    split_one(p.text, spans);
    for (const auto& [b, e] : spans) out.push_back({p.text.substr(b, e - b), p.at_origin && b == 0});
  }
  pieces = std::move(out);
}

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(Pattern p, SplitBehavior b, bool invert)
      : pattern_(std::move(p)), behavior_(b), invert_(invert) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    thread_local std::vector<Span> matches;
    split_each(pieces, [&](const std::string& text, std::vector<Span>& spans) {
      pattern_.find_all(text, matches);
      split_spans(text.size(), matches, behavior_, invert_, spans);
    });
  }

 private:
  Pattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex, const std::string& where)
      : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_.emplace(Pattern::from_json(nlohmann::json{{"Regex", kGpt2SplitRegex}}, where));
  }
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    if (add_prefix_space_) {
      for (Piece& p : pieces)
        if (p.text.empty() || p.text[0] != ' ') p.text.insert(0, 1, ' ');
    }
    if (regex_) {
      thread_local std::vector<Span> matches;
      split_each(pieces, [&](const std::string& text, std::vector<Span>& spans) {
        regex_->find_all(text, matches);
        split_spans(text.size(), matches, SplitBehavior::Isolated, false, spans);
      });
    }
    std::string mapped;
    for (Piece& p : pieces) {
      mapped.clear();
      append_byte_level(mapped, p.text);
      p.text.swap(mapped);
    }
  }

 private:
  bool add_prefix_space_;
  std::optional<Pattern> regex_;
};

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (Piece& p : pieces) {
      std::string t;
      t.reserve(p.text.size() + replacement_.size());
      for (char c : p.text) {
        if (c == ' ') {
          t += replacement_;
        } else {
          t.push_back(c);
        }
      }
      const bool starts = t.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (scheme_ == PrependScheme::Always || (scheme_ == PrependScheme::First && p.at_origin)))
        t.insert(0, replacement_);
      p.text = std::move(t);
    }
    if (!split_) return;
    const Pattern rep = Pattern::literal(replacement_);
    thread_local std::vector<Span> matches;
    split_each(pieces, [&](const std::string& text, std::vector<Span>& spans) {
      rep.find_all(text, matches);
      split_spans(text.size(), matches, SplitBehavior::MergedWithNext, false, spans);
    });
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class DigitsPreTokenizer final : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual) : individual_(individual) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    thread_local std::vector<Span> matches;
    split_each(pieces, [&](const std::string& text, std::vector<Span>& spans) {
      // Every numeric char is its own match (Rust's char-predicate pattern).
      matches.clear();
      size_t i = 0;
      while (i < text.size()) {
        const size_t b = i;
        if (is_numeric(next_cp(text, i))) matches.emplace_back(b, i);
      }
      split_spans(text.size(), matches, individual_ ? SplitBehavior::Isolated : SplitBehavior::Contiguous,
                  false, spans);
    });
  }

 private:
  bool individual_;
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (const auto& s : steps_) s->pre_tokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where) {
  using namespace json_util;
  if (j.is_null()) return nullptr;
  const std::string type = get_string(j, "type", where);
  if (type == "Split") {
    return std::make_unique<SplitPreTokenizer>(
        Pattern::from_json(require(j, "pattern", where), where + ".pattern"),
        parse_split_behavior(get_string(j, "behavior", where), where),
        opt_bool(j, "invert", where).value_or(false));
  }
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevelPreTokenizer>(opt_bool(j, "add_prefix_space", where).value_or(true),
                                                   opt_bool(j, "use_regex", where).value_or(true), where);
  }
  if (type == "Metaspace") {
    MetaspaceConfig m = parse_metaspace(j, where);
    return std::make_unique<MetaspacePreTokenizer>(std::move(m.replacement), m.scheme,
                                                   opt_bool(j, "split", where).value_or(true));
  }
  if (type == "Digits")
    return std::make_unique<DigitsPreTokenizer>(opt_bool(j, "individual_digits", where).value_or(false));
  if (type == "Sequence") {
    const auto& list = require(j, "pretokenizers", where);
    if (!list.is_array()) fail("{}: field \"pretokenizers\" must be an array", where);
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (size_t i = 0; i < list.size(); ++i) {
      if (auto p = make_pre_tokenizer(list[i], fmt::format("{}.pretokenizers[{}]", where, i)))
        steps.push_back(std::move(p));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  fail("{}: unsupported pre_tokenizer type \"{}\" (supported: Split, ByteLevel, Metaspace, Digits, Sequence)",
       where, type);
}

}  // namespace bidora::tok
