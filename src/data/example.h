#pragma once
// The normalised training example: the text the model sees, cut into segments that are either
// trained on (the loss sees their tokens) or masked (context only). Every input format and chat
// template is reduced to this before tokenization.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "data/chat_template.h"
#include "data/record.h"
#include "data/segment.h"

namespace bidora::data {

struct Example {
  std::vector<Segment> segments;  // non-empty texts; neighbours have different `trained` flags
  // Whether the tokenizer's post-processor runs (it adds BOS for Llama/Mistral, nothing for
  // Qwen). False for chat examples: the template already writes BOS, and transformers encodes a
  // rendered chat with add_special_tokens=False.
  bool add_special_tokens = true;
  RecordFormat format = RecordFormat::Text;
  std::string source;  // "file:line"
  int64_t line = 0;

  std::string text() const;  // all segments concatenated
};

struct FormatOptions {
  std::string eos_token;  // appended after every non-chat response (tokenizer eos string)
  // Template for {"messages"} records; nullopt = such records are an error naming the fix.
  std::optional<ChatTemplate> chat_template;
  std::string no_template_reason;  // shown when chat_template is nullopt, e.g. "the tokenizer has none"
  // When false (the default), a conversation must contain an assistant message: otherwise
  // nothing in it would be trained.
  bool train_on_prompt = false;
};

// The Alpaca prompt (Stanford Alpaca template). An empty `input` selects the variant without the
// "### Input:" block, as the original does.
std::string alpaca_prompt(std::string_view instruction, std::string_view input);

// Applies the format's prompt layout:
//   alpaca             masked alpaca_prompt(instruction, input), trained output + EOS
//   prompt/completion  masked prompt, trained completion + EOS (plain concatenation)
//   code, text         trained text + EOS
//   messages           the chat template (see chat_template.h)
// Throws bidora::Error "<record.source>: reason" (e.g. a role order the template forbids).
Example build_example(const Record& record, const FormatOptions& options);

// Appends `text` to `out`, merging it into the last segment when the flags agree; empty texts are
// dropped. Keeps the Example invariant above.
void append_segment(std::vector<Segment>& out, std::string_view text, bool trained);

}  // namespace bidora::data
