#include "data/dataset.h"

#include <fmt/format.h>

#include "core/error.h"
#include "data/split.h"

namespace bidora::data {

ResolvedTemplate resolve_chat_template(const TextCodec& codec, const std::string& name) {
  ResolvedTemplate r;
  if (!name.empty()) {
    r.chat_template = chat_template_by_name(name, codec.bos_token, codec.eos_token);
  } else if (codec.chat_template.empty()) {
    r.why_none = "the tokenizer has no chat_template";
  } else {
    r.chat_template = detect_chat_template(codec.chat_template, codec.bos_token, codec.eos_token);
    if (!r.chat_template) r.why_none = "the tokenizer's chat_template is not one bidora reproduces";
  }
  return r;
}

FormatOptions format_options(const TextCodec& codec, const ResolvedTemplate& tmpl, bool train_on_prompt) {
  FormatOptions f;
  f.eos_token = codec.eos_token;
  f.chat_template = tmpl.chat_template;
  f.no_template_reason = tmpl.why_none;
  f.train_on_prompt = train_on_prompt;
  return f;
}

LoadedExamples load_examples(const std::string& path, const FormatOptions& fmt, BadLinePolicy policy,
                             int64_t max_samples) {
  LoadedExamples out;
  JsonlReader reader(path, policy);
  while (max_samples <= 0 || static_cast<int64_t>(out.examples.size()) < max_samples) {
    std::optional<Record> rec = reader.next();
    if (!rec) break;
    try {
      out.examples.push_back(build_example(*rec, fmt));
      ++out.report.formats[static_cast<size_t>(rec->format)];
    } catch (const Error& e) {
      if (policy == BadLinePolicy::Stop) throw;
      reader.skipped().add(rec->line, e.what());
    }
  }
  out.report.path = path;
  out.report.lines = reader.lines_read();
  out.report.blank_lines = reader.blank_lines();
  out.report.examples = static_cast<int64_t>(out.examples.size());
  out.report.skipped = std::move(reader.skipped());
  return out;
}

namespace {

void tokenize_into(std::vector<TokenizedExample>& out, const std::vector<Example>& examples,
                   const std::vector<int64_t>* subset, const ExampleTokenizer& tok,
                   const TokenizeOptions& topt, TrainingData& data) {
  std::vector<TokenizedExample> all = tok.tokenize_all(examples, subset, topt);
  out.reserve(all.size());
  for (TokenizedExample& t : all) {
    data.truncated += t.truncated ? 1 : 0;
    if (t.num_trained() == 0) {
      ++data.dropped_untrained;
      continue;
    }
    out.push_back(std::move(t));
  }
}

}  // namespace

TrainingData load_training_data(const TextCodec& codec, const DataOptions& opt) {
  BIDORA_CHECK(!opt.train_file.empty(), "no training data file given");
  BIDORA_CHECK(opt.max_seq_len > 0, "max_seq_len must be positive, got {}", opt.max_seq_len);
  TrainingData data;
  const ResolvedTemplate tmpl = resolve_chat_template(codec, opt.chat_template);
  data.chat_template = tmpl.chat_template;
  const FormatOptions fmt = format_options(codec, tmpl, opt.train_on_prompt);
  const ExampleTokenizer tok(codec.encode);
  const TokenizeOptions topt{opt.max_seq_len, opt.train_on_prompt};

  LoadedExamples train = load_examples(opt.train_file, fmt, opt.bad_lines, opt.max_samples);
  BIDORA_CHECK(!train.examples.empty(), "{}: no valid training example ({} lines read, {} skipped)",
               opt.train_file, train.report.lines, train.report.skipped.count);
  data.files.push_back(train.report);
  if (!opt.val_file.empty()) {
    LoadedExamples val = load_examples(opt.val_file, fmt, opt.bad_lines, 0);
    BIDORA_CHECK(!val.examples.empty(), "{}: no valid validation example", opt.val_file);
    data.files.push_back(val.report);
    tokenize_into(data.train, train.examples, nullptr, tok, topt, data);
    tokenize_into(data.val, val.examples, nullptr, tok, topt, data);
  } else {
    const SplitIndices split =
        split_train_val(static_cast<int64_t>(train.examples.size()), opt.val_ratio, opt.seed);
    tokenize_into(data.train, train.examples, &split.train, tok, topt, data);
    tokenize_into(data.val, train.examples, &split.val, tok, topt, data);
  }
  BIDORA_CHECK(!data.train.empty(),
               "{}: no training example has a trained token left after truncation to {} tokens (raise "
               "max_seq_len or check the data)",
               opt.train_file, opt.max_seq_len);
  return data;
}

}  // namespace bidora::data
