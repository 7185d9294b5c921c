#pragma once
// Incremental detokenisation for streaming output. Decoding token by token and concatenating is
// wrong in two ways: a UTF-8 character split over byte tokens (byte-level BPE, SentencePiece byte
// fallback) decodes to U+FFFD halves, and SentencePiece/Metaspace decoders treat a sequence's
// first token differently from later ones (the leading space). So the whole generated id list is
// decoded after every token and only the new suffix is released, holding back a trailing run of
// U+FFFD (an incomplete character: the next token may complete it) and any tail that could be the
// start of a stop string. A stop string ends the text before it (it is not part of the output).
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bidora {

class TextStream {
 public:
  // decode: ids -> text (Tokenizer::decode with skip_special_tokens).
  using DecodeFn = std::function<std::string(std::span<const int32_t>)>;
  explicit TextStream(DecodeFn decode, std::vector<std::string> stop_strings = {});

  // Adds a generated token; returns the text that became final with it (possibly empty).
  std::string push(int32_t id);
  // End of generation: returns the rest, the held-back tail included (up to a stop string).
  std::string finish();

  bool stopped() const { return stopped_; }  // a stop string appeared
  // Everything released so far.
  const std::string& text() const { return released_; }

 private:
  // Releases full[released_.size(), end) if full starts with what was released.
  std::string release(const std::string& full, size_t end);

  DecodeFn decode_;
  std::vector<std::string> stops_;
  std::vector<int32_t> ids_;
  std::string released_;
  bool stopped_ = false;
};

// Bytes at the end of `s` that form a run of U+FFFD (EF BF BD) characters.
size_t trailing_replacement_bytes(std::string_view s);

}  // namespace bidora
