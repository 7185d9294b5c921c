#pragma once
// From JSONL files to tokenized train and validation examples: the entry point the trainer and
// `bidora data-preview` use. Typical training use (batch.h has the rest):
//
//   const TextCodec codec = codec_for(tokenizer);
//   TrainingData data = load_training_data(codec, options);
//   const std::vector<Row> rows = make_rows(data.train, /*pack=*/true, options.max_seq_len);
//   const std::vector<int64_t> lengths = row_lengths(rows);
//   for (int64_t epoch = 0; epoch < epochs; ++epoch)
//     for (const auto& batch_rows : plan_epoch(lengths, plan_options, epoch))
//       train_step(collate(data.train, rows, batch_rows, {codec.pad_id, 8}));
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/codec.h"
#include "data/example.h"
#include "data/jsonl_reader.h"
#include "data/tokenize.h"

namespace bidora::data {

struct DataOptions {
  std::string train_file;
  std::string val_file;     // "" = split train_file by val_ratio
  double val_ratio = 0.1;   // used without val_file; 0 = no validation set
  int64_t max_samples = 0;  // 0 = all; else the first N valid examples of train_file, before the split
  uint64_t seed = 42;       // train/val split (the epoch order is seeded in BatchPlanOptions)
  int64_t max_seq_len = 1024;
  bool train_on_prompt = false;
  BadLinePolicy bad_lines = BadLinePolicy::Stop;
  std::string chat_template;  // preset name (chat_template_names()); "" = recognise the tokenizer's
};

struct FileReport {
  std::string path;
  int64_t lines = 0;                                 // lines read
  int64_t blank_lines = 0;                           // ignored
  int64_t examples = 0;                              // valid examples kept
  BadLineLog skipped;                                // lines rejected under BadLinePolicy::Skip
  std::array<int64_t, kNumRecordFormats> formats{};  // examples per RecordFormat
};

struct ResolvedTemplate {
  std::optional<ChatTemplate> chat_template;
  std::string why_none;  // why there is none (shown if a {"messages"} record needs one)
};

// The chat template for {"messages"} records: the preset `name` if given, else the one
// recognised in the tokenizer's chat_template.
ResolvedTemplate resolve_chat_template(const TextCodec& codec, const std::string& name);

// Format options for `codec`: its EOS string and chat template.
FormatOptions format_options(const TextCodec& codec, const ResolvedTemplate& tmpl, bool train_on_prompt);

struct LoadedExamples {
  std::vector<Example> examples;
  FileReport report;
};

// Reads up to `max_samples` valid examples (0 = all) from a JSONL file and applies their format.
// Bad lines stop with an error naming file:line, or are skipped and counted (policy).
LoadedExamples load_examples(const std::string& path, const FormatOptions& fmt, BadLinePolicy policy,
                             int64_t max_samples);

struct TrainingData {
  std::vector<TokenizedExample> train, val;
  std::vector<FileReport> files;  // train file first
  std::optional<ChatTemplate> chat_template;
  int64_t truncated = 0;          // examples cut to max_seq_len (train + val)
  int64_t dropped_untrained = 0;  // examples left out because no token of theirs is trained
                                  // (e.g. a prompt longer than max_seq_len)
};

// Loads, formats, splits and tokenizes. Throws bidora::Error on bad input (see BadLinePolicy)
// and when the training set ends up empty.
TrainingData load_training_data(const TextCodec& codec, const DataOptions& opt);

}  // namespace bidora::data
