#include "generate/chat_prompt.h"

#include "core/error.h"

namespace bidora {

std::string render_generation_prompt(const data::ChatTemplate& tmpl,
                                     const std::vector<data::Message>& messages) {
  if (messages.empty() || messages.back().role != data::Role::User)
    fail("chat: the conversation must end with a user message to generate a reply");
  std::vector<data::Message> with_reply = messages;
  with_reply.push_back({data::Role::Assistant, "", std::nullopt});
  const std::vector<data::Segment> segs = data::render_chat(tmpl, with_reply);
  // The empty reply's trained part (its end-of-turn token at least) is the last trained segment:
  // neighbouring segments always differ in `trained`, and the user turn before it is masked.
  size_t last_trained = segs.size();
  for (size_t i = segs.size(); i-- > 0;)
    if (segs[i].trained) {
      last_trained = i;
      break;
    }
  BIDORA_CHECK(last_trained < segs.size(), "chat template {}: an assistant message rendered no trained text",
               tmpl.name);
  std::string out;
  for (size_t i = 0; i < last_trained; ++i) out += segs[i].text;
  return out;
}

}  // namespace bidora
