// Each pipeline stage on small hand-made inputs whose expected outputs follow from the Rust
// `tokenizers` definitions (see the comments), including options the real fixtures don't use.
#include <gtest/gtest.h>

#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer_test_util.h"

namespace bidora::test {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;
using V = std::vector<std::string>;

V pre_tokenize(const json& j, const std::string& text, bool at_origin = true) {
  auto p = tok::make_pre_tokenizer(j, "test");
  std::vector<tok::Piece> pieces{{text, at_origin}};
  p->pre_tokenize(pieces);
  V out;
  for (auto& x : pieces) out.push_back(x.text);
  return out;
}

std::string normalize(const json& j, std::string s) {
  tok::make_normalizer(j, "test")->normalize(s);
  return s;
}

std::string decode(const json& j, V tokens) {
  tok::make_decoder(j, "test")->decode_chain(tokens);
  std::string out;
  for (auto& t : tokens) out += t;
  return out;
}

// --- BPE ----------------------------------------------------------------------------------

json abc_vocab() {
  return {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}, {"aa", 6}};
}

TEST(Bpe, LowestRankMergesFirst) {
  EXPECT_EQ(make_tokenizer(bpe_json(abc_vocab(), {"b c", "a b", "a bc"})).encode("abc", false), (Ids{5}));
  // (a,b) has the better rank here, and there is no merge (ab, c): stops at ab + c.
  EXPECT_EQ(make_tokenizer(bpe_json(abc_vocab(), {"a b", "b c", "a bc"})).encode("abc", false), (Ids{3, 2}));
}

TEST(Bpe, TiesGoLeftmost) {
  EXPECT_EQ(make_tokenizer(bpe_json(abc_vocab(), {"a a"})).encode("aaa", false), (Ids{6, 0}));
  EXPECT_EQ(make_tokenizer(bpe_json(abc_vocab(), {"a a"})).encode("aaaa", false), (Ids{6, 6}));
}

TEST(Bpe, ArrayMergesEqualStringMerges) {
  const json arr = json::array({json::array({"b", "c"}), json::array({"a", "bc"})});
  EXPECT_EQ(make_tokenizer(bpe_json(abc_vocab(), arr)).encode("abc", false), (Ids{5}));
  // Only the array form can hold a token with a space.
  const json vocab = {{"a", 0}, {" ", 1}, {"a ", 2}, {"a  ", 3}};
  const json merges = json::array({json::array({"a", " "}), json::array({"a ", " "})});
  EXPECT_EQ(make_tokenizer(bpe_json(vocab, merges)).encode("a  ", false), (Ids{3}));
}

TEST(Bpe, DuplicateMergeLaterRankWins) {
  // "a b" appears twice; its rank becomes 2 (after "b c"), so "abc" -> a + bc -> abc.
  EXPECT_EQ(make_tokenizer(bpe_json(abc_vocab(), {"a b", "b c", "a b", "a bc"})).encode("abc", false),
            (Ids{5}));
}

TEST(Bpe, IgnoreMergesUsesWholeWordFirst) {
  const json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"abc", 4}};
  EXPECT_EQ(make_tokenizer(bpe_json(vocab, {"a b"})).encode("abc", false), (Ids{3, 2}));
  EXPECT_EQ(
      make_tokenizer(bpe_json(vocab, {"a b"}, {{"model", {{"ignore_merges", true}}}})).encode("abc", false),
      (Ids{4}));
}

TEST(Bpe, SubwordPrefixAndSuffix) {
  const json pv = {{"a", 0}, {"##b", 1}, {"ab", 2}, {"b", 3}};
  auto t = make_tokenizer(bpe_json(pv, {"a ##b"}, {{"model", {{"continuing_subword_prefix", "##"}}}}));
  EXPECT_EQ(t.encode("ab", false), (Ids{2}));
  EXPECT_EQ(t.encode("b", false), (Ids{3}));  // first char: no prefix
  const json sv = {{"a", 0}, {"b</w>", 1}, {"ab</w>", 2}, {"b", 3}};
  auto s = make_tokenizer(bpe_json(sv, {"a b</w>"}, {{"model", {{"end_of_word_suffix", "</w>"}}}}));
  EXPECT_EQ(s.encode("ab", false), (Ids{2}));
}

json byte_vocab(json v) {
  for (int b = 0; b < 256; ++b) v[fmt::format("<0x{:02X}>", b)] = 100 + b;
  return v;
}

TEST(Bpe, ByteFallbackAndUnk) {
  auto bf = make_tokenizer(bpe_json(byte_vocab({{"a", 0}, {"<unk>", 1}}), json::array(),
                                    {{"model", {{"byte_fallback", true}, {"unk_token", "<unk>"}}}}));
  EXPECT_EQ(bf.encode("a\xC3\xA9", false), (Ids{0, 100 + 0xC3, 100 + 0xA9}));
  const json unk_vocab = {{"a", 0}, {"<unk>", 1}};
  auto fused = make_tokenizer(
      bpe_json(unk_vocab, json::array(), {{"model", {{"unk_token", "<unk>"}, {"fuse_unk", true}}}}));
  EXPECT_EQ(fused.encode("axyza", false), (Ids{0, 1, 0}));
  auto unfused = make_tokenizer(bpe_json(unk_vocab, json::array(), {{"model", {{"unk_token", "<unk>"}}}}));
  EXPECT_EQ(unfused.encode("axyza", false), (Ids{0, 1, 1, 1, 0}));
  // No unk token and no byte fallback: unknown chars are silently dropped (Rust behaviour).
  EXPECT_EQ(make_tokenizer(bpe_json(unk_vocab, json::array())).encode("axa", false), (Ids{0, 0}));
  // Byte fallback needs ALL the bytes of the char; otherwise the unk path is taken.
  json partial = byte_vocab(unk_vocab);
  partial.erase("<0xA9>");
  auto p = make_tokenizer(
      bpe_json(partial, json::array(), {{"model", {{"byte_fallback", true}, {"unk_token", "<unk>"}}}}));
  EXPECT_EQ(p.encode("\xC3\xA9", false), (Ids{1}));
  // An unk token that is not in the vocabulary is an error when it is needed.
  auto broken =
      make_tokenizer(bpe_json(json{{"a", 0}}, json::array(), {{"model", {{"unk_token", "<unk>"}}}}));
  EXPECT_EQ(broken.encode("a", false), (Ids{0}));
  EXPECT_THROW(broken.encode("x", false), Error);
}

TEST(Bpe, LongWordsAreNotQuadratic) {
  // 200k identical chars with a merge chain: must finish quickly (heap algorithm, no cache).
  const json vocab = {{"a", 0}, {"aa", 1}, {"aaaa", 2}};
  auto t = make_tokenizer(bpe_json(vocab, {"a a", "aa aa"}));
  const Ids ids = t.encode(std::string(200001, 'a'), false);
  ASSERT_EQ(ids.size(), 50001u);
  EXPECT_EQ(ids.front(), 2);
  EXPECT_EQ(ids.back(), 0);
}

// --- Added tokens ---------------------------------------------------------------------------

json char_vocab() {
  json v = json::object();
  int id = 0;
  for (char c = ' '; c <= '~'; ++c) v[std::string(1, c)] = id++;
  v["\xE2\x96\x81"] = id++;  // "▁"
  return v;
}

int32_t cid(char c) {
  return c - ' ';
}

json added(const std::string& content, int id, json flags = json::object()) {
  json t = {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
            {"rstrip", false}, {"normalized", false}, {"special", true}};
  for (auto it = flags.begin(); it != flags.end(); ++it) t[it.key()] = it.value();
  return t;
}

TEST(AddedTokens, LeftmostLongestAndStripFlags) {
  json j = bpe_json(char_vocab(), json::array());
  j["added_tokens"] = json::array({added("<t", 200), added("<tok>", 201), added("tok>", 202)});
  auto t = make_tokenizer(j);
  EXPECT_EQ(t.encode("x<tok>", false), (Ids{cid('x'), 201}));
  EXPECT_EQ(t.encode("<to", false), (Ids{200, cid('o')}));

  j["added_tokens"] = json::array({added("<tok>", 201, {{"lstrip", true}})});
  EXPECT_EQ(make_tokenizer(j).encode("a  <tok>b", false), (Ids{cid('a'), 201, cid('b')}));
  j["added_tokens"] = json::array({added("<tok>", 201, {{"rstrip", true}})});
  EXPECT_EQ(make_tokenizer(j).encode("a<tok> \t b", false), (Ids{cid('a'), 201, cid('b')}));
  EXPECT_EQ(make_tokenizer(j).encode("a  <tok>b", false), (Ids{cid('a'), cid(' '), cid(' '), 201, cid('b')}));
  // lstrip never reaches into the previous token.
  j["added_tokens"] =
      json::array({added("<x>", 203, {{"rstrip", true}}), added("<tok>", 201, {{"lstrip", true}})});
  EXPECT_EQ(make_tokenizer(j).encode("<x>  <tok>", false), (Ids{203, 201}));
}

TEST(AddedTokens, SingleWord) {
  json j = bpe_json(char_vocab(), json::array());
  j["added_tokens"] = json::array({added("tok", 201, {{"single_word", true}})});
  auto t = make_tokenizer(j);
  EXPECT_EQ(t.encode("a tok b", false), (Ids{cid('a'), cid(' '), 201, cid(' '), cid('b')}));
  EXPECT_EQ(t.encode("atok", false), (Ids{cid('a'), cid('t'), cid('o'), cid('k')}));
  EXPECT_EQ(t.encode("tok_", false), (Ids{cid('t'), cid('o'), cid('k'), cid('_')}));  // _ is a word char
  EXPECT_EQ(t.encode("tok!", false), (Ids{201, cid('!')}));
}

TEST(AddedTokens, NormalizedTokensMatchAfterNormalization) {
  json j = bpe_json(char_vocab(), json::array());
  j["normalizer"] = {{"type", "Lowercase"}};
  j["added_tokens"] =
      json::array({added("hey", 201, {{"normalized", true}, {"special", false}}), added("RAW", 202)});
  auto t = make_tokenizer(j);
  EXPECT_EQ(t.encode("HEY!", false), (Ids{201, cid('!')}));  // lowercased first, then matched
  EXPECT_EQ(t.encode("RAW", false), (Ids{202}));             // raw tokens match before normalization
  EXPECT_EQ(t.encode("raw", false), (Ids{cid('r'), cid('a'), cid('w')}));
  EXPECT_FALSE(t.is_special(201));
  EXPECT_TRUE(t.is_special(202));
  EXPECT_EQ(t.decode(Ids{201, 202, cid('!')}, true), "hey !");  // no decoder: tokens joined by spaces
}

TEST(AddedTokens, TokenizerConfigAddsMissingOnes) {
  json j = bpe_json(char_vocab(), json::array());
  j["added_tokens"] = json::array({added("<a>", 300)});
  json cfg = {{"added_tokens_decoder",
               {{"300", {{"content", "<ignored>"}, {"special", true}}},
                {"301", {{"content", "<b>"}, {"special", true}}}}}};
  auto t = make_tokenizer(j, cfg);
  EXPECT_EQ(t.encode("<a><b>", false), (Ids{300, 301}));
  EXPECT_FALSE(t.token_to_id("<ignored>").has_value());  // tokenizer.json wins for id 300
  EXPECT_EQ(t.vocab_size(), 302u);
}

// --- Normalizers ----------------------------------------------------------------------------

TEST(Normalizers, Types) {
  EXPECT_EQ(normalize({{"type", "NFC"}}, "e\xCC\x81"), "\xC3\xA9");
  EXPECT_EQ(normalize({{"type", "NFKD"}}, "\xEF\xAC\x81"), "fi");
  EXPECT_EQ(normalize({{"type", "Lowercase"}}, "HeLLo \xC3\x89"), "hello \xC3\xA9");
  EXPECT_EQ(
      normalize({{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}}, " \t x y \xE3\x80\x80"),
      "x y");
  EXPECT_EQ(normalize({{"type", "Strip"}, {"strip_left", false}, {"strip_right", true}}, "  x  "), "  x");
  EXPECT_EQ(normalize({{"type", "Prepend"}, {"prepend", "_"}}, "x"), "_x");
  EXPECT_EQ(normalize({{"type", "Prepend"}, {"prepend", "_"}}, ""), "");  // only non-empty pieces
  EXPECT_EQ(
      normalize({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}, "a b  c"),
      "a\xE2\x96\x81"
      "b\xE2\x96\x81\xE2\x96\x81"
      "c");
  EXPECT_EQ(
      normalize({{"type", "Replace"}, {"pattern", {{"Regex", " {2,}"}}}, {"content", " "}}, "a    b  c d"),
      "a b c d");
  const json seq = {{"type", "Sequence"},
                    {"normalizers",
                     {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                      {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}};
  EXPECT_EQ(normalize(seq, "Hi you"), "\xE2\x96\x81Hi\xE2\x96\x81you");  // legacy Llama
}

// --- Pre-tokenizers -------------------------------------------------------------------------

TEST(PreTokenizers, ByteLevelWithGpt2Regex) {
  const json bl = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  EXPECT_EQ(pre_tokenize(bl, "Hello world!"), (V{"\xC4\xA0Hello", "\xC4\xA0world", "!"}));
  const json no_prefix = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
  EXPECT_EQ(pre_tokenize(no_prefix, "a b\n"), (V{"a\xC4\xA0"
                                                 "b\xC4\x8A"}));
}

TEST(PreTokenizers, MetaspaceSchemes) {
  const std::string u = "\xE2\x96\x81";  // ▁
  auto ms = [&](const char* scheme, bool split) {
    return json{{"type", "Metaspace"}, {"replacement", u}, {"prepend_scheme", scheme}, {"split", split}};
  };
  EXPECT_EQ(pre_tokenize(ms("always", true), "Hey friend!"), (V{u + "Hey", u + "friend!"}));
  EXPECT_EQ(pre_tokenize(ms("always", true), "Hey   friend"), (V{u + "Hey", u, u, u + "friend"}));
  EXPECT_EQ(pre_tokenize(ms("never", true), "Hey friend"), (V{"Hey", u + "friend"}));
  EXPECT_EQ(pre_tokenize(ms("first", false), "Hey friend", true), (V{u + "Hey" + u + "friend"}));
  EXPECT_EQ(pre_tokenize(ms("first", false), "Hey friend", false), (V{"Hey" + u + "friend"}));
  // Legacy field: add_prefix_space false means never.
  EXPECT_EQ(pre_tokenize({{"type", "Metaspace"}, {"replacement", u}, {"add_prefix_space", false}}, "a b"),
            (V{"a", u + "b"}));
}

TEST(PreTokenizers, MetaspaceFirstSkipsPiecesAfterALeadingAddedToken) {
  json j = bpe_json(char_vocab(), json::array());
  j["pre_tokenizer"] = {
      {"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}, {"split", true}};
  j["added_tokens"] = json::array({added("<t>", 200)});
  auto t = make_tokenizer(j);
  const int32_t meta = 95;  // "▁"
  EXPECT_EQ(t.encode("a b", false), (Ids{meta, cid('a'), meta, cid('b')}));
  EXPECT_EQ(t.encode("<t>a b", false), (Ids{200, cid('a'), meta, cid('b')}));
}

TEST(PreTokenizers, DigitsAndSplitAndSequence) {
  EXPECT_EQ(pre_tokenize({{"type", "Digits"}, {"individual_digits", true}}, "ab123c4"),
            (V{"ab", "1", "2", "3", "c", "4"}));
  EXPECT_EQ(pre_tokenize({{"type", "Digits"}, {"individual_digits", false}}, "ab123c4"),
            (V{"ab", "123", "c", "4"}));
  EXPECT_EQ(pre_tokenize({{"type", "Digits"}, {"individual_digits", true}}, "\xD9\xA1\xD9\xA2"),
            (V{"\xD9\xA1", "\xD9\xA2"}));  // Unicode digits count
  const json split = {{"type", "Split"},
                      {"pattern", {{"String", " "}}},
                      {"behavior", "MergedWithPrevious"},
                      {"invert", false}};
  EXPECT_EQ(pre_tokenize(split, "a b  c"), (V{"a ", "b ", " ", "c"}));
  const json seq = {{"type", "Sequence"},
                    {"pretokenizers",
                     {{{"type", "Digits"}, {"individual_digits", true}},
                      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}}}};
  EXPECT_EQ(pre_tokenize(seq, "x12 y"), (V{"x", "1", "2", "\xC4\xA0y"}));  // SmolLM2 layout
}

// --- Post-processors ------------------------------------------------------------------------

TEST(PostProcessors, TemplateRobertaBertSequence) {
  auto run = [](const json& j, Ids ids) {
    tok::make_post_processor(j, "test")->process(ids);
    return ids;
  };
  const json tmpl = {{"type", "TemplateProcessing"},
                     {"single",
                      {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                       {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                       {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
                     {"special_tokens",
                      {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}},
                       {"</s>", {{"id", "</s>"}, {"ids", {2, 3}}, {"tokens", {"</", "s>"}}}}}}};
  EXPECT_EQ(run(tmpl, {7, 8}), (Ids{1, 7, 8, 2, 3}));
  EXPECT_EQ(run({{"type", "RobertaProcessing"}, {"cls", {"<s>", 0}}, {"sep", {"</s>", 2}}}, {5}),
            (Ids{0, 5, 2}));
  EXPECT_EQ(run({{"type", "BertProcessing"}, {"cls", {"[CLS]", 101}}, {"sep", {"[SEP]", 102}}}, {5}),
            (Ids{101, 5, 102}));
  EXPECT_EQ(run({{"type", "Sequence"}, {"processors", {{{"type", "ByteLevel"}}, tmpl}}}, {}), (Ids{1, 2, 3}));
  // add_special_tokens=false never runs the post-processor.
  json j = bpe_json(char_vocab(), json::array());
  j["post_processor"] = tmpl;
  auto t = make_tokenizer(j);
  EXPECT_EQ(t.encode("a", false), (Ids{cid('a')}));
  EXPECT_EQ(t.encode("a", true), (Ids{1, cid('a'), 2, 3}));
}

// --- Decoders -------------------------------------------------------------------------------

TEST(Decoders, Types) {
  EXPECT_EQ(decode({{"type", "ByteLevel"}}, {"\xC4\xA0Hello", "\xC4\xA0w\xC4\x8A", "<|x|>", "\n"}),
            " Hello w\n<|x|>\n");
  // Invalid byte sequences: one U+FFFD per maximal invalid subpart (Rust from_utf8_lossy).
  EXPECT_EQ(decode({{"type", "ByteLevel"}}, {byte_level("a\xE4\xBD"), byte_level("b\xFF")}),
            "a\xEF\xBF\xBD"
            "b\xEF\xBF\xBD");
  const json bf = {{"type", "ByteFallback"}};
  EXPECT_EQ(decode(bf, {"<0xC3>", "<0xA9>", "x", "<0xE4>", "<0xBD>"}), "\xC3\xA9x\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(decode(bf, {"<0x4a>", "<0x4G>"}), "J<0x4G>");  // lowercase hex accepted, bad hex passes
  EXPECT_EQ(decode({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}, {"  a ", " b"}), " a b");
  const std::string u = "\xE2\x96\x81";
  EXPECT_EQ(decode({{"type", "Metaspace"}, {"replacement", u}, {"prepend_scheme", "always"}},
                   {u + "Hey", u + "friend!"}),
            "Hey friend!");
  EXPECT_EQ(decode({{"type", "Metaspace"}, {"replacement", u}, {"prepend_scheme", "never"}}, {u + "Hey"}),
            " Hey");
  const json legacy = {{"type", "Sequence"},
                       {"decoders",
                        {{{"type", "Replace"}, {"pattern", {{"String", u}}}, {"content", " "}},
                         {{"type", "ByteFallback"}},
                         {{"type", "Fuse"}},
                         {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  EXPECT_EQ(decode(legacy, {u + "Hello", u + "w", "<0xC3>", "<0xA9>"}), "Hello w\xC3\xA9");
}

}  // namespace
}  // namespace bidora::test
