#pragma once
// Turns a segmented Example into token ids with a per-token trained flag.
//
// The ids are exactly those of tokenizing the WHOLE rendered text at once (what transformers
// does with the string a chat template produced), never a concatenation of per-segment
// encodings: the two differ for SentencePiece tokenizers (Llama 2, Mistral, TinyLlama), whose
// normalizer prepends "▁" to every piece, and wherever a BPE merge or pre-tokenizer match spans
// a segment boundary. Segment boundaries are then located in that token sequence:
//   1. fast path: encode every segment separately; if the concatenation equals the whole-text
//      encoding, the per-segment token counts give the boundaries (the usual case for byte-level
//      BPE with ChatML / Llama 3 templates, whose boundaries sit next to special tokens);
//   2. otherwise, for each boundary at character offset c, encode text[0, c): the tokens it
//      shares with the whole encoding (longest common prefix) lie entirely before the boundary.
//      If text[0, c) encodes to exactly those tokens, the boundary falls between two tokens.
//      If not, some token straddles it (a merge or pre-token across the boundary), and the
//      encoding of text[c, end) bounds the uncertain region from the right (longest common
//      suffix). The uncertain tokens are trained (they belong to whichever neighbour is the
//      answer: at masked|trained they start it, at trained|masked they end it), so no trained
//      text ever loses its tokens; at worst a straddling token or two of template text is
//      trained. `split_boundaries` counts such boundaries; data-preview reports them.
#include <cstdint>
#include <vector>

#include "data/codec.h"
#include "data/example.h"

namespace bidora::data {

struct TokenizedExample {
  std::vector<int32_t> ids;
  // Per token: 1 = in the loss (label = id), 0 = masked (label -100). The first token is always
  // 0: no earlier token predicts it.
  std::vector<uint8_t> trained;
  bool truncated = false;        // ids were cut to max_seq_len (the start is kept, like TRL)
  int64_t full_length = 0;       // number of tokens before truncation
  int32_t split_boundaries = 0;  // segment boundaries that fell inside a token (see above)
  RecordFormat format = RecordFormat::Text;
  int64_t line = 0;

  int64_t num_trained() const;
};

struct TokenizeOptions {
  int64_t max_seq_len = 0;       // 0 = no truncation
  bool train_on_prompt = false;  // train on every token, prompts and role headers included
};

class ExampleTokenizer {
 public:
  // Probes which special tokens the tokenizer's post-processor adds around a text (e.g. BOS).
  explicit ExampleTokenizer(EncodeFn encode);

  TokenizedExample tokenize(const Example& ex, const TokenizeOptions& opt) const;

  // Tokenizes examples[indices[i]] (all examples when `indices` is null) on all OpenMP threads;
  // the result is in input order and identical to calling tokenize() one by one. The encode
  // function must be thread-safe (Tokenizer::encode is).
  std::vector<TokenizedExample> tokenize_all(const std::vector<Example>& examples,
                                             const std::vector<int64_t>* indices,
                                             const TokenizeOptions& opt) const;

  // Tokens the post-processor puts before / after the text when add_special_tokens is true.
  const std::vector<int32_t>& special_prefix() const { return prefix_; }
  const std::vector<int32_t>& special_suffix() const { return suffix_; }

 private:
  EncodeFn encode_;
  std::vector<int32_t> prefix_, suffix_;
};

}  // namespace bidora::data
