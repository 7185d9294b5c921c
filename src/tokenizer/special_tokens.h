#pragma once
// bos/eos/pad/unk resolution and the chat template, from tokenizer_config.json,
// generation_config.json and config.json (rules documented on SpecialTokenIds).
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "tokenizer/tokenizer.h"

namespace bidora::tok {

struct ConfigFile {
  nlohmann::json json;  // null when the file is absent
  std::string path;     // for error messages
};

struct VocabLookup {
  std::function<std::optional<int32_t>(std::string_view)> token_to_id;
  std::function<std::optional<std::string>(int32_t)> id_to_token;
};

SpecialTokenIds resolve_special_tokens(const ConfigFile& tokenizer_config,
                                       const ConfigFile& generation_config, const ConfigFile& model_config,
                                       const std::optional<std::string>& model_unk, const VocabLookup& vocab);

// tokenizer_config.json "chat_template": a string, or a list of {name, template} (the one named
// "default", else the first). `jinja_file` (chat_template.jinja, newer repos) wins when non-empty.
std::string resolve_chat_template(const ConfigFile& tokenizer_config, const std::string& jinja_file);

// The token string of a tokenizer_config.json entry: "text", {"content": "text", ...} or null.
std::optional<std::string> token_content(const nlohmann::json& v, const std::string& where);

}  // namespace bidora::tok
