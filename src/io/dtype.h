#pragma once
// Tensor element types as safetensors spells them.
#include <cstdint>
#include <optional>
#include <string_view>

namespace bidora {

enum class DType : uint8_t { BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

std::optional<DType> dtype_from_string(std::string_view s);
const char* dtype_name(DType t);
size_t dtype_size(DType t);
// Position in the safetensors writer's sort order (larger alignment first when sorted descending).
int dtype_rank(DType t);

}  // namespace bidora
