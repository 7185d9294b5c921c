#pragma once
// Next-token selection with transformers' logits processors and their semantics, applied in
// transformers' order: repetition penalty, temperature, top-k, top-p; then greedy argmax
// (temperature 0) or a draw from the softmax with a seeded generator.
//   repetition penalty (CTRL): for every distinct token id already in the sequence (prompt and
//     generated), a logit > 0 is divided by the penalty and a logit < 0 multiplied by it;
//   temperature: logits / T;
//   top-k: logits below the k-th largest are removed (ties with it are kept);
//   top-p (nucleus): the smallest set of most probable tokens whose probabilities sum to >= p is
//     kept (sorted ascending, tokens whose cumulative probability is <= 1 − p are removed, and the
//     most probable token always stays).
// Removed logits become −inf. Greedy decoding applies the repetition penalty only, as
// transformers does with do_sample=False, and picks the first maximum.
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace bidora {

struct SamplingParams {
  double temperature = 0.7;         // 0: greedy
  int64_t top_k = 50;               // 0: off
  double top_p = 0.9;               // 1: off
  double repetition_penalty = 1.0;  // 1: off
  bool greedy() const { return temperature == 0.0; }
  // Throws Error naming the option (--temperature, --top-k, --top-p, --repetition-penalty).
  void validate() const;
};

void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> seen, double penalty);
void apply_temperature(std::span<float> logits, double temperature);
void apply_top_k(std::span<float> logits, int64_t k);
void apply_top_p(std::span<float> logits, double p);

// Every processor above for the given parameters (greedy: the repetition penalty only), in place.
void process_logits(std::span<float> logits, std::span<const int32_t> seen, const SamplingParams& p);
// softmax(logits) in double; −inf logits get probability 0.
std::vector<double> softmax(std::span<const float> logits);

class Sampler {
 public:
  Sampler(const SamplingParams& params, uint64_t seed);
  // The next token for `logits` (processed in place) after the tokens `seen` (prompt + generated).
  int32_t next(std::span<float> logits, std::span<const int32_t> seen);
  const SamplingParams& params() const { return p_; }

 private:
  SamplingParams p_;
  std::mt19937_64 gen_;
  std::vector<double> probs_;
};

}  // namespace bidora
