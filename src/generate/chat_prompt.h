#pragma once
// The prompt of a chat turn: the conversation rendered with the family's chat template (the same
// renderer training uses, data/chat_template.h) with the assistant turn opened, i.e. what
// transformers' apply_chat_template(add_generation_prompt=True) produces. The renderer has no
// such switch; the conversation is rendered with an empty assistant message at the end and cut
// before that message's trained part (the loss-masking split puts the assistant header in the
// masked text before it). For Qwen3 this gives "<|im_start|>assistant\n" (thinking enabled, the
// template's default).
#include <string>
#include <vector>

#include "data/chat_template.h"
#include "data/record.h"

namespace bidora {

// Throws Error when the template forbids the role order (e.g. Llama 2 needs user/assistant
// alternation) or the last message is not from the user.
std::string render_generation_prompt(const data::ChatTemplate& tmpl,
                                     const std::vector<data::Message>& messages);

}  // namespace bidora
