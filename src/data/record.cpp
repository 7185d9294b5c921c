#include "data/record.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace bidora::data {

using nlohmann::json;

const char* format_name(RecordFormat f) {
  switch (f) {
    case RecordFormat::Messages:
      return "messages";
    case RecordFormat::Alpaca:
      return "alpaca";
    case RecordFormat::PromptCompletion:
      return "prompt_completion";
    case RecordFormat::Code:
      return "code";
    case RecordFormat::Text:
      return "text";
  }
  return "?";
}

const char* accepted_formats_help() {
  return "{\"instruction\", \"input\"?, \"output\"} (alpaca), {\"prompt\", \"completion\"}, {\"code\"}, "
         "{\"text\"} or {\"messages\": [{\"role\", \"content\"}]}";
}

const char* role_name(Role r) {
  switch (r) {
    case Role::System:
      return "system";
    case Role::User:
      return "user";
    case Role::Assistant:
      return "assistant";
  }
  return "?";
}

namespace {

bool present(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && !it->is_null();
}

// A JSON value named for the user: its type and, when short, the value itself.
std::string describe(const json& v) {
  std::string dump = v.dump();
  if (dump.size() > 40) dump = dump.substr(0, 37) + "...";
  return fmt::format("{} {}", v.type_name(), dump);
}

std::string required_string(const json& obj, const char* key, const std::string& source, const char* format) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) fail("{}: missing field \"{}\" ({} format)", source, key, format);
  if (!it->is_string()) fail("{}: field \"{}\" must be a string, got {}", source, key, describe(*it));
  return it->get<std::string>();
}

std::string optional_string(const json& obj, const char* key, const std::string& source) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return {};
  if (!it->is_string()) fail("{}: field \"{}\" must be a string, got {}", source, key, describe(*it));
  return it->get<std::string>();
}

Role parse_role(const json& msg, const std::string& where) {
  auto it = msg.find("role");
  if (it == msg.end() || it->is_null()) fail("{}: missing field \"role\"", where);
  if (!it->is_string()) fail("{}: field \"role\" must be a string, got {}", where, describe(*it));
  const auto& r = it->get_ref<const std::string&>();
  if (r == "system") return Role::System;
  if (r == "user") return Role::User;
  if (r == "assistant") return Role::Assistant;
  fail("{}: unknown role \"{}\" (expected \"system\", \"user\" or \"assistant\")", where, r);
}

std::vector<Message> parse_messages(const json& list, const std::string& source) {
  if (!list.is_array())
    fail("{}: field \"messages\" must be a list of messages, got {}", source, describe(list));
  if (list.empty()) fail("{}: field \"messages\" is empty", source);
  std::vector<Message> out;
  out.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string where = fmt::format("{}: messages[{}]", source, i);
    const json& m = list[i];
    if (!m.is_object()) fail("{}: expected an object {{\"role\", \"content\"}}, got {}", where, describe(m));
    Message msg;
    msg.role = parse_role(m, where);
    msg.content = required_string(m, "content", where, "message");
    if (present(m, "reasoning_content")) msg.reasoning = optional_string(m, "reasoning_content", where);
    out.push_back(std::move(msg));
  }
  return out;
}

}  // namespace

Record parse_record(const json& value, const std::string& source) {
  if (!value.is_object()) fail("{}: expected a JSON object, got {}", source, describe(value));
  Record r;
  r.source = source;
  if (value.contains("messages")) {
    r.format = RecordFormat::Messages;
    if (value["messages"].is_null()) fail("{}: missing field \"messages\"", source);
    r.messages = parse_messages(value["messages"], source);
  } else if (value.contains("instruction") || value.contains("output")) {
    r.format = RecordFormat::Alpaca;
    r.instruction = required_string(value, "instruction", source, "alpaca");
    r.input = optional_string(value, "input", source);
    r.output = required_string(value, "output", source, "alpaca");
  } else if (value.contains("prompt") || value.contains("completion")) {
    r.format = RecordFormat::PromptCompletion;
    r.prompt = required_string(value, "prompt", source, "prompt/completion");
    r.completion = required_string(value, "completion", source, "prompt/completion");
  } else if (value.contains("code")) {
    r.format = RecordFormat::Code;
    r.text = required_string(value, "code", source, "code");
  } else if (value.contains("text")) {
    r.format = RecordFormat::Text;
    r.text = required_string(value, "text", source, "text");
  } else {
    std::string keys;
    int shown = 0;
    for (auto it = value.begin(); it != value.end(); ++it, ++shown) {
      if (shown == 8) {
        keys += ", ...";
        break;
      }
      keys += (keys.empty() ? "" : ", ") + it.key();
    }
    fail("{}: unknown record format (keys: {}); expected {}", source, keys.empty() ? "none" : keys,
         accepted_formats_help());
  }
  return r;
}

}  // namespace bidora::data
