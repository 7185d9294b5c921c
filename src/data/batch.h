#pragma once
// Batches as the model consumes them, and the order in which rows form batches.
//
// What the model side gets (row-major [rows x seq_len] arrays, rows right-padded):
//   input_ids     token ids; positions at or after row_lengths[r] hold pad_id.
//   labels        NOT shifted: labels[i] = input_ids[i] if that token is trained, else -100
//                 (kIgnoreIndex). The loss does the causal shift like transformers: the logits at
//                 position i are scored against labels[i + 1]. Padding is -100 by position (never
//                 by comparing ids with pad_id, which may equal EOS).
//   position_ids  0, 1, 2, ... restarting at 0 at the first token of every document.
//   doc_ids       index of the document within its row (0, 1, ...), -1 on padding. Attention is
//                 causal AND block-diagonal: position i may attend to j only if j <= i and
//                 doc_ids[j] == doc_ids[i]. Without packing every row is one document, so this
//                 is the plain causal mask plus the padding mask. A padding position belongs to
//                 no document; its outputs are never used.
//   docs          the same boundaries as a list (row, start, length), cu_seqlens style.
// Document boundaries and the shifted loss: the label of the FIRST token of every document is
// -100 (as transformers' DataCollatorWithFlattening does), so after the shift the last token of
// document k is never trained to predict the first token of document k+1, and the first token
// of a row (whose label the shift drops anyway) does not count. Hence
// num_trained == count(labels != -100) == the number of loss terms (the loss denominator).
#include <cstdint>
#include <span>
#include <vector>

#include "data/packing.h"
#include "data/rng.h"
#include "data/tokenize.h"

namespace bidora::data {

inline constexpr int32_t kIgnoreIndex = -100;

struct DocSpan {
  int32_t row = 0, start = 0, length = 0;
  bool operator==(const DocSpan&) const = default;
};

struct Batch {
  int64_t rows = 0, seq_len = 0;
  std::vector<int32_t> input_ids, labels, position_ids, doc_ids;  // rows * seq_len each
  std::vector<int32_t> row_lengths;                               // real tokens per row
  std::vector<DocSpan> docs;
  int64_t num_tokens = 0;   // real (non-padding) tokens
  int64_t num_trained = 0;  // labels != -100
};

// Training rows for a set of examples: packed (best-fit decreasing) into rows of at most
// max_seq_len tokens, or one example per row.
std::vector<Row> make_rows(std::span<const TokenizedExample> examples, bool pack, int64_t max_seq_len);
std::vector<int64_t> row_lengths(std::span<const Row> rows);

struct CollateOptions {
  int32_t pad_id = 0;
  int64_t pad_to_multiple_of = 1;  // seq_len = longest row rounded up to a multiple of this
};

// Builds the batch made of `batch_rows` (indices into `rows`, whose examples index `examples`).
Batch collate(std::span<const TokenizedExample> examples, std::span<const Row> rows,
              std::span<const int64_t> batch_rows, const CollateOptions& opt);

struct BatchPlanOptions {
  int64_t batch_size = 1;
  bool shuffle = true;           // a new seeded order every epoch
  bool group_by_length = false;  // transformers' group_by_length (implies shuffling)
  bool drop_last = false;        // drop a final incomplete batch
  uint64_t seed = 42;
};

// The row indices of every batch of one epoch; a pure function of (lengths, options, epoch).
std::vector<std::vector<int64_t>> plan_epoch(std::span<const int64_t> row_lengths,
                                             const BatchPlanOptions& opt, int64_t epoch);

// transformers' get_length_grouped_indices: a random permutation cut into megabatches of
// mega_batch_mult * batch_size (mult = min(n / (4 * batch_size), 50), at least 1), each sorted by
// decreasing length; the longest row is swapped to the front so the first batch is the largest
// (an early out-of-memory instead of a late one).
std::vector<int64_t> length_grouped_order(std::span<const int64_t> lengths, int64_t batch_size, Rng& rng);

}  // namespace bidora::data
