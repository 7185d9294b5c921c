#pragma once
// What the data pipeline needs from a tokenizer, as plain functions and values, so that every
// stage can be tested with a small fake tokenizer and only codec.cpp depends on the real one.
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bidora {
class Tokenizer;
}

namespace bidora::data {

// Tokenizes `text`; add_special_tokens runs the post-processor (BOS for Llama). Strings of added
// tokens inside the text become those tokens (transformers' default).
using EncodeFn = std::function<std::vector<int32_t>(std::string_view text, bool add_special_tokens)>;
// Decodes ids to text, special tokens included.
using DecodeFn = std::function<std::string(std::span<const int32_t> ids)>;

struct TextCodec {
  EncodeFn encode;
  DecodeFn decode;
  std::string bos_token;  // "" when the tokenizer has none (Qwen)
  std::string eos_token;
  int32_t eos_id = -1;
  // Padding id: the tokenizer's pad token, or EOS when it has none (Llama, Mistral). Padded
  // positions are masked by length, never by comparing ids with pad_id, so a real EOS keeps its
  // label even when pad_id == eos_id.
  int32_t pad_id = -1;
  bool pad_is_eos = false;
  std::string chat_template;  // tokenizer_config.json chat_template (Jinja), "" if none
};

// A codec backed by `tok`, which must outlive it. Throws bidora::Error when the tokenizer has no
// EOS token (responses could not be terminated).
TextCodec codec_for(const Tokenizer& tok);

}  // namespace bidora::data
