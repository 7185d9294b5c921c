#pragma once
// Loss and perplexity over data, the way training measures its validation loss: the trainer's
// evaluation and `bidora eval` share these functions, so the same configuration and file give the
// same number in both (formatting, chat template, tokenisation, loss masking, truncation to
// max_seq_len, batching).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "config/train_config.h"
#include "data/batch.h"
#include "data/codec.h"
#include "data/dataset.h"
#include "model/decoder.h"

namespace bidora::train {

// The data options of a training configuration (files, split, max_seq_len, masking, bad lines).
data::DataOptions data_options(const TrainConfig& cfg);

TokenBatch to_token_batch(const data::Batch& b);

// Every row of `rows` in batches of `batch_size`, in order (evaluation needs no shuffling), each
// padded to its longest row.
std::vector<TokenBatch> evaluation_batches(const std::vector<data::TokenizedExample>& examples,
                                           const std::vector<data::Row>& rows, int64_t batch_size,
                                           int32_t pad_id);

// Sum and count of the per-token losses over `batches`: their ratio is the token-weighted mean,
// independent of how the tokens were batched. The decoder's adapters, if any, must be in eval
// mode (no dropout). `on_batch(done, total)` is called after each batch (progress).
LossSums evaluation_loss(Decoder& decoder, const std::vector<TokenBatch>& batches,
                         const std::function<void(int64_t, int64_t)>& on_batch = {});

// One JSONL file prepared as the training pipeline prepares data: formatted and tokenised with
// cfg's settings (data.train_on_prompt, data.max_samples as "the first N examples",
// data.skip_bad_lines, training.max_seq_len), examples without a trained token left out, rows
// packed when data.packing is on (packed documents attend only to themselves and restart their
// positions, so packing changes the speed, not the loss), batches of training.batch_size.
struct EvalData {
  std::string file;
  std::vector<data::TokenizedExample> examples;
  std::vector<TokenBatch> batches;
  data::FileReport report;
  int64_t truncated = 0;          // examples cut to max_seq_len
  int64_t dropped_untrained = 0;  // examples with no trained token left (not evaluated)
  int64_t trained_tokens = 0;     // loss terms
};
EvalData load_eval_data(const TrainConfig& cfg, const data::TextCodec& codec, const std::string& file);

struct EvalResult {
  double loss = 0;        // mean cross-entropy per trained token (nats)
  double perplexity = 0;  // exp(loss)
  int64_t tokens = 0;     // trained tokens the mean is over
};
EvalResult eval_result(const LossSums& sums);

}  // namespace bidora::train
