#pragma once
// Hugging Face tokenizer.json (+ tokenizer_config.json) in C++: BPE, byte-level and
// SentencePiece-style, producing exactly the ids the `tokenizers` library produces.
// CONTRACT shared by src/tokenizer (implementation) and src/data (user). Extend, don't break.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bidora {

// Resolution (Tokenizer::from_dir / from_files):
//  - tokenizer_config.json decides whenever it has the key (`bos_token`, `eos_token`, `pad_token`,
//    `unk_token`; a string or {"content": ...}; an explicit null means "none"). Its tokens must
//    exist in tokenizer.json, else Error.
//  - keys it lacks fall back to generation_config.json, then config.json (`*_token_id`, an int
//    or a list whose first element is used); unk falls back to the BPE model's unk_token.
//  - no pad token: pad = eos and pad_is_eos = true. Padded positions must then be masked by
//    length / attention mask, never by input_ids == pad, or every real EOS would lose its label.
struct SpecialTokenIds {
  std::optional<int32_t> bos, eos, pad, unk;
  std::string bos_token, eos_token, pad_token, unk_token;  // strings, "" when absent
  bool pad_is_eos = false;                                 // no pad token configured: eos is used for padding
  // Generation stop ids: eos plus generation_config.json eos_token_id (int or list), unique, in
  // that order (e.g. Llama 3.1 Instruct: 128009, 128001, 128008).
  std::vector<int32_t> stop_ids;
};

struct EncodeOptions {
  // Run the post-processor (e.g. BOS for Llama). encode("", opts) returns exactly what it adds.
  bool add_special_tokens = true;
  // transformers split_special_tokens: special added tokens written in the text are NOT
  // recognised and are tokenized as ordinary text (use it to escape untrusted user content).
  // Non-special added tokens (Qwen3 <think>) are still recognised, as in HF.
  bool split_special_tokens = false;
};

class Tokenizer {
 public:
  // Loads tokenizer.json from `dir` and, when present, tokenizer_config.json,
  // generation_config.json and config.json (for bos/eos/pad resolution and the chat template).
  static Tokenizer from_dir(const std::string& dir);
  // Loads from explicit files; tokenizer_config_path may be empty.
  static Tokenizer from_files(const std::string& tokenizer_json_path,
                              const std::string& tokenizer_config_path);
  // Loads from JSON text already in memory; tokenizer_config_json may be empty. `name` stands for
  // the file in error messages (tokenizer_config errors say "<name> (tokenizer_config.json)").
  static Tokenizer from_json(const std::string& tokenizer_json, const std::string& tokenizer_config_json = "",
                             const std::string& name = "tokenizer.json");

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // add_special_tokens runs the post-processor (e.g. BOS for Llama); added/special token
  // strings inside `text` are always recognised (HF default, split_special_tokens=false).
  // Thread-safe. Text must be valid UTF-8 (else Error naming the byte offset). Tokenizer-level
  // truncation/padding in tokenizer.json is ignored, as transformers does by default.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const;
  std::vector<int32_t> encode(std::string_view text, const EncodeOptions& opts) const;
  // The `tokenizers` decode: ids -> tokens (unknown ids dropped; special ones too when asked)
  // -> decoder chain. No transformers clean_up_tokenization_spaces, so decode(encode(x)) == x.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;  // "" when out of range
  bool is_special(int32_t id) const;
  size_t vocab_size() const;  // model vocab + added tokens (max id + 1)

  const SpecialTokenIds& special() const;
  const std::string& chat_template() const;  // raw Jinja from tokenizer_config.json, "" if none

  // Unicode version of the normalization tables (regex classes come from Oniguruma).
  static const char* unicode_version();

 private:
  struct Impl;
  struct Sources;  // the files a tokenizer is built from (tokenizer.cpp)
  static Tokenizer load(const Sources& src);
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bidora
