// Streaming detokenisation (generate/text_stream.h) with real tokenizers: byte-level BPE (Qwen3)
// where a rare character is split over byte tokens, and SentencePiece-style BPE with byte fallback
// and Metaspace spaces (Llama 2), where decoding token by token loses the spaces. The streamed
// pieces must never contain a U+FFFD half and must add up to the decode of the whole list. Then
// stop strings with a scripted decoder: the text ends before the stop string, and a tail that
// could start one is held back until it is resolved.
#include <gtest/gtest.h>

#include <map>

#include "generate/text_stream.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"

namespace bidora {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

struct Streamed {
  std::vector<std::string> pieces;
  std::string joined;
};

Streamed stream_all(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  TextStream s([&](std::span<const int32_t> x) { return tok.decode(x, true); });
  Streamed out;
  for (int32_t id : ids) {
    out.pieces.push_back(s.push(id));
    out.joined += out.pieces.back();
  }
  out.pieces.push_back(s.finish());
  out.joined += out.pieces.back();
  EXPECT_EQ(s.text(), out.joined);
  return out;
}

Tokenizer fixture_tokenizer(const std::string& name) {
  return Tokenizer::from_dir(test::fixture_dir() + "/npm/" + name);
}

TEST(TextStream, ByteLevelCharactersSplitOverTokensAreHeldUntilComplete) {
  const Tokenizer tok = fixture_tokenizer("qwen3");
  const std::string text = "Grüße, 世界! 𝄞𓀀 done";
  const std::vector<int32_t> ids = tok.encode(text, false);
  // The test needs a character whose bytes span several tokens.
  bool split = false;
  for (int32_t id : ids) split |= tok.decode(std::vector<int32_t>{id}, true).find(kFffd) != std::string::npos;
  ASSERT_TRUE(split) << "no token of the text decodes to a partial character";
  const Streamed s = stream_all(tok, ids);
  EXPECT_EQ(s.joined, text);
  for (const auto& p : s.pieces) EXPECT_EQ(p.find(kFffd), std::string::npos) << p;
}

TEST(TextStream, SentencePieceSpacesAndByteFallbackComeOutRight) {
  const Tokenizer tok = fixture_tokenizer("llama2");
  const std::string text = "Hello world, ünïcödé 𝄞 and more words";
  const std::vector<int32_t> ids = tok.encode(text, false);
  std::string per_token;
  for (int32_t id : ids) per_token += tok.decode(std::vector<int32_t>{id}, true);
  ASSERT_NE(per_token, text) << "token-by-token decoding should lose the Metaspace spaces";
  const Streamed s = stream_all(tok, ids);
  EXPECT_EQ(s.joined, tok.decode(ids, true));
  EXPECT_EQ(s.joined, text);
  for (const auto& p : s.pieces) EXPECT_EQ(p.find(kFffd), std::string::npos) << p;
}

// ids are indices into `pieces`; decode concatenates them.
TextStream::DecodeFn scripted(const std::vector<std::string>& pieces) {
  return [pieces](std::span<const int32_t> ids) {
    std::string s;
    for (int32_t i : ids) s += pieces[static_cast<size_t>(i)];
    return s;
  };
}

TEST(TextStream, StopStringEndsTheTextBeforeIt) {
  TextStream s(scripted({"Hel", "lo", " ST", "OP", " more"}), {"STOP", "never"});
  EXPECT_EQ(s.push(0), "Hel");
  EXPECT_EQ(s.push(1), "lo");
  EXPECT_EQ(s.push(2), " ");  // "ST" could start "STOP": held back
  EXPECT_FALSE(s.stopped());
  EXPECT_EQ(s.push(3), "");
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.push(4), "");
  EXPECT_EQ(s.finish(), "");
  EXPECT_EQ(s.text(), "Hello ");
}

TEST(TextStream, HeldTailIsReleasedWhenItDoesNotBecomeAStopString) {
  TextStream s(scripted({"ab", "S", "T", "x", "S"}), {"STOP"});
  EXPECT_EQ(s.push(0), "ab");
  EXPECT_EQ(s.push(1), "");
  EXPECT_EQ(s.push(2), "");
  EXPECT_EQ(s.push(3), "STx");
  EXPECT_EQ(s.push(4), "");
  EXPECT_EQ(s.finish(), "S");  // the end of generation releases the held tail
  EXPECT_EQ(s.text(), "abSTxS");
  EXPECT_FALSE(s.stopped());
}

TEST(TextStream, StopStringSpanningTokensAndAtTheStart) {
  TextStream s(scripted({"x", "<e", "nd>", "tail"}), {"<end>"});
  EXPECT_EQ(s.push(0), "x");
  EXPECT_EQ(s.push(1), "");
  EXPECT_EQ(s.push(2), "");
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.text(), "x");
  TextStream first(scripted({"<end>", "y"}), {"<end>"});
  EXPECT_EQ(first.push(0), "");
  EXPECT_TRUE(first.stopped());
  EXPECT_EQ(first.text(), "");
}

TEST(TextStream, TrailingReplacementBytes) {
  EXPECT_EQ(trailing_replacement_bytes("abc"), 0u);
  EXPECT_EQ(trailing_replacement_bytes("ab" + kFffd), 3u);
  EXPECT_EQ(trailing_replacement_bytes(kFffd + kFffd), 6u);
  EXPECT_EQ(trailing_replacement_bytes(kFffd + "a"), 0u);
  EXPECT_EQ(trailing_replacement_bytes(""), 0u);
}

}  // namespace
}  // namespace bidora
