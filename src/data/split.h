#pragma once
// Train/validation split of a dataset that came as one file.
#include <cstdint>
#include <vector>

namespace bidora::data {

struct SplitIndices {
  std::vector<int64_t> train, val;  // example indices, each list in ascending (file) order
};

// Seeded random split like datasets' train_test_split(test_size=val_ratio): the validation set
// gets ceil(val_ratio * n) examples chosen by a seeded permutation, the rest train. Throws
// bidora::Error when either side would be empty; val_ratio == 0 puts everything in train.
SplitIndices split_train_val(int64_t n, double val_ratio, uint64_t seed);

}  // namespace bidora::data
