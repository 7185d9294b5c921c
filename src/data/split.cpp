#include "data/split.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "data/rng.h"

namespace bidora::data {

SplitIndices split_train_val(int64_t n, double val_ratio, uint64_t seed) {
  BIDORA_CHECK(val_ratio >= 0.0 && val_ratio < 1.0, "validation ratio must be in [0, 1), got {}", val_ratio);
  SplitIndices out;
  if (val_ratio == 0.0) {
    out.train.resize(static_cast<size_t>(n));
    std::iota(out.train.begin(), out.train.end(), int64_t{0});
    return out;
  }
  const auto n_val = static_cast<int64_t>(std::ceil(val_ratio * static_cast<double>(n)));
  BIDORA_CHECK(
      n_val < n,
      "cannot split {} examples with validation ratio {}: no training example would be left; add data "
      "or give a separate validation file",
      n, val_ratio);
  Rng rng(derive_seed(seed, 0x5B1173ull));
  const std::vector<int64_t> perm = permutation(n, rng);
  out.val.assign(perm.begin(), perm.begin() + n_val);
  out.train.assign(perm.begin() + n_val, perm.end());
  std::sort(out.val.begin(), out.val.end());
  std::sort(out.train.begin(), out.train.end());
  return out;
}

}  // namespace bidora::data
