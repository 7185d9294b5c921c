#pragma once
// Settings shared by the Metaspace pre-tokenizer and the Metaspace decoder, read the same way
// for both (tokenizers' Metaspace: `replacement` is one character, default "▁").
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace bidora::tok {

enum class PrependScheme { Always, First, Never };

struct MetaspaceConfig {
  std::string replacement;  // one character, UTF-8
  PrependScheme scheme = PrependScheme::Always;
};

// `prepend_scheme` is always / first / never; files from before that field spell "never" as
// `add_prefix_space: false`. Errors name `where` and the field.
MetaspaceConfig parse_metaspace(const nlohmann::json& j, const std::string& where);

}  // namespace bidora::tok
