#pragma once
// tokenizer.json `post_processor` for single sequences: TemplateProcessing, RobertaProcessing,
// BertProcessing, ByteLevel (adds nothing) and Sequence. Only used with add_special_tokens.
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace bidora::tok {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Rewrites `ids` (one sequence) with the special tokens this processor adds.
  virtual void process(std::vector<int32_t>& ids) const = 0;
};

// nullptr for a JSON null. Unsupported types are an Error naming `where` and the type.
std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& j, const std::string& where);

// `prefix` + sequence + `suffix` (what transformers' LlamaTokenizerFast.update_post_processor
// builds from add_bos_token / add_eos_token).
std::unique_ptr<PostProcessor> make_affix_processor(std::vector<int32_t> prefix, std::vector<int32_t> suffix);

}  // namespace bidora::tok
