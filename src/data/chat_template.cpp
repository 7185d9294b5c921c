#include "data/chat_template.h"

#include <fmt/format.h>

#include "core/error.h"
#include "data/example.h"
#include "data/text_util.h"

namespace bidora::data {

namespace {

constexpr std::string_view kQwen25System =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
constexpr std::string_view kQwen2System = "You are a helpful assistant.";
constexpr std::string_view kSmolLM2System =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

struct Preset {
  const char* name;
  ChatFormat format;
  std::string_view default_system;
};

constexpr Preset kPresets[] = {
    {"chatml", ChatFormat::ChatML, ""},
    {"qwen2", ChatFormat::ChatML, kQwen2System},
    {"qwen2.5", ChatFormat::ChatML, kQwen25System},
    {"smollm2", ChatFormat::ChatML, kSmolLM2System},
    {"qwen3", ChatFormat::Qwen3, ""},
    {"llama3", ChatFormat::Llama3, ""},
    {"llama3.1", ChatFormat::Llama31, ""},
    {"llama2", ChatFormat::Llama2, ""},
    {"mistral", ChatFormat::Mistral, ""},
    {"zephyr", ChatFormat::Zephyr, ""},
};

ChatTemplate from_preset(const Preset& p, std::string_view bos, std::string_view eos) {
  ChatTemplate t;
  t.format = p.format;
  t.name = p.name;
  t.default_system = std::string(p.default_system);
  t.bos_token = std::string(bos);
  t.eos_token = std::string(eos);
  return t;
}

const Preset& preset(std::string_view name) {
  for (const auto& p : kPresets)
    if (name == p.name) return p;
  throw std::logic_error("unknown chat template preset");
}

// Jinja string-literal unescaping for the characters that occur in default system prompts.
std::string unescape_jinja_literal(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      char c = s[++i];
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
    } else {
      out += s[i];
    }
  }
  return out;
}

// The literal default system prompt of a ChatML template: the text of a string literal
// '<|im_start|>system\n...<|im_end|>' that contains no expression. "" when there is none.
std::string chatml_default_system(std::string_view src) {
  constexpr std::string_view kOpen = "<|im_start|>system";
  constexpr std::string_view kClose = "<|im_end|>";
  for (size_t pos = src.find(kOpen); pos != std::string_view::npos; pos = src.find(kOpen, pos + 1)) {
    size_t start = pos + kOpen.size();
    if (src.substr(start, 1) == "\n") {
      start += 1;
    } else if (src.substr(start, 2) == "\\n") {
      start += 2;
    } else {
      continue;
    }
    size_t end = src.find(kClose, start);
    if (end == std::string_view::npos) break;
    std::string_view body = src.substr(start, end - start);
    if (body.find_first_of("'\"{}+") == std::string_view::npos) return unescape_jinja_literal(body);
  }
  return "";
}

bool has(std::string_view s, std::string_view needle) {
  return s.find(needle) != std::string_view::npos;
}

class Builder {
 public:
  void masked(std::string_view s) { append_segment(out_, s, false); }
  void trained(std::string_view s) { append_segment(out_, s, true); }
  std::vector<Segment> take() { return std::move(out_); }

 private:
  std::vector<Segment> out_;
};

void require_alternation(const ChatTemplate& t, const std::vector<Message>& m, size_t first) {
  for (size_t i = first; i < m.size(); ++i) {
    const bool want_user = (i - first) % 2 == 0;
    if (m[i].role == Role::System) {
      if (t.format == ChatFormat::Mistral)
        fail("the mistral chat template has no system role (messages[{}])", i);
      fail("the {} chat template allows a system message only as the first message (messages[{}])", t.name,
           i);
    }
    if ((m[i].role == Role::User) != want_user)
      fail(
          "the {} chat template needs user and assistant messages to alternate, starting with user "
          "(messages[{}] is {})",
          t.name, i, role_name(m[i].role));
  }
}

// ChatML: Qwen2, Qwen2.5 (without tools), SmolLM2.
std::vector<Segment> render_chatml(const ChatTemplate& t, const std::vector<Message>& m) {
  Builder b;
  if (m[0].role != Role::System && !t.default_system.empty())
    b.masked("<|im_start|>system\n" + t.default_system + "<|im_end|>\n");
  for (size_t i = 0; i < m.size(); ++i) {
    b.masked(fmt::format("<|im_start|>{}\n", role_name(m[i].role)));
    if (m[i].role == Role::Assistant) {
      b.trained(m[i].content + "<|im_end|>");
      b.masked("\n");
    } else {
      b.masked(m[i].content + "<|im_end|>\n");
    }
  }
  return b.take();
}

bool is_tool_response(std::string_view s) {
  return s.starts_with("<tool_response>") && s.ends_with("</tool_response>");
}

// Qwen3: assistant turns after the last real user query carry a think block (always for the
// last message, otherwise only when they have reasoning); earlier ones lose their reasoning.
std::vector<Segment> render_qwen3(const std::vector<Message>& m) {
  Builder b;
  const size_t n = m.size();
  size_t last_query = n - 1;
  for (size_t k = n; k-- > 0;) {
    if (m[k].role == Role::User && !is_tool_response(m[k].content)) {
      last_query = k;
      break;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const Message& msg = m[i];
    if (msg.role != Role::Assistant) {
      b.masked(fmt::format("<|im_start|>{}\n{}<|im_end|>\n", role_name(msg.role), msg.content));
      continue;
    }
    std::string_view content = msg.content;
    std::string_view reasoning;
    if (msg.reasoning) {
      reasoning = *msg.reasoning;
    } else if (has(content, "</think>")) {
      reasoning =
          lstrip_chars(after_last(rstrip_chars(before_first(content, "</think>"), "\n"), "<think>"), "\n");
      content = lstrip_chars(after_last(content, "</think>"), "\n");
    }
    b.masked("<|im_start|>assistant\n");
    const bool last = i + 1 == n;
    if (i > last_query && (last || !reasoning.empty())) {
      b.trained(fmt::format("<think>\n{}\n</think>\n\n{}", strip_chars(reasoning, "\n"),
                            lstrip_chars(content, "\n")));
    } else {
      b.trained(content);
    }
    b.trained("<|im_end|>");
    b.masked("\n");
  }
  return b.take();
}

void llama3_turn(Builder& b, const Message& msg) {
  b.masked(fmt::format("<|start_header_id|>{}<|end_header_id|>\n\n", role_name(msg.role)));
  if (msg.role == Role::Assistant) {
    b.trained(std::string(py_strip(msg.content)) + "<|eot_id|>");
  } else {
    b.masked(std::string(py_strip(msg.content)) + "<|eot_id|>");
  }
}

std::vector<Segment> render_llama3(const ChatTemplate& t, const std::vector<Message>& m) {
  Builder b;
  b.masked(t.bos_token);
  for (const auto& msg : m) llama3_turn(b, msg);
  return b.take();
}

// Llama 3.1 / 3.2 / 3.3 without tools: a system turn always comes first, with the dates.
std::vector<Segment> render_llama31(const ChatTemplate& t, const std::vector<Message>& m) {
  Builder b;
  size_t first = 0;
  std::string_view system;
  if (m[0].role == Role::System) {
    system = py_strip(m[0].content);
    first = 1;
  }
  b.masked(fmt::format(
      "{}<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: "
      "{}\n\n{}<|eot_id|>",
      t.bos_token, t.date_string, system));
  for (size_t i = first; i < m.size(); ++i) llama3_turn(b, m[i]);
  return b.take();
}

std::vector<Segment> render_llama2(const ChatTemplate& t, const std::vector<Message>& m) {
  size_t first = m[0].role == Role::System ? 1 : 0;
  require_alternation(t, m, first);
  Builder b;
  for (size_t i = first; i < m.size(); ++i) {
    std::string content = m[i].content;
    // The template strips the system block and the first user message together.
    if (i == first && first == 1) content = "<<SYS>>\n" + m[0].content + "\n<</SYS>>\n\n" + content;
    if (m[i].role == Role::User) {
      b.masked(fmt::format("{}[INST] {} [/INST]", t.bos_token, py_strip(content)));
    } else {
      b.trained(fmt::format(" {} {}", py_strip(content), t.eos_token));
    }
  }
  return b.take();
}

std::vector<Segment> render_mistral(const ChatTemplate& t, const std::vector<Message>& m) {
  require_alternation(t, m, 0);
  Builder b;
  b.masked(t.bos_token);
  for (const auto& msg : m) {
    if (msg.role == Role::User) {
      b.masked("[INST] " + msg.content + " [/INST]");
    } else {
      b.trained(msg.content + t.eos_token);
    }
  }
  return b.take();
}

std::vector<Segment> render_zephyr(const ChatTemplate& t, const std::vector<Message>& m) {
  Builder b;
  for (const auto& msg : m) {
    b.masked(fmt::format("<|{}|>\n", role_name(msg.role)));
    if (msg.role == Role::Assistant) {
      b.trained(msg.content + t.eos_token);
    } else {
      b.masked(msg.content + t.eos_token);
    }
    b.masked("\n");
  }
  return b.take();
}

}  // namespace

const std::vector<std::string>& chat_template_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& p : kPresets) v.emplace_back(p.name);
    return v;
  }();
  return names;
}

ChatTemplate chat_template_by_name(std::string_view name, std::string_view bos, std::string_view eos) {
  for (const auto& p : kPresets)
    if (name == p.name) return from_preset(p, bos, eos);
  fail("unknown chat template \"{}\"; expected one of: {}", name, fmt::join(chat_template_names(), ", "));
}

std::optional<ChatTemplate> detect_chat_template(std::string_view src, std::string_view bos,
                                                 std::string_view eos) {
  if (has(src, "<|im_start|>")) {
    if (has(src, "<think>") || has(src, "reasoning_content")) return from_preset(preset("qwen3"), bos, eos);
    const std::string def = chatml_default_system(src);
    for (const char* name : {"qwen2.5", "qwen2", "smollm2"})
      if (def == preset(name).default_system) return from_preset(preset(name), bos, eos);
    ChatTemplate t = from_preset(preset("chatml"), bos, eos);
    t.default_system = def;
    return t;
  }
  if (has(src, "<|start_header_id|>") && has(src, "<|eot_id|>"))
    return from_preset(preset(has(src, "Cutting Knowledge Date") ? "llama3.1" : "llama3"), bos, eos);
  if (has(src, "[INST]") && has(src, "<<SYS>>") && has(src, "content.strip()"))
    return from_preset(preset("llama2"), bos, eos);
  if (has(src, "'[INST] ' + message['content'] + ' [/INST]'") && has(src, "message['content'] + eos_token"))
    return from_preset(preset("mistral"), bos, eos);
  if (has(src, "<|user|>") && has(src, "<|assistant|>") && has(src, "eos_token"))
    return from_preset(preset("zephyr"), bos, eos);
  return std::nullopt;
}

std::vector<Segment> render_chat(const ChatTemplate& t, const std::vector<Message>& m) {
  BIDORA_CHECK(!m.empty(), "the conversation has no messages");
  switch (t.format) {
    case ChatFormat::ChatML:
      return render_chatml(t, m);
    case ChatFormat::Qwen3:
      return render_qwen3(m);
    case ChatFormat::Llama3:
      return render_llama3(t, m);
    case ChatFormat::Llama31:
      return render_llama31(t, m);
    case ChatFormat::Llama2:
      return render_llama2(t, m);
    case ChatFormat::Mistral:
      return render_mistral(t, m);
    case ChatFormat::Zephyr:
      return render_zephyr(t, m);
  }
  fail("unsupported chat format");
}

}  // namespace bidora::data
