#pragma once
// Dataset statistics for `bidora data-preview` and the training log.
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "data/record.h"
#include "data/tokenize.h"

namespace bidora::data {

// Equal-width bins over untruncated lengths: bin k counts lengths in
// [first + k * width, first + (k+1) * width). `first` is a multiple of the width.
struct LengthHistogram {
  int64_t bin_width = 1;
  int64_t first = 0;
  std::vector<int64_t> counts;
};

struct DatasetStats {
  int64_t examples = 0;
  int64_t tokens = 0;            // after truncation: what training sees
  int64_t trained_tokens = 0;    // loss terms
  int64_t truncated = 0;         // examples longer than max_seq_len
  int64_t untrained = 0;         // examples with no trained token (left out of training)
  int64_t split_boundaries = 0;  // prompt/answer boundaries that fell inside a token
  // Untruncated lengths in tokens.
  int64_t min_length = 0, max_length = 0, median_length = 0, p95_length = 0;
  double mean_length = 0.0;
  std::array<int64_t, kNumRecordFormats> formats{};
  LengthHistogram histogram;
  int64_t max_seq_len = 0;
  int64_t packed_rows = 0;  // rows of max_seq_len tokens when packing (best-fit decreasing)
};

// `bins` is the target number of bars: the width is the smallest 1, 2 or 5 times a power of ten
// that covers [min, max] in that many bins (one more bar may be needed after rounding).
DatasetStats compute_stats(std::span<const TokenizedExample> examples, int64_t max_seq_len, int bins);

// A text bar chart, one line per bin: "  256-511 | ######        12". Bins holding lengths over
// max_seq_len are marked (those examples are truncated).
std::string format_histogram(const LengthHistogram& h, int64_t max_seq_len, int bar_width);

}  // namespace bidora::data
