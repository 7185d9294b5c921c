#pragma once
// The generation loop: prefill the prompt (reusing whatever prefix of it the KV cache already
// holds, e.g. the earlier turns of a chat), then sample one token per step until a stop token, a
// stop string or the token limit, streaming the text as it becomes final.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "generate/sampler.h"
#include "generate/text_stream.h"
#include "model/inference.h"

namespace bidora {

struct GenerationOptions {
  int64_t max_new_tokens = 256;
  std::vector<int32_t> stop_ids{};  // end-of-sequence tokens: generation ends when one is sampled
  std::vector<std::string> stop_strings{};
};

struct GenerationResult {
  std::vector<int32_t> ids;  // generated tokens, the stop token (if any) included
  std::string text;          // decoded text without special tokens, cut before a stop string
  int64_t prompt_tokens = 0;
  int64_t prefill_tokens = 0;  // prompt tokens run (those not already in the cache)
  std::string finish_reason;   // "eos", "stop_string" or "length"
  // Prefill: the prompt's pass and the first token's sampling (time to first token). Decode:
  // everything after, over generated − 1 single-token passes.
  double prefill_seconds = 0, decode_seconds = 0;
  double prefill_tokens_per_s() const;
  double decode_tokens_per_s() const;
};

// Runs the loop on `dec` (whose cache is reused and left holding the prompt and the generated
// tokens but the last). on_text receives each piece of final text as it is produced.
GenerationResult generate(InferenceDecoder& dec, std::span<const int32_t> prompt,
                          const GenerationOptions& opt, Sampler& sampler, const TextStream::DecodeFn& decode,
                          const std::function<void(std::string_view)>& on_text = {});

}  // namespace bidora
