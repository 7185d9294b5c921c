// Dataset JSONL: lines -> records (every format, chat included) -> examples under every chat
// template -> token ids with the training mask (examples/tiny-qwen2's byte-level BPE tokenizer).
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/chat_template.h"
#include "data/example.h"
#include "data/jsonl_reader.h"
#include "data/tokenize.h"
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

namespace {

struct Setup {
  std::unique_ptr<bidora::Tokenizer> tok;
  std::unique_ptr<bidora::data::ExampleTokenizer> tokenizer;
  std::vector<bidora::data::FormatOptions> options;
};

const Setup& setup() {
  static const Setup s = [] {
    Setup s;
    s.tok = std::make_unique<bidora::Tokenizer>(
        bidora::Tokenizer::from_dir(BIDORA_SOURCE_DIR "/examples/tiny-qwen2"));
    const bidora::Tokenizer* tok = s.tok.get();
    s.tokenizer = std::make_unique<bidora::data::ExampleTokenizer>(
        [tok](std::string_view text, bool add) { return tok->encode(text, add); });
    bidora::data::FormatOptions none;
    none.eos_token = "<|endoftext|>";
    none.no_template_reason = "fuzzing without a template";
    s.options.push_back(none);
    for (const std::string& name : bidora::data::chat_template_names()) {
      bidora::data::FormatOptions o;
      o.eos_token = "</s>";
      o.chat_template = bidora::data::chat_template_by_name(name, "<s>", "</s>");
      o.train_on_prompt = s.options.size() % 2 == 0;
      s.options.push_back(o);
    }
    return s;
  }();
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Setup& s = setup();
  const std::string& path = bidora::fuzz::temp_path("jsonl");
  bidora::fuzz::write_temp(path, data, size);
  try {
    bidora::data::JsonlReader reader(path, bidora::data::BadLinePolicy::Skip);
    int records = 0;
    while (auto rec = reader.next()) {
      if (++records > 64) break;
      for (size_t i = 0; i < s.options.size(); ++i) {
        try {
          const bidora::data::Example ex = bidora::data::build_example(*rec, s.options[i]);
          for (const auto& seg : ex.segments)
            if (seg.text.empty()) __builtin_trap();  // the Example invariant
          if (i == 0 || i == 1) {                    // tokenize under no template and the first (ChatML) one
            bidora::data::TokenizeOptions opt;
            opt.max_seq_len = (records % 3 == 0) ? 16 : 0;
            opt.train_on_prompt = records % 2 == 0;
            const auto te = s.tokenizer->tokenize(ex, opt);
            if (te.ids.size() != te.trained.size()) __builtin_trap();
          }
        } catch (const bidora::Error&) {  // e.g. a role order the template forbids
        }
      }
    }
    (void)reader.skipped().count;
  } catch (const bidora::Error&) {
  }
  return 0;
}
