#pragma once
// tokenizer.json `normalizer`: NFC/NFD/NFKC/NFKD, Lowercase, Replace, Prepend, Strip, Sequence.
// Applied to each piece of text between added tokens separately (Rust pipeline step 2).
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace bidora::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& s) const = 0;
};

// nullptr for a JSON null. Unsupported types are an Error naming `where` and the type.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where);

}  // namespace bidora::tok
