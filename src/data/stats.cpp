#include "data/stats.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "data/packing.h"

namespace bidora::data {

namespace {

// The smallest 1, 2 or 5 times a power of ten that is >= x.
int64_t nice_width(int64_t x) {
  int64_t p = 1;
  for (;;) {
    for (int64_t m : {1, 2, 5})
      if (m * p >= x) return m * p;
    p *= 10;
  }
}

// Nearest-rank percentile of sorted values.
int64_t percentile(const std::vector<int64_t>& sorted, double q) {
  const auto n = static_cast<double>(sorted.size());
  auto rank = static_cast<size_t>(std::ceil(q * n));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

}  // namespace

DatasetStats compute_stats(std::span<const TokenizedExample> examples, int64_t max_seq_len, int bins) {
  DatasetStats s;
  s.max_seq_len = max_seq_len;
  s.examples = static_cast<int64_t>(examples.size());
  if (examples.empty()) return s;
  std::vector<int64_t> lengths, kept;
  lengths.reserve(examples.size());
  for (const auto& ex : examples) {
    s.tokens += static_cast<int64_t>(ex.ids.size());
    const int64_t trained = ex.num_trained();
    s.trained_tokens += trained;
    s.truncated += ex.truncated ? 1 : 0;
    s.untrained += trained == 0 ? 1 : 0;
    s.split_boundaries += ex.split_boundaries;
    ++s.formats[static_cast<size_t>(ex.format)];
    lengths.push_back(ex.full_length);
    if (!ex.ids.empty()) kept.push_back(static_cast<int64_t>(ex.ids.size()));
  }
  std::vector<int64_t> sorted = lengths;
  std::sort(sorted.begin(), sorted.end());
  s.min_length = sorted.front();
  s.max_length = sorted.back();
  s.median_length = percentile(sorted, 0.5);
  s.p95_length = percentile(sorted, 0.95);
  double sum = 0;
  for (int64_t l : sorted) sum += static_cast<double>(l);
  s.mean_length = sum / static_cast<double>(sorted.size());

  bins = std::max(bins, 1);
  LengthHistogram& h = s.histogram;
  h.bin_width = nice_width(std::max<int64_t>(1, (s.max_length - s.min_length + bins) / bins));
  h.first = s.min_length / h.bin_width * h.bin_width;
  h.counts.assign(static_cast<size_t>((s.max_length - h.first) / h.bin_width + 1), 0);
  for (int64_t l : lengths) ++h.counts[static_cast<size_t>((l - h.first) / h.bin_width)];
  if (max_seq_len > 0) s.packed_rows = static_cast<int64_t>(pack_rows(kept, max_seq_len).size());
  return s;
}

std::string format_histogram(const LengthHistogram& h, int64_t max_seq_len, int bar_width) {
  int64_t most = 1;
  for (int64_t c : h.counts) most = std::max(most, c);
  const auto nbins = static_cast<int64_t>(h.counts.size());
  const std::string last_label =
      fmt::format("{}-{}", h.first + (nbins - 1) * h.bin_width, h.first + nbins * h.bin_width - 1);
  const size_t label_width = last_label.size();
  std::string out;
  for (size_t k = 0; k < h.counts.size(); ++k) {
    const int64_t lo = h.first + static_cast<int64_t>(k) * h.bin_width, hi = lo + h.bin_width - 1;
    const int64_t c = h.counts[k];
    // Round up so a non-empty bin always shows at least one mark.
    const int64_t bar = (c * bar_width + most - 1) / most;
    const char* note = "";
    if (max_seq_len > 0 && lo > max_seq_len) {
      note = "  (longer than max_seq_len: truncated)";
    } else if (max_seq_len > 0 && hi > max_seq_len) {
      note = "  (partly longer than max_seq_len)";
    }
    out += fmt::format("  {:>{}} | {:<{}} {}{}\n", fmt::format("{}-{}", lo, hi), label_width,
                       std::string(static_cast<size_t>(bar), '#'), bar_width, c, note);
  }
  return out;
}

}  // namespace bidora::data
