#pragma once
// tokenizer.json `decoder`: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence.
// A decoder turns the list of token strings back into text (Rust Decoder::decode_chain).
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace bidora::tok {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Transforms the token strings in place (the chain may merge them into fewer strings).
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// nullptr for a JSON null. Unsupported types are an Error naming `where` and the type.
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& where);

}  // namespace bidora::tok
