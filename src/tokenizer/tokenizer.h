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

struct SpecialTokenIds {
  std::optional<int32_t> bos, eos, pad, unk;
  std::string bos_token, eos_token, pad_token, unk_token;  // strings, "" when absent
  bool pad_is_eos = false;  // no pad token configured: eos is used for padding
};

class Tokenizer {
 public:
  // Loads tokenizer.json from `dir` and, when present, tokenizer_config.json,
  // generation_config.json and config.json (for bos/eos/pad resolution and the chat template).
  static Tokenizer from_dir(const std::string& dir);
  // Loads from explicit files; tokenizer_config_path may be empty.
  static Tokenizer from_files(const std::string& tokenizer_json_path, const std::string& tokenizer_config_path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // add_special_tokens runs the post-processor (e.g. BOS for Llama); added/special token
  // strings inside `text` are always recognised (HF default, split_special_tokens=false).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const;
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;  // "" when out of range
  bool is_special(int32_t id) const;
  size_t vocab_size() const;  // model vocab + added tokens (max id + 1)

  const SpecialTokenIds& special() const;
  const std::string& chat_template() const;  // raw Jinja from tokenizer_config.json, "" if none

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bidora
