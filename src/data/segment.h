#pragma once
#include <string>

namespace bidora::data {

// A piece of rendered text and whether the loss is computed on its tokens.
struct Segment {
  std::string text;
  bool trained = false;
  bool operator==(const Segment&) const = default;
};

}  // namespace bidora::data
