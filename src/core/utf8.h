#pragma once
// UTF-8 validation for text read from files (tokenizer.json, YAML configs...). Shared by the
// tokenizer and the config loader, which must both refuse what Hugging Face's readers refuse.
#include <cstddef>
#include <optional>
#include <string_view>

namespace bidora {

// Byte offset of the first invalid UTF-8 sequence (overlong forms, surrogates, > U+10FFFF and
// truncated sequences are invalid), or nullopt when `s` is valid.
std::optional<size_t> find_invalid_utf8(std::string_view s);

}  // namespace bidora
