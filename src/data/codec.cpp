#include "data/codec.h"

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace bidora::data {

TextCodec codec_for(const Tokenizer& tok) {
  const SpecialTokenIds& sp = tok.special();
  if (!sp.eos || sp.eos_token.empty())
    fail("the tokenizer defines no eos_token (tokenizer_config.json); bidora needs it to end every response");
  TextCodec c;
  c.encode = [&tok](std::string_view text, bool add_special) { return tok.encode(text, add_special); };
  c.decode = [&tok](std::span<const int32_t> ids) { return tok.decode(ids, /*skip_special_tokens=*/false); };
  c.bos_token = sp.bos_token;
  c.eos_token = sp.eos_token;
  c.eos_id = *sp.eos;
  c.pad_is_eos = !sp.pad || sp.pad_is_eos;
  c.pad_id = sp.pad ? *sp.pad : *sp.eos;
  c.chat_template = tok.chat_template();
  return c;
}

}  // namespace bidora::data
