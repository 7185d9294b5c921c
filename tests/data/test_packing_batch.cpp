#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "data/batch.h"
#include "data/packing.h"

namespace bidora::data {
namespace {

using V = std::vector<int32_t>;

std::vector<int64_t> sorted_examples(const std::vector<Row>& rows) {
  std::vector<int64_t> all;
  for (const Row& r : rows) all.insert(all.end(), r.examples.begin(), r.examples.end());
  std::sort(all.begin(), all.end());
  return all;
}

TEST(Packing, BestFitDecreasingOnAHandExample) {
  // Capacity 10. Decreasing order: 7(i1) 6(i3) 5(i0) 4(i4) 3(i2) 3(i5) 2(i6).
  // 7 -> row0 (free 3); 6 -> row1 (free 4); 5 -> row2 (free 5); 4 -> best fit row1 (free 4 -> 0);
  // 3 -> row0 (free 3 -> 0); 3 -> row2 (free 5 -> 2); 2 -> row2 (free 2 -> 0).
  const std::vector<int64_t> len = {5, 7, 3, 6, 4, 3, 2};
  auto rows = pack_rows(len, 10);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].examples, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(rows[1].examples, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(rows[2].examples, (std::vector<int64_t>{0, 5, 6}));
  for (const Row& r : rows) EXPECT_EQ(r.length, 10);
}

TEST(Packing, UsesEveryExampleOnceWithinCapacity) {
  std::vector<int64_t> len;
  for (int i = 0; i < 500; ++i) len.push_back(1 + (i * 7919) % 512);
  auto rows = pack_rows(len, 512);
  std::vector<int64_t> expect(500);
  std::iota(expect.begin(), expect.end(), 0);
  EXPECT_EQ(sorted_examples(rows), expect);
  int64_t total = 0;
  for (const Row& r : rows) {
    int64_t sum = 0;
    for (int64_t e : r.examples) sum += len[static_cast<size_t>(e)];
    EXPECT_EQ(sum, r.length);
    EXPECT_LE(r.length, 512);
    total += sum;
  }
  // Lower bound ceil(total / capacity); best-fit decreasing stays within 11/9 of optimal + 1.
  const int64_t lower = (total + 511) / 512;
  EXPECT_GE(static_cast<int64_t>(rows.size()), lower);
  EXPECT_LE(static_cast<double>(rows.size()), 11.0 / 9.0 * static_cast<double>(lower) + 1);
  EXPECT_EQ(pack_rows(len, 512).size(), rows.size());  // deterministic
}

TEST(Packing, RejectsOverlongAndEmptyExamples) {
  EXPECT_THROW(pack_rows(std::vector<int64_t>{3, 11}, 10), Error);
  EXPECT_THROW(pack_rows(std::vector<int64_t>{0}, 10), Error);
  EXPECT_THROW(pack_rows(std::vector<int64_t>{1}, 0), Error);
}

TEST(Packing, OnePerRow) {
  auto rows = one_example_per_row(std::vector<int64_t>{4, 2});
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].examples, (std::vector<int64_t>{1}));
  EXPECT_EQ(rows[1].length, 2);
}

TokenizedExample tok(V ids, std::vector<uint8_t> trained);

TEST(Packing, MakeRowsFromExamples) {
  std::vector<TokenizedExample> ex(3);
  ex[0].ids.assign(6, 1);
  ex[1].ids.assign(3, 1);
  ex[2].ids.assign(4, 1);
  auto packed = make_rows(ex, true, 10);
  ASSERT_EQ(packed.size(), 2u);
  EXPECT_EQ(packed[0].examples, (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(row_lengths(packed), (std::vector<int64_t>{10, 3}));
  auto single = make_rows(ex, false, 10);
  EXPECT_EQ(row_lengths(single), (std::vector<int64_t>{6, 3, 4}));
}

TokenizedExample tok(V ids, std::vector<uint8_t> trained) {
  TokenizedExample t;
  t.ids = std::move(ids);
  t.trained = std::move(trained);
  t.full_length = static_cast<int64_t>(t.ids.size());
  return t;
}

TEST(Collate, PackedRowRestartsPositionsAndMasksDocumentStarts) {
  const int32_t eos = 2;
  // Example 0: prompt 10 11, answer 12 eos. Example 1: all trained (text format) 20 21 eos.
  // Example 2: 30 31 (answer 31) in its own row.
  std::vector<TokenizedExample> ex = {tok({10, 11, 12, eos}, {0, 0, 1, 1}), tok({20, 21, eos}, {0, 1, 1}),
                                      tok({30, 31}, {0, 1})};
  std::vector<Row> rows = {{{0, 1}, 7}, {{2}, 2}};
  const std::vector<int64_t> batch_rows = {0, 1};
  Batch b = collate(ex, rows, batch_rows, {/*pad_id=*/eos, /*pad_to_multiple_of=*/4});
  EXPECT_EQ(b.rows, 2);
  EXPECT_EQ(b.seq_len, 8);
  EXPECT_EQ(b.input_ids, (V{10, 11, 12, eos, 20, 21, eos, eos, 30, 31, eos, eos, eos, eos, eos, eos}));
  // Padding uses the EOS id but is never trained; the real EOS tokens are.
  EXPECT_EQ(b.labels,
            (V{-100, -100, 12, eos, -100, 21, eos, -100, -100, 31, -100, -100, -100, -100, -100, -100}));
  EXPECT_EQ(b.position_ids, (V{0, 1, 2, 3, 0, 1, 2, 0, 0, 1, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(b.doc_ids, (V{0, 0, 0, 0, 1, 1, 1, -1, 0, 0, -1, -1, -1, -1, -1, -1}));
  EXPECT_EQ(b.row_lengths, (V{7, 2}));
  EXPECT_EQ(b.docs, (std::vector<DocSpan>{{0, 0, 4}, {0, 4, 3}, {1, 0, 2}}));
  EXPECT_EQ(b.num_tokens, 9);
  EXPECT_EQ(b.num_trained, 5);
  EXPECT_EQ(b.num_trained,
            std::count_if(b.labels.begin(), b.labels.end(), [](int32_t l) { return l != -100; }));
}

TEST(Collate, FirstTokenOfADocumentIsNeverALabelEvenIfFlagged) {
  // A flag on the first token (possible in hand-made data) must not let the previous document
  // predict it after the loss's shift.
  std::vector<TokenizedExample> ex = {tok({1, 2}, {1, 1}), tok({3, 4}, {1, 1})};
  std::vector<Row> rows = {{{0, 1}, 4}};
  Batch b = collate(ex, rows, std::vector<int64_t>{0}, {0, 1});
  EXPECT_EQ(b.labels, (V{-100, 2, -100, 4}));
}

TEST(Collate, ChecksItsInputs) {
  std::vector<TokenizedExample> ex = {tok({1, 2}, {0, 1})};
  std::vector<Row> wrong_len = {{{0}, 3}};
  EXPECT_THROW(collate(ex, wrong_len, std::vector<int64_t>{0}, {}), Error);
  std::vector<Row> rows = {{{0}, 2}};
  EXPECT_THROW(collate(ex, rows, std::vector<int64_t>{1}, {}), Error);
  EXPECT_THROW(collate(ex, rows, std::vector<int64_t>{}, {}), Error);
}

TEST(BatchPlan, LengthGroupedOrderFollowsTransformers) {
  std::vector<int64_t> len;
  for (int i = 0; i < 1000; ++i) len.push_back((i * 37) % 997 + 1);
  Rng rng(5);
  const int64_t bs = 4;
  auto order = length_grouped_order(len, bs, rng);
  auto sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[static_cast<size_t>(i)], i);
  // The longest row comes first.
  EXPECT_EQ(len[static_cast<size_t>(order[0])], *std::max_element(len.begin(), len.end()));
  // mega_batch_mult = min(1000 / 16, 50) = 50: megabatches of 200, each sorted decreasing (the
  // first one apart from the swapped-in maximum).
  for (size_t m = 0; m < 5; ++m)
    for (size_t i = m * 200 + 1; i + 1 < (m + 1) * 200; ++i) {
      if (m > 0 && i == m * 200) continue;
      ASSERT_GE(len[static_cast<size_t>(order[i])], len[static_cast<size_t>(order[i + 1])]) << i;
    }
  Rng again(5);
  EXPECT_EQ(length_grouped_order(len, bs, again), order);
}

TEST(BatchPlan, EpochsCoverEveryRowOnceAndDifferBySeedAndEpoch) {
  std::vector<int64_t> len(10, 5);
  BatchPlanOptions opt;
  opt.batch_size = 3;
  opt.seed = 11;
  auto e0 = plan_epoch(len, opt, 0);
  ASSERT_EQ(e0.size(), 4u);
  EXPECT_EQ(e0.back().size(), 1u);
  std::vector<int64_t> all;
  for (auto& b : e0) all.insert(all.end(), b.begin(), b.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(plan_epoch(len, opt, 0), e0);
  EXPECT_NE(plan_epoch(len, opt, 1), e0);
  opt.seed = 12;
  EXPECT_NE(plan_epoch(len, opt, 0), e0);
  opt.drop_last = true;
  EXPECT_EQ(plan_epoch(len, opt, 0).size(), 3u);
  opt.shuffle = false;
  opt.drop_last = false;
  auto ordered = plan_epoch(len, opt, 3);
  EXPECT_EQ(ordered[0], (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(ordered[3], (std::vector<int64_t>{9}));
  opt.batch_size = 0;
  EXPECT_THROW(plan_epoch(len, opt, 0), Error);
}

TEST(BatchPlan, GroupedBatchesHaveSimilarLengths) {
  // Padding waste with grouping must be far below that of a random order.
  std::vector<int64_t> len;
  for (int i = 0; i < 2000; ++i) len.push_back(1 + (i * 7919) % 1000);
  auto waste = [&](const std::vector<std::vector<int64_t>>& batches) {
    int64_t w = 0;
    for (const auto& b : batches) {
      int64_t mx = 0;
      for (int64_t r : b) mx = std::max(mx, len[static_cast<size_t>(r)]);
      for (int64_t r : b) w += mx - len[static_cast<size_t>(r)];
    }
    return w;
  };
  BatchPlanOptions opt;
  opt.batch_size = 8;
  const int64_t random_waste = waste(plan_epoch(len, opt, 0));
  opt.group_by_length = true;
  const int64_t grouped_waste = waste(plan_epoch(len, opt, 0));
  EXPECT_LT(grouped_waste * 10, random_waste);
}

}  // namespace
}  // namespace bidora::data
