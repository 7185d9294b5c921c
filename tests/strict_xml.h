#pragma once
// A strict little XML parser for the SVG tests: rejects anything a browser's XML parser would reject
// in what bidora's plots emit (unbalanced tags, unquoted or duplicate attributes, entities other than
// the five XML ones and character references, invalid UTF-8, control characters; comments, CDATA and
// DOCTYPE are not expected and rejected too), and returns the element tree for the tests to read.
#include <cctype>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/unicode.h"

namespace bidora::test {

struct Node {
  std::string name;
  std::map<std::string, std::string> attrs;  // values unescaped
  std::string text;                          // direct text content, unescaped
  std::vector<Node> children;

  std::string attr(const std::string& k) const {
    auto it = attrs.find(k);
    return it == attrs.end() ? std::string() : it->second;
  }
  double num(const std::string& k) const {
    const std::string v = attr(k);
    if (v.empty()) throw std::runtime_error("<" + name + "> has no attribute " + k);
    return std::stod(v);
  }
};

class StrictXml {
 public:
  static Node parse(std::string_view s) {
    if (auto bad = tok::find_invalid_utf8(s))
      throw std::runtime_error("invalid UTF-8 at " + std::to_string(*bad));
    for (size_t i = 0; i < s.size(); ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
        throw std::runtime_error("control character at " + std::to_string(i));
    }
    StrictXml p(s);
    if (p.s_.substr(0, 5) == "<?xml") {
      const size_t end = p.s_.find("?>");
      if (end == std::string_view::npos) p.error("unterminated XML declaration");
      p.i_ = end + 2;
    }
    p.skip_ws();
    Node root = p.element();
    p.skip_ws();
    if (p.i_ != p.s_.size()) p.error("content after the root element");
    return root;
  }

 private:
  explicit StrictXml(std::string_view s) : s_(s) {}
  [[noreturn]] void error(const std::string& what) const {
    throw std::runtime_error(what + " at byte " + std::to_string(i_) + ": '" +
                             std::string(s_.substr(i_, 40)) + "'");
  }
  bool at_end() const { return i_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[i_]; }
  void expect(char c) {
    if (peek() != c) error(std::string("expected '") + c + "'");
    ++i_;
  }
  void skip_ws() {
    while (!at_end() && (peek() == ' ' || peek() == '\n' || peek() == '\t' || peek() == '\r')) ++i_;
  }
  std::string name() {
    const size_t b = i_;
    auto ok = [](char c, bool first) {
      return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':' ||
             (!first && (std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.'));
    };
    while (!at_end() && ok(peek(), i_ == b)) ++i_;
    if (i_ == b) error("expected a name");
    return std::string(s_.substr(b, i_ - b));
  }
  // Character data up to `stop`, entities resolved; a raw '<' (or '&' not starting an entity) is an error.
  std::string chars(char stop) {
    std::string out;
    while (!at_end() && peek() != stop) {
      const char c = peek();
      if (c == '<') error("raw '<' in character data");
      if (c != '&') {
        out += c;
        ++i_;
        continue;
      }
      const size_t semi = s_.find(';', i_);
      if (semi == std::string_view::npos || semi - i_ > 10) error("unterminated entity");
      const std::string_view ent = s_.substr(i_ + 1, semi - i_ - 1);
      static const std::map<std::string_view, char> named{
          {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}};
      if (auto it = named.find(ent); it != named.end()) {
        out += it->second;
      } else if (ent.size() > 1 && ent[0] == '#') {
        out += '?';  // a character reference: valid, its value does not matter here
        for (char d : ent.substr(ent[1] == 'x' ? 2 : 1))
          if (!std::isxdigit(static_cast<unsigned char>(d))) error("bad character reference");
      } else {
        error("unknown entity");
      }
      i_ = semi + 1;
    }
    return out;
  }
  Node element() {
    expect('<');
    Node n;
    n.name = name();
    for (;;) {
      const size_t before = i_;
      skip_ws();
      if (peek() == '/') {
        ++i_;
        expect('>');
        return n;
      }
      if (peek() == '>') {
        ++i_;
        break;
      }
      if (i_ == before) error("expected whitespace before an attribute");
      const std::string key = name();
      expect('=');
      expect('"');
      std::string value = chars('"');
      expect('"');
      if (!n.attrs.emplace(key, std::move(value)).second) error("duplicate attribute " + key);
    }
    for (;;) {
      if (at_end()) error("unclosed <" + n.name + ">");
      if (s_.substr(i_, 2) == "</") {
        i_ += 2;
        if (name() != n.name) error("mismatched closing tag for <" + n.name + ">");
        skip_ws();
        expect('>');
        return n;
      }
      if (peek() == '<') {
        if (s_.substr(i_, 2) == "<!" || s_.substr(i_, 2) == "<?") error("unexpected markup declaration");
        n.children.push_back(element());
      } else {
        n.text += chars('<');
      }
    }
  }

  std::string_view s_;
  size_t i_ = 0;
};

inline void collect(const Node& n, const std::function<bool(const Node&)>& pred,
                    std::vector<const Node*>& out) {
  if (pred(n)) out.push_back(&n);
  for (const Node& c : n.children) collect(c, pred, out);
}
inline std::vector<const Node*> find_all(const Node& root, const std::function<bool(const Node&)>& pred) {
  std::vector<const Node*> out;
  collect(root, pred, out);
  return out;
}
inline const Node* by_id(const Node& root, const std::string& id) {
  auto v = find_all(root, [&](const Node& n) { return n.attr("id") == id; });
  return v.size() == 1 ? v[0] : nullptr;
}

}  // namespace bidora::test
