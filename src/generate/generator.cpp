#include "generate/generator.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace bidora {

double GenerationResult::prefill_tokens_per_s() const {
  return prefill_seconds > 0 ? static_cast<double>(prefill_tokens) / prefill_seconds : 0.0;
}

double GenerationResult::decode_tokens_per_s() const {
  const int64_t steps = static_cast<int64_t>(ids.size()) - 1;
  return steps > 0 && decode_seconds > 0 ? static_cast<double>(steps) / decode_seconds : 0.0;
}

GenerationResult generate(InferenceDecoder& dec, std::span<const int32_t> prompt,
                          const GenerationOptions& opt, Sampler& sampler, const TextStream::DecodeFn& decode,
                          const std::function<void(std::string_view)>& on_text) {
  if (prompt.empty()) fail("generate: the prompt has no tokens");
  if (opt.max_new_tokens < 1) fail("--max-new-tokens must be >= 1, got {}", opt.max_new_tokens);
  using clock = std::chrono::steady_clock;
  GenerationResult r;
  r.prompt_tokens = static_cast<int64_t>(prompt.size());

  // Reuse the cached prefix; at least the last prompt token runs again, for its logits.
  const std::vector<int32_t>& cached = dec.tokens();
  const size_t limit = std::min(cached.size(), prompt.size() - 1);
  size_t reuse = 0;
  while (reuse < limit && cached[reuse] == prompt[reuse]) ++reuse;
  dec.truncate(static_cast<int64_t>(reuse));
  r.prefill_tokens = static_cast<int64_t>(prompt.size() - reuse);

  TextStream stream(decode, opt.stop_strings);
  std::vector<int32_t> seen(prompt.begin(), prompt.end());
  std::vector<float> logits;
  auto emit = [&](const std::string& s) {
    if (!s.empty() && on_text) on_text(s);
  };

  const auto t0 = clock::now();
  const float* out = dec.append(prompt.subspan(reuse));
  auto t_first = t0;
  const int64_t V = dec.weights().config().vocab_size;
  for (int64_t step = 0;; ++step) {
    logits.assign(out, out + V);
    const int32_t tok = sampler.next(logits, seen);
    if (step == 0) t_first = clock::now();
    r.ids.push_back(tok);
    seen.push_back(tok);
    if (std::find(opt.stop_ids.begin(), opt.stop_ids.end(), tok) != opt.stop_ids.end()) {
      r.finish_reason = "eos";
      break;
    }
    emit(stream.push(tok));
    if (stream.stopped()) {
      r.finish_reason = "stop_string";
      break;
    }
    if (step + 1 >= opt.max_new_tokens) {
      r.finish_reason = "length";
      break;
    }
    out = dec.append(std::span<const int32_t>(&tok, 1));
  }
  const auto t_end = clock::now();
  emit(stream.finish());
  r.text = stream.text();
  r.prefill_seconds = std::chrono::duration<double>(t_first - t0).count();
  r.decode_seconds = std::chrono::duration<double>(t_end - t_first).count();
  return r;
}

}  // namespace bidora
