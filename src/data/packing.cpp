#include "data/packing.h"

#include <algorithm>
#include <numeric>
#include <set>
#include <utility>

#include "core/error.h"

namespace bidora::data {

std::vector<Row> one_example_per_row(std::span<const int64_t> lengths) {
  std::vector<Row> rows(lengths.size());
  for (size_t i = 0; i < lengths.size(); ++i) rows[i] = Row{{static_cast<int64_t>(i)}, lengths[i]};
  return rows;
}

std::vector<Row> pack_rows(std::span<const int64_t> lengths, int64_t capacity) {
  BIDORA_CHECK(capacity > 0, "packing capacity must be positive, got {}", capacity);
  std::vector<int64_t> order(lengths.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return lengths[a] > lengths[b]; });

  std::vector<Row> rows;
  std::set<std::pair<int64_t, size_t>> open;  // (free space, row index): best fit = lower_bound(len)
  for (int64_t idx : order) {
    const int64_t len = lengths[static_cast<size_t>(idx)];
    BIDORA_CHECK(len >= 1 && len <= capacity, "cannot pack an example of {} tokens into rows of {}", len,
                 capacity);
    auto it = open.lower_bound({len, 0});
    size_t r;
    if (it == open.end()) {
      r = rows.size();
      rows.emplace_back();
    } else {
      r = it->second;
      open.erase(it);
    }
    rows[r].examples.push_back(idx);
    rows[r].length += len;
    if (rows[r].length < capacity) open.insert({capacity - rows[r].length, r});
  }
  return rows;
}

}  // namespace bidora::data
