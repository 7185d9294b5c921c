#pragma once
// tokenizer.json `pre_tokenizer`: Split, ByteLevel, Metaspace, Digits, Sequence. A pre-tokenizer
// cuts each piece of normalized text into smaller pieces ("words"); BPE then runs on each word.
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace bidora::tok {

struct Piece {
  std::string text;
  // The piece starts at byte 0 of the original input (Metaspace prepend_scheme "first").
  bool at_origin = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` by their pre-tokenized sub-pieces, in order; empty pieces are dropped.
  virtual void pre_tokenize(std::vector<Piece>& pieces) const = 0;
};

// nullptr for a JSON null. Unsupported types are an Error naming `where` and the type.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where);

// The regex the ByteLevel pre-tokenizer uses when use_regex is true (hard-coded in HF).
extern const char* const kGpt2SplitRegex;

}  // namespace bidora::tok
