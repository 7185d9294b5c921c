// Malformed tokenizer files are reported as bidora::Error naming the file and the field; random
// corruption never crashes (run this binary under -DBIDORA_SANITIZE=ON too).
#include <gtest/gtest.h>

#include <random>

#include "core/files.h"
#include "tokenizer/unicode.h"
#include "tokenizer_test_util.h"

namespace bidora::test {
namespace {

using nlohmann::json;

// A small tokenizer.json that uses every supported component type.
json full_featured() {
  json vocab = json::object();
  int id = 0;
  for (int b = 0; b < 256; ++b) vocab[byte_level(std::string(1, static_cast<char>(b)))] = id++;
  vocab[byte_level(" t")] = id++;
  vocab[byte_level("he")] = id++;
  vocab[byte_level(" the")] = id++;
  json j = bpe_json(vocab, json::array({json::array({byte_level(" "), "t"}), json::array({"h", "e"}),
                                        json::array({byte_level(" t"), "he"})}));
  j["added_tokens"] = {{{"id", id},
                        {"content", "<|end|>"},
                        {"single_word", false},
                        {"lstrip", false},
                        {"rstrip", false},
                        {"normalized", false},
                        {"special", true}}};
  j["normalizer"] = {
      {"type", "Sequence"},
      {"normalizers",
       {{{"type", "NFC"}}, {{"type", "Replace"}, {"pattern", {{"Regex", "\\s{3,}"}}}, {"content", "  "}}}}};
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern", {{"Regex", "\\p{N}{1,3}| ?\\p{L}+|\\s+(?!\\S)|\\s+| ?[^\\s\\p{L}\\p{N}]+"}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "Digits"}, {"individual_digits", false}},
        {{"type", "ByteLevel"},
         {"add_prefix_space", false},
         {"trim_offsets", false},
         {"use_regex", false}}}}};
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single",
       {{{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
        {{"SpecialToken", {{"id", "<|end|>"}, {"type_id", 0}}}}}},
      {"special_tokens", {{"<|end|>", {{"id", "<|end|>"}, {"ids", {id}}, {"tokens", {"<|end|>"}}}}}}};
  j["decoder"] = {{"type", "Sequence"}, {"decoders", {{{"type", "ByteLevel"}}, {{"type", "Fuse"}}}}};
  return j;
}

// Loading fails with an Error whose message contains every string in `needles`.
void expect_error(const std::string& tokenizer_json_text, const std::vector<std::string>& needles,
                  const std::string& config_text = "") {
  try {
    Tokenizer::from_json(tokenizer_json_text, config_text);
    ADD_FAILURE() << "expected an error for: " << tokenizer_json_text.substr(0, 300);
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& n : needles)
      EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
    EXPECT_NE(msg.find("tokenizer"), std::string::npos) << msg;  // names the file
  }
}

void expect_error(const json& j, const std::vector<std::string>& needles) {
  expect_error(j.dump(), needles);
}

TEST(BadInput, FullFeaturedFileWorks) {
  auto t = make_tokenizer(full_featured());
  const auto ids = t.encode("the  1234 the<|end|>", true);
  EXPECT_EQ(t.decode(ids, true), "the  1234 the");
  EXPECT_EQ(t.decode(ids, false), "the  1234 the<|end|><|end|>");
  EXPECT_EQ(t.encode(" the", false).size(), 1u);
}

TEST(BadInput, MissingFilesAndSyntax) {
  try {
    Tokenizer::from_dir("/nonexistent/dir");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir"), std::string::npos);
  }
  const std::string text = full_featured().dump();
  expect_error(text.substr(0, text.size() / 2), {"tokenizer.json", "invalid JSON"});
  expect_error(std::string("[1, 2]"), {"tokenizer.json", "expected a JSON object"});
  const std::string dir = make_temp_dir("tok-badcfg");
  write_text(dir + "/tokenizer.json", text);
  write_text(dir + "/tokenizer_config.json", "{\"eos_token\": ");
  EXPECT_THROW(Tokenizer::from_dir(dir), Error);
}

TEST(BadInput, ModelSection) {
  json j = full_featured();
  j.erase("model");
  expect_error(j, {"\"model\""});
  j = full_featured();
  j["model"]["vocab"] = json::array();
  expect_error(j, {"model.vocab", "object"});
  j = full_featured();
  j["model"]["vocab"]["x"] = "seven";
  expect_error(j, {"vocab[\"x\"]", "integer"});
  j = full_featured();
  j["model"]["vocab"]["x"] = -3;
  expect_error(j, {"vocab[\"x\"]", "out of range"});
  j = full_featured();
  j["model"]["vocab"]["x"] = 2000000000;
  expect_error(j, {"model.vocab", "sparse"});
  j = full_featured();
  j["model"]["merges"].push_back(json::array({"q", "zz"}));
  expect_error(j, {"model.merges[3]", "\"zz\"", "not in the vocabulary"});
  j = full_featured();
  j["model"]["merges"].push_back("nospace");
  expect_error(j, {"model.merges[3]", "left right"});
  j = full_featured();
  j["model"]["merges"].push_back(json::array({"a"}));
  expect_error(j, {"model.merges[3]", "pair of strings"});
  j = full_featured();
  j["model"]["merges"].push_back(json::array({"a", "b"}));  // "ab" is not in the vocab
  expect_error(j, {"model.merges[3]", "merged token \"ab\""});
  j = full_featured();
  j["model"]["dropout"] = 0.1;
  expect_error(j, {"dropout"});
  j = full_featured();
  j["model"]["type"] = "WordPiece";
  expect_error(j, {"model", "WordPiece", "only BPE"});
  j = full_featured();
  j["model"]["byte_fallback"] = "yes";
  expect_error(j, {"byte_fallback", "true or false"});
}

TEST(BadInput, ComponentSections) {
  json j = full_featured();
  j["normalizer"] = {{"type", "BertNormalizer"}};
  expect_error(j, {"normalizer", "BertNormalizer", "unsupported"});
  j = full_featured();
  j["normalizer"]["normalizers"][1]["pattern"] = {{"Regex", "(unclosed"}};
  expect_error(j, {"normalizer.normalizers[1].pattern.Regex", "invalid regex"});
  j = full_featured();
  j["normalizer"]["normalizers"][1]["pattern"] = {{"Glob", "*"}};
  expect_error(j, {"normalizer.normalizers[1].pattern", "String"});
  j = full_featured();
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways";
  expect_error(j, {"pre_tokenizer.pretokenizers[0]", "Sideways"});
  j = full_featured();
  j["pre_tokenizer"]["pretokenizers"][1] = {{"type", "Whitespace"}};
  expect_error(j, {"pre_tokenizer.pretokenizers[1]", "Whitespace"});
  j = full_featured();
  j["pre_tokenizer"]["pretokenizers"][0].erase("type");
  expect_error(j, {"pre_tokenizer.pretokenizers[0]", "\"type\""});
  j = full_featured();
  j["post_processor"]["single"][1]["SpecialToken"]["id"] = "<nope>";
  expect_error(j, {"post_processor.single[1]", "<nope>"});
  j = full_featured();
  j["post_processor"]["special_tokens"]["<|end|>"]["ids"] = {"x"};
  expect_error(j, {"post_processor.special_tokens[\"<|end|>\"].ids[0]", "integer"});
  j = full_featured();
  j["decoder"]["decoders"][0] = {{"type", "WordPiece"}};
  expect_error(j, {"decoder.decoders[0]", "WordPiece"});
  j = full_featured();
  j["decoder"] = {{"type", "Strip"}, {"content", "ab"}, {"start", 1}, {"stop", 0}};
  expect_error(j, {"decoder", "one character"});
  j = full_featured();
  j["added_tokens"][0].erase("content");
  expect_error(j, {"added_tokens[0]", "\"content\""});
  j = full_featured();
  j["added_tokens"][0]["id"] = -1;
  expect_error(j, {"added_tokens[0]", "out of range"});
  j = full_featured();
  j["added_tokens"] = {{"not", "an array"}};
  expect_error(j, {"added_tokens", "array"});
}

TEST(BadInput, TokenizerConfig) {
  const std::string t = full_featured().dump();
  expect_error(t, {"tokenizer_config.json", "eos_token", "<missing>", "not in"},
               R"({"eos_token": "<missing>"})");
  expect_error(t, {"tokenizer_config.json", "eos_token"}, R"({"eos_token": 42})");
  expect_error(t, {"tokenizer_config.json", "chat_template"}, R"({"chat_template": 7})");
  expect_error(t, {"tokenizer_config.json", "chat_template[0]"}, R"({"chat_template": [{"name": "x"}]})");
  expect_error(t, {"tokenizer_config.json", "added_tokens_decoder[\"abc\"]"},
               R"({"added_tokens_decoder": {"abc": {"content": "<x>"}}})");
  expect_error(t, {"tokenizer_config.json", "add_bos_token", "bos_token"},
               R"({"tokenizer_class": "LlamaTokenizerFast", "add_bos_token": true})");
  // A {"content": ...} object is accepted, a named chat template list too.
  auto tok = make_tokenizer(
      full_featured(),
      json{{"eos_token", {{"content", "<|end|>"}, {"__type", "AddedToken"}}},
           {"chat_template",
            {{{"name", "tool_use"}, {"template", "T"}}, {{"name", "default"}, {"template", "D"}}}}});
  EXPECT_EQ(tok.special().eos_token, "<|end|>");
  EXPECT_EQ(tok.chat_template(), "D");
}

// Random corruption of a valid file: loading must either succeed or throw bidora::Error.
TEST(BadInput, FuzzedTokenizerJsonNeverCrashes) {
  const std::string base = full_featured().dump();
  std::mt19937 rng(1234);
  int loaded = 0, rejected = 0;
  const char alphabet[] = "{}[]\":,0123456789-ae \\nul";
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s = base;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits; ++k) {
      const size_t pos = rng() % s.size();
      switch (rng() % 3) {
        case 0:
          s[pos] = alphabet[rng() % (sizeof(alphabet) - 1)];
          break;
        case 1:
          s.erase(pos, 1 + rng() % 8);
          break;
        default:
          s.insert(pos, 1, alphabet[rng() % (sizeof(alphabet) - 1)]);
          break;
      }
    }
    try {
      auto t = Tokenizer::from_json(s);
      (void)t.decode(t.encode("the 123 <|end|> x", true), false);
      ++loaded;
    } catch (const Error&) {
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "non-bidora exception " << e.what() << " for input " << s.substr(0, 400);
    }
  }
  EXPECT_GT(rejected, 1000);
  EXPECT_GT(loaded, 10);
}

// Random valid UTF-8 (controls, marks, CJK, Hangul, emoji, astral planes): no crash, and the
// byte-level round trip returns the NFC form of the input.
TEST(BadInput, FuzzedTextRoundTrips) {
  json j = full_featured();
  j["normalizer"] = {{"type", "NFC"}};
  auto tok = make_tokenizer(j);
  std::mt19937 rng(99);
  const char32_t ranges[][2] = {{0x20, 0x7E},     {0x0, 0x20},        {0x80, 0x7FF},    {0x300, 0x36F},
                                {0x4E00, 0x4E40}, {0xAC00, 0xAC10},   {0x1100, 0x1175}, {0x1F600, 0x1F64F},
                                {0xFFF0, 0xFFFD}, {0x10000, 0x10FFFF}};
  for (int iter = 0; iter < 500; ++iter) {
    std::string s;
    const int n = static_cast<int>(rng() % 40);
    for (int k = 0; k < n; ++k) {
      const auto& r = ranges[rng() % std::size(ranges)];
      char32_t cp = r[0] + rng() % (r[1] - r[0] + 1);
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
      tok::append_utf8(s, cp);
    }
    EXPECT_EQ(tok.decode(tok.encode(s, false), false), tok::normalize(s, tok::NormalForm::NFC)) << iter;
  }
}

}  // namespace
}  // namespace bidora::test
