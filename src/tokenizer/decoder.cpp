#include "tokenizer/decoder.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json_util.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/metaspace.h"
#include "tokenizer/pattern.h"
#include "tokenizer/unicode.h"

namespace bidora::tok {

namespace {

const char* const kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Rust String::from_utf8_lossy: every maximal invalid subpart becomes one U+FFFD.
std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char b = p[i];
    if (b < 0x80) {
      out.push_back(static_cast<char>(b));
      ++i;
      continue;
    }
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b >= 0xC2 && b <= 0xDF) {
      need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      need = 2;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      need = 3;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    } else {
      out += kReplacementChar;
      ++i;
      continue;
    }
    size_t k = 1;
    while (k <= need && i + k < n) {
      const unsigned char c = p[i + k];
      const bool ok = (k == 1) ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
      if (!ok) break;
      ++k;
    }
    if (k == need + 1) {
      out.append(s.substr(i, k));
    } else {
      out += kReplacementChar;
    }
    i += k;
  }
  return out;
}

class ByteLevelDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& t : tokens) {
      // A token is mapped back byte by byte only if every char is in the table (added tokens
      // such as "\n" are not, and pass through as they are).
      const size_t mark = bytes.size();
      bool all = true;
      size_t i = 0;
      while (i < t.size()) {
        auto b = char_to_byte(next_cp(t, i));
        if (!b) {
          all = false;
          break;
        }
        bytes.push_back(static_cast<char>(*b));
      }
      if (!all) {
        bytes.resize(mark);
        bytes += t;
      }
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, PrependScheme scheme)
      : replacement_(std::move(replacement)), scheme_(scheme) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      size_t pos = 0;
      while (pos < t.size()) {
        if (t.compare(pos, replacement_.size(), replacement_) == 0) {
          if (!(i == 0 && scheme_ != PrependScheme::Never)) out.push_back(' ');
          pos += replacement_.size();
        } else {
          out.push_back(t[pos++]);
        }
      }
      tokens[i] = std::move(out);
    }
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
};

class ByteFallbackDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;  // bytes of consecutive <0xXX> tokens
    auto flush = [&] {
      if (pending.empty()) return;
      if (!find_invalid_utf8(pending)) {
        out.push_back(pending);
      } else {
        for (size_t k = 0; k < pending.size(); ++k) out.push_back(kReplacementChar);  // one per byte
      }
      pending.clear();
    };
    for (std::string& t : tokens) {
      if (auto b = parse_byte_token(t)) {
        pending.push_back(static_cast<char>(*b));
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }

 private:
  static std::optional<uint8_t> parse_byte_token(const std::string& t) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return std::nullopt;
    int v = 0;
    for (int k = 3; k < 5; ++k) {
      const char c = t[k];
      int d;
      if (c >= '0' && c <= '9') {
        d = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        d = c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        d = c - 'A' + 10;
      } else {
        return std::nullopt;
      }
      v = v * 16 + d;
    }
    return static_cast<uint8_t>(v);
  }
};

class FuseDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

class StripDecoder final : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) {
      // Char boundaries of t.
      std::vector<size_t> bounds;
      std::vector<char32_t> cps;
      size_t i = 0;
      while (i < t.size()) {
        bounds.push_back(i);
        cps.push_back(next_cp(t, i));
      }
      bounds.push_back(t.size());
      size_t first = 0;
      for (size_t k = 0; k < std::min(start_, cps.size()) && cps[k] == content_; ++k) first = k + 1;
      size_t last = cps.size();
      for (size_t k = 0; k < std::min(stop_, cps.size()) && cps[cps.size() - 1 - k] == content_; ++k)
        last = cps.size() - 1 - k;
      t = first < last ? t.substr(bounds[first], bounds[last] - bounds[first]) : std::string();
    }
  }

 private:
  char32_t content_;
  size_t start_, stop_;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(Pattern p, std::string content) : pattern_(std::move(p)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<Span> m;
    for (std::string& t : tokens) {
      pattern_.find_all(t, m);
      if (m.empty()) continue;
      std::string out;
      size_t prev = 0;
      for (const auto& [b, e] : m) {
        out.append(t, prev, b - prev);
        out += content_;
        prev = e;
      }
      out.append(t, prev, std::string::npos);
      t = std::move(out);
    }
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& s : steps_) s->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

char32_t single_char(const std::string& s, const std::string& where, const char* field) {
  size_t i = 0;
  if (s.empty() || find_invalid_utf8(s)) fail("{}: field \"{}\" must be one character", where, field);
  const char32_t cp = next_cp(s, i);
  if (i != s.size()) fail("{}: field \"{}\" must be one character, got \"{}\"", where, field, s);
  return cp;
}

size_t non_negative(const nlohmann::json& j, const char* key, const std::string& where) {
  const int64_t v = json_util::opt_int(j, key, where).value_or(0);
  if (v < 0) fail("{}: field \"{}\" must be >= 0, got {}", where, key, v);
  return static_cast<size_t>(v);
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& where) {
  using namespace json_util;
  if (j.is_null()) return nullptr;
  const std::string type = get_string(j, "type", where);
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    MetaspaceConfig m = parse_metaspace(j, where);
    return std::make_unique<MetaspaceDecoder>(std::move(m.replacement), m.scheme);
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    return std::make_unique<StripDecoder>(single_char(get_string(j, "content", where), where, "content"),
                                          non_negative(j, "start", where), non_negative(j, "stop", where));
  }
  if (type == "Replace") {
    return std::make_unique<ReplaceDecoder>(
        Pattern::from_json(require(j, "pattern", where), where + ".pattern"),
        get_string(j, "content", where));
  }
  if (type == "Sequence") {
    const auto& list = require(j, "decoders", where);
    if (!list.is_array()) fail("{}: field \"decoders\" must be an array", where);
    std::vector<std::unique_ptr<Decoder>> steps;
    for (size_t i = 0; i < list.size(); ++i)
      if (auto d = make_decoder(list[i], fmt::format("{}.decoders[{}]", where, i)))
        steps.push_back(std::move(d));
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  fail(
      "{}: unsupported decoder type \"{}\" (supported: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, "
      "Replace, "
      "Sequence)",
      where, type);
}

}  // namespace bidora::tok
