// tokenizer.json (+ tokenizer_config.json): load, then encode and decode a text.
// Input: tokenizer.json [NUL text [NUL tokenizer_config.json]]; without a text, a fixed one with
// ASCII, accents, CJK, digits, whitespace runs and ChatML / Llama special-token strings.
#include <string>
#include <vector>

#include "core/error.h"
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

namespace {
constexpr const char* kDefaultText =
    "Hello, world!  It's 2024: caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD 12345\n\t<|im_start|>user\n"
    "<s>[INST] x [/INST]</s><|endoftext|>  \xF0\x9F\x98\x80 end";
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = bidora::fuzz::split_nul(data, size, 3);
  const std::string json(parts[0]);
  const std::string text = parts.size() > 1 ? std::string(parts[1]) : kDefaultText;
  const std::string config = parts.size() > 2 ? std::string(parts[2]) : "";
  try {
    const bidora::Tokenizer tok = bidora::Tokenizer::from_json(json, config, "fuzz/tokenizer.json");
    (void)tok.vocab_size();
    (void)tok.chat_template();
    const auto& sp = tok.special();
    for (auto id : {sp.bos, sp.eos, sp.pad, sp.unk})
      if (id) (void)tok.id_to_token(*id);
    std::vector<int32_t> ids;
    try {
      ids = tok.encode(text, true);
      const std::vector<int32_t> raw = tok.encode(text, bidora::EncodeOptions{false, true});
      for (int32_t id : ids) {
        if (id < 0) __builtin_trap();
        (void)tok.is_special(id);
        const std::string piece = tok.id_to_token(id);
        if (!piece.empty()) (void)tok.token_to_id(piece);
      }
      (void)raw;
    } catch (const bidora::Error&) {  // invalid UTF-8 in the text
    }
    (void)tok.decode(ids, false);
    (void)tok.decode(ids, true);
    // Ids that are no token (negative, past the vocabulary) are dropped, never read.
    const std::vector<int32_t> odd = {-1, 0, 1, 2147483647, static_cast<int32_t>(tok.vocab_size())};
    (void)tok.decode(odd, false);
    (void)tok.id_to_token(-5);
  } catch (const bidora::Error&) {
  }
  return 0;
}
