#pragma once
// Assignment of examples to training rows: one example per row, or several packed into a row of
// at most `capacity` tokens (best-fit decreasing, TRL's default "bfd" strategy).
#include <cstdint>
#include <span>
#include <vector>

namespace bidora::data {

struct Row {
  std::vector<int64_t> examples;  // example indices, laid out left to right
  int64_t length = 0;             // total tokens
};

std::vector<Row> one_example_per_row(std::span<const int64_t> lengths);

// Best-fit decreasing: examples in order of decreasing length (ties: lower index first) each go
// into the open row with the least free space that still fits them, else into a new row.
// Deterministic. Every length must be in [1, capacity] (truncate first).
std::vector<Row> pack_rows(std::span<const int64_t> lengths, int64_t capacity);

}  // namespace bidora::data
