#pragma once
// One line of a training JSONL file, recognised and checked, before any template is applied.
//
// Accepted formats (first matching rule wins, extra keys are ignored):
//   {"messages": [{"role": "system"|"user"|"assistant", "content": str, "reasoning_content"?: str}]}
//   {"instruction": str, "input"?: str, "output": str}      Alpaca
//   {"prompt": str, "completion": str}
//   {"code": str}
//   {"text": str}
// A null value counts as absent; any other non-string value is an error.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace bidora::data {

enum class RecordFormat { Messages, Alpaca, PromptCompletion, Code, Text };
inline constexpr int kNumRecordFormats = 5;
const char* format_name(RecordFormat f);  // "messages", "alpaca", "prompt_completion", "code", "text"
// The list shown to the user when a line matches no format.
const char* accepted_formats_help();

enum class Role { System, User, Assistant };
const char* role_name(Role r);  // "system", "user", "assistant"

struct Message {
  Role role = Role::User;
  std::string content;
  std::optional<std::string>
      reasoning;  // "reasoning_content" (Qwen3 think block); ignored by other templates
};

struct Record {
  RecordFormat format = RecordFormat::Text;
  std::string source;                      // "file:line", prefixed to every error about this record
  int64_t line = 0;                        // 1-based line in the file (0 when not read from a file)
  std::string instruction, input, output;  // Alpaca
  std::string prompt, completion;          // PromptCompletion
  std::string text;                        // Code and Text
  std::vector<Message> messages;           // Messages
};

// Recognises the format of one parsed JSON value and checks its fields. Throws bidora::Error
// "<source>: <reason>" for a non-object, an unknown format, a missing field, a non-string value,
// an empty or malformed message list, or an unknown role.
Record parse_record(const nlohmann::json& value, const std::string& source);

}  // namespace bidora::data
