#include "data/batch.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"

namespace bidora::data {

std::vector<Row> make_rows(std::span<const TokenizedExample> examples, bool pack, int64_t max_seq_len) {
  std::vector<int64_t> lengths;
  lengths.reserve(examples.size());
  for (const auto& ex : examples) lengths.push_back(static_cast<int64_t>(ex.ids.size()));
  return pack ? pack_rows(lengths, max_seq_len) : one_example_per_row(lengths);
}

std::vector<int64_t> row_lengths(std::span<const Row> rows) {
  std::vector<int64_t> out;
  out.reserve(rows.size());
  for (const Row& r : rows) out.push_back(r.length);
  return out;
}

Batch collate(std::span<const TokenizedExample> examples, std::span<const Row> rows,
              std::span<const int64_t> batch_rows, const CollateOptions& opt) {
  BIDORA_CHECK(!batch_rows.empty(), "cannot build an empty batch");
  BIDORA_CHECK(opt.pad_to_multiple_of >= 1, "pad_to_multiple_of must be at least 1");
  Batch b;
  b.rows = static_cast<int64_t>(batch_rows.size());
  int64_t longest = 0;
  for (int64_t r : batch_rows) {
    BIDORA_CHECK(r >= 0 && static_cast<size_t>(r) < rows.size(), "row index {} out of range", r);
    longest = std::max(longest, rows[static_cast<size_t>(r)].length);
  }
  b.seq_len = (longest + opt.pad_to_multiple_of - 1) / opt.pad_to_multiple_of * opt.pad_to_multiple_of;
  const size_t cells = static_cast<size_t>(b.rows * b.seq_len);
  b.input_ids.assign(cells, opt.pad_id);
  b.labels.assign(cells, kIgnoreIndex);
  b.position_ids.assign(cells, 0);
  b.doc_ids.assign(cells, -1);
  b.row_lengths.reserve(batch_rows.size());

  for (size_t r = 0; r < batch_rows.size(); ++r) {
    const Row& row = rows[static_cast<size_t>(batch_rows[r])];
    const size_t base = r * static_cast<size_t>(b.seq_len);
    int32_t pos = 0;
    for (size_t d = 0; d < row.examples.size(); ++d) {
      const auto ex_index = static_cast<size_t>(row.examples[d]);
      BIDORA_CHECK(ex_index < examples.size(), "example index {} out of range", ex_index);
      const TokenizedExample& ex = examples[ex_index];
      const auto len = static_cast<int32_t>(ex.ids.size());
      BIDORA_CHECK(ex.trained.size() == ex.ids.size(), "example {} has mismatched ids and flags", ex_index);
      b.docs.push_back({static_cast<int32_t>(r), pos, len});
      for (int32_t i = 0; i < len; ++i) {
        const size_t at = base + static_cast<size_t>(pos + i);
        b.input_ids[at] = ex.ids[static_cast<size_t>(i)];
        // i == 0: nothing before it in this document predicts it (see the header).
        if (i > 0 && ex.trained[static_cast<size_t>(i)]) {
          b.labels[at] = ex.ids[static_cast<size_t>(i)];
          ++b.num_trained;
        }
        b.position_ids[at] = i;
        b.doc_ids[at] = static_cast<int32_t>(d);
      }
      pos += len;
    }
    BIDORA_CHECK(pos == row.length, "row {} declares {} tokens but holds {}", batch_rows[r], row.length, pos);
    b.row_lengths.push_back(pos);
    b.num_tokens += pos;
  }
  return b;
}

std::vector<int64_t> length_grouped_order(std::span<const int64_t> lengths, int64_t batch_size, Rng& rng) {
  BIDORA_CHECK(batch_size >= 1, "batch size must be at least 1");
  const auto n = static_cast<int64_t>(lengths.size());
  int64_t mult = std::min<int64_t>(n / (batch_size * 4), 50);
  if (mult == 0) mult = 1;
  const int64_t mega = mult * batch_size;
  std::vector<int64_t> idx = permutation(n, rng);
  std::vector<std::pair<int64_t, int64_t>> megabatches;  // [begin, end) in idx
  for (int64_t s = 0; s < n; s += mega) {
    const int64_t e = std::min(n, s + mega);
    // Python's sorted() is stable: equal lengths keep their permuted order.
    std::stable_sort(idx.begin() + s, idx.begin() + e, [&](int64_t a, int64_t b) {
      return lengths[static_cast<size_t>(a)] > lengths[static_cast<size_t>(b)];
    });
    megabatches.emplace_back(s, e);
  }
  if (!megabatches.empty()) {
    // torch.argmax returns the first maximum.
    size_t best = 0;
    for (size_t m = 1; m < megabatches.size(); ++m)
      if (lengths[static_cast<size_t>(idx[static_cast<size_t>(megabatches[m].first)])] >
          lengths[static_cast<size_t>(idx[static_cast<size_t>(megabatches[best].first)])])
        best = m;
    std::swap(idx[0], idx[static_cast<size_t>(megabatches[best].first)]);
  }
  return idx;
}

std::vector<std::vector<int64_t>> plan_epoch(std::span<const int64_t> row_lengths,
                                             const BatchPlanOptions& opt, int64_t epoch) {
  BIDORA_CHECK(opt.batch_size >= 1, "batch size must be at least 1, got {}", opt.batch_size);
  const auto n = static_cast<int64_t>(row_lengths.size());
  Rng rng(derive_seed(opt.seed, static_cast<uint64_t>(epoch)));
  std::vector<int64_t> order;
  if (opt.group_by_length) {
    order = length_grouped_order(row_lengths, opt.batch_size, rng);
  } else if (opt.shuffle) {
    order = permutation(n, rng);
  } else {
    order.resize(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), int64_t{0});
  }
  std::vector<std::vector<int64_t>> batches;
  for (int64_t s = 0; s < n; s += opt.batch_size) {
    const int64_t e = std::min(n, s + opt.batch_size);
    if (e - s < opt.batch_size && opt.drop_last) break;
    batches.emplace_back(order.begin() + s, order.begin() + e);
  }
  return batches;
}

}  // namespace bidora::data
