#pragma once
// Hard-coded renderers for the chat templates of the supported model families. Each reproduces
// the real Hugging Face template (rendered with add_generation_prompt=False) byte for byte; the
// golden strings in tests/fixtures/data/chat_goldens.json come from the real templates rendered
// by @huggingface/jinja (tests/reference/data/README.md).
//
// Loss masking (the TRL assistant_only_loss convention): an assistant turn's output is trained,
// i.e. what the model has to generate after the template's assistant header, up to and
// including the end-of-turn token:
//   ChatML (Qwen2/2.5, SmolLM2):  <|im_start|>assistant\n | content<|im_end|> | \n
//   Qwen3:                        <|im_start|>assistant\n | <think>..</think>\n\ncontent<|im_end|> | \n
//   Llama 3 / 3.1:                <|start_header_id|>assistant<|end_header_id|>\n\n | content<|eot_id|>
//   Llama 2:                      [/INST] |  content </s>     (the space before the content too:
//                                            SentencePiece glues it to the first word)
//   Mistral v0.1:                 [/INST] | content</s>
//   Zephyr (TinyLlama chat):      <|assistant|>\n | content</s> | \n
// Role headers, system and user turns and the newline after an end-of-turn token are masked
// (TRL also trains that newline for Qwen2.5; we do not: the model stops at <|im_end|>).
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "data/record.h"
#include "data/segment.h"

namespace bidora::data {

enum class ChatFormat { ChatML, Qwen3, Llama3, Llama31, Llama2, Mistral, Zephyr };

struct ChatTemplate {
  ChatFormat format = ChatFormat::ChatML;
  std::string name;            // preset name shown to the user, e.g. "qwen2.5"
  std::string default_system;  // ChatML: system turn written when the conversation has none ("" = none)
  // Llama 3.1+: the "Today Date:" line. 3.1 hard-codes this date; 3.2/3.3 would print the day
  // of rendering, which we pin so that a dataset always renders the same.
  std::string date_string = "26 Jul 2024";
  std::string bos_token;  // written by the Llama 2, Mistral and Llama 3 templates
  std::string eos_token;  // end of an assistant turn for Llama 2, Mistral and Zephyr
};

// Names accepted by chat_template_by_name (and the CLI's --chat-template).
const std::vector<std::string>& chat_template_names();

// A preset by name; `bos_token`/`eos_token` are the tokenizer's strings. Throws bidora::Error
// listing the valid names.
ChatTemplate chat_template_by_name(std::string_view name, std::string_view bos_token,
                                   std::string_view eos_token);

// Recognises a tokenizer_config.json chat_template. nullopt when the template is not one we
// reproduce exactly (the caller then asks for an explicit preset).
std::optional<ChatTemplate> detect_chat_template(std::string_view jinja, std::string_view bos_token,
                                                 std::string_view eos_token);

// Renders a conversation. Throws bidora::Error (without a file location) when the template
// forbids the role order: Llama 2 and Mistral need user/assistant alternation starting with
// user; Llama 2 allows a system message only first (its template would silently drop a later
// one); Mistral v0.1 has no system role.
std::vector<Segment> render_chat(const ChatTemplate& tmpl, const std::vector<Message>& messages);

}  // namespace bidora::data
