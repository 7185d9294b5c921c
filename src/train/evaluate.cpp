#include "train/evaluate.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace bidora::train {

data::DataOptions data_options(const TrainConfig& cfg) {
  data::DataOptions d;
  d.train_file = cfg.data.train_file;
  d.val_file = cfg.data.val_file;
  d.val_ratio = cfg.data.val_file.empty() ? cfg.data.val_split_ratio : 0.0;
  d.max_samples = cfg.data.max_samples;
  d.seed = static_cast<uint64_t>(cfg.training.seed);
  d.max_seq_len = cfg.training.max_seq_len;
  d.train_on_prompt = cfg.data.train_on_prompt;
  d.bad_lines = cfg.data.skip_bad_lines ? data::BadLinePolicy::Skip : data::BadLinePolicy::Stop;
  return d;
}

TokenBatch to_token_batch(const data::Batch& b) {
  TokenBatch t;
  t.rows = b.rows;
  t.seq_len = b.seq_len;
  t.input_ids = b.input_ids;
  t.position_ids = b.position_ids;
  t.labels = b.labels;
  return t;
}

std::vector<TokenBatch> evaluation_batches(const std::vector<data::TokenizedExample>& examples,
                                           const std::vector<data::Row>& rows, int64_t batch_size,
                                           int32_t pad_id) {
  std::vector<TokenBatch> out;
  for (int64_t i = 0; i < static_cast<int64_t>(rows.size()); i += batch_size) {
    std::vector<int64_t> idx;
    for (int64_t j = i; j < std::min<int64_t>(i + batch_size, rows.size()); ++j) idx.push_back(j);
    out.push_back(
        to_token_batch(data::collate(examples, rows, idx, {.pad_id = pad_id, .pad_to_multiple_of = 1})));
  }
  return out;
}

LossSums evaluation_loss(Decoder& decoder, const std::vector<TokenBatch>& batches,
                         const std::function<void(int64_t, int64_t)>& on_batch) {
  LossSums total;
  const int64_t n = static_cast<int64_t>(batches.size());
  for (int64_t i = 0; i < n; ++i) {
    const LossSums s = decoder.loss(batches[i]);
    total.sum += s.sum;
    total.count += s.count;
    if (on_batch) on_batch(i + 1, n);
  }
  return total;
}

EvalData load_eval_data(const TrainConfig& cfg, const data::TextCodec& codec, const std::string& file) {
  // The file takes the training file's place with nothing held out, so every example is read,
  // formatted and tokenised exactly as training data is, and kept in file order.
  data::DataOptions opt = data_options(cfg);
  opt.train_file = file;
  opt.val_file.clear();
  opt.val_ratio = 0.0;
  data::TrainingData td = data::load_training_data(codec, opt);
  EvalData out;
  out.file = file;
  out.report = td.files.front();
  out.truncated = td.truncated;
  out.dropped_untrained = td.dropped_untrained;
  out.examples = std::move(td.train);
  for (const auto& e : out.examples) out.trained_tokens += e.num_trained();
  // Padding is masked by length, never by id, so any valid id will do when the tokenizer has none.
  const int32_t pad_id = codec.pad_id < 0 ? 0 : codec.pad_id;
  const std::vector<data::Row> rows =
      data::make_rows(out.examples, cfg.data.packing, cfg.training.max_seq_len);
  out.batches = evaluation_batches(out.examples, rows, cfg.training.batch_size, pad_id);
  return out;
}

EvalResult eval_result(const LossSums& sums) {
  BIDORA_CHECK(sums.count > 0, "no trained token to evaluate");
  EvalResult r;
  r.loss = sums.mean();
  r.perplexity = std::exp(r.loss);
  r.tokens = sums.count;
  return r;
}

}  // namespace bidora::train
