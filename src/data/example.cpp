#include "data/example.h"

#include <fmt/format.h>

#include "core/error.h"

namespace bidora::data {

std::string Example::text() const {
  std::string s;
  for (const auto& seg : segments) s += seg.text;
  return s;
}

void append_segment(std::vector<Segment>& out, std::string_view text, bool trained) {
  if (text.empty()) return;
  if (!out.empty() && out.back().trained == trained) {
    out.back().text += text;
  } else {
    out.push_back({std::string(text), trained});
  }
}

std::string alpaca_prompt(std::string_view instruction, std::string_view input) {
  if (input.empty()) {
    return fmt::format(
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\n{}\n\n### Response:\n",
        instruction);
  }
  return fmt::format(
      "Below is an instruction that describes a task, paired with an input that provides further context. "
      "Write a "
      "response that appropriately completes the request.\n\n### Instruction:\n{}\n\n### Input:\n{}\n\n### "
      "Response:\n",
      instruction, input);
}

Example build_example(const Record& r, const FormatOptions& opt) {
  Example ex;
  ex.format = r.format;
  ex.source = r.source;
  ex.line = r.line;
  switch (r.format) {
    case RecordFormat::Alpaca:
      append_segment(ex.segments, alpaca_prompt(r.instruction, r.input), false);
      append_segment(ex.segments, r.output + opt.eos_token, true);
      break;
    case RecordFormat::PromptCompletion:
      append_segment(ex.segments, r.prompt, false);
      append_segment(ex.segments, r.completion + opt.eos_token, true);
      break;
    case RecordFormat::Code:
    case RecordFormat::Text:
      append_segment(ex.segments, r.text + opt.eos_token, true);
      break;
    case RecordFormat::Messages: {
      if (!opt.chat_template)
        fail(
            "{}: a {{\"messages\"}} record needs a chat template, but {}; choose one with --chat-template "
            "({})",
            r.source, opt.no_template_reason.empty() ? "none was given" : opt.no_template_reason,
            fmt::join(chat_template_names(), ", "));
      bool has_assistant = false;
      for (const auto& m : r.messages) has_assistant |= m.role == Role::Assistant;
      if (!has_assistant && !opt.train_on_prompt)
        fail("{}: the conversation has no assistant message, so nothing in it would be trained", r.source);
      try {
        ex.segments = render_chat(*opt.chat_template, r.messages);
      } catch (const Error& e) {
        fail("{}: {}", r.source, e.what());
      }
      ex.add_special_tokens = false;
      break;
    }
  }
  BIDORA_CHECK(!ex.segments.empty(), "{}: the example renders to an empty text", r.source);
  return ex;
}

}  // namespace bidora::data
