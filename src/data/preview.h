#pragma once
// The core of `bidora data-preview`: loads a JSONL file the way training does, and reports how a
// few examples are rendered and masked plus statistics over the whole file. The CLI command only
// parses options and prints; tests call run_data_preview directly.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "data/codec.h"
#include "data/dataset.h"
#include "data/stats.h"

namespace bidora::data {

struct PreviewOptions {
  std::string file;
  int64_t num_examples = 3;
  int64_t max_seq_len = 1024;
  bool train_on_prompt = false;
  BadLinePolicy bad_lines = BadLinePolicy::Stop;
  std::string chat_template;  // preset name; "" = recognise the tokenizer's
  int histogram_bins = 10;
};

struct PreviewExample {
  Example example;                  // rendered text as segments, before tokenization
  TokenizedExample tokens;          // what training sees
  std::vector<Segment> token_runs;  // the tokens decoded, in runs of equal trained flag
};

struct PreviewResult {
  FileReport file;
  ResolvedTemplate chat_template;
  std::string bos_token, eos_token;
  int32_t eos_id = -1, pad_id = -1;
  bool pad_is_eos = false;
  DatasetStats stats;
  std::vector<PreviewExample> examples;  // the first num_examples valid examples
};

PreviewResult run_data_preview(const TextCodec& codec, const PreviewOptions& opt);

// Decodes `ex.ids` in runs of consecutive tokens with the same trained flag. Each run's text is
// the growth of the decoded prefix, so decoders that look at neighbours (SentencePiece's
// leading-space strip) render as in a whole decode; a run that cannot be separated that way
// (a UTF-8 character split between runs) is decoded on its own.
std::vector<Segment> decode_runs(const DecodeFn& decode, const TokenizedExample& ex);

// Human-readable report. color: ANSI colours (trained green, masked dim); otherwise trained text
// is wrapped in [[ and ]].
std::string format_preview(const PreviewResult& r, bool color);

// The same content for machines.
nlohmann::ordered_json preview_json(const PreviewResult& r);

}  // namespace bidora::data
