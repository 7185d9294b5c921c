#include "io/dtype.h"

#include <array>

namespace bidora {
namespace {
struct Entry {
  DType t;
  const char* name;
  size_t size;
  int rank;  // the safetensors Rust enum order (see shared/reference/formats.md §1)
};
constexpr std::array<Entry, 13> kTable{{
    {DType::BOOL, "BOOL", 1, 0},
    {DType::U8, "U8", 1, 4},
    {DType::I8, "I8", 1, 5},
    {DType::I16, "I16", 2, 11},
    {DType::U16, "U16", 2, 12},
    {DType::F16, "F16", 2, 13},
    {DType::BF16, "BF16", 2, 14},
    {DType::I32, "I32", 4, 15},
    {DType::U32, "U32", 4, 16},
    {DType::F32, "F32", 4, 17},
    {DType::F64, "F64", 8, 19},
    {DType::I64, "I64", 8, 20},
    {DType::U64, "U64", 8, 21},
}};
const Entry& entry(DType t) {
  return kTable[static_cast<size_t>(t)];
}
}  // namespace

std::optional<DType> dtype_from_string(std::string_view s) {
  for (const auto& e : kTable)
    if (s == e.name) return e.t;
  return std::nullopt;
}
const char* dtype_name(DType t) {
  return entry(t).name;
}
size_t dtype_size(DType t) {
  return entry(t).size;
}
int dtype_rank(DType t) {
  return entry(t).rank;
}

}  // namespace bidora
