#pragma once
// A frozen Linear weight [rows=out, cols=in] in one of the storage types. The model never
// reads it element by element: it asks for row ranges as float32 right before a GEMM
// (rows_f32), so the storage can be compact (bf16, NF4, int8) while the maths runs in f32.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/safetensors.h"
#include "quant/int8.h"
#include "quant/nf4.h"

namespace bidora {

enum class WeightStorage { F32, BF16, NF4, INT8 };

// How NF4 / int8 matrices are quantised: NF4 with bitsandbytes' QLoRA defaults (blocksize 64,
// double quantisation); int8 blockwise (absmax per 64 weights), with bitsandbytes' row-wise
// LLM.int8 layout available as int8.layout = RowWise.
struct QuantOptions {
  quant::Nf4Options nf4;
  quant::Int8Options int8{.layout = quant::Int8Layout::Blockwise, .blocksize = 64};
};
const char* storage_name(WeightStorage s);  // "f32", "bf16", "nf4", "int8"
std::optional<WeightStorage> storage_from_string(std::string_view s);

class FrozenMatrix {
 public:
  FrozenMatrix() = default;
  // Move-only: f32_/bf16_ may point into own_f32_/own_bf16_, whose buffers a move carries over
  // but a copy would not.
  FrozenMatrix(FrozenMatrix&&) noexcept = default;
  FrozenMatrix& operator=(FrozenMatrix&&) noexcept = default;
  FrozenMatrix(const FrozenMatrix&) = delete;
  FrozenMatrix& operator=(const FrozenMatrix&) = delete;
  // Builds the matrix from a checkpoint tensor [rows, cols] (or [n] as one row). F32 from an F32
  // tensor and BF16 from a BF16 tensor keep pointing into the mapped file (zero copy): the
  // mapping must outlive the matrix. Everything else is converted or quantised into memory.
  static FrozenMatrix from_tensor(const TensorView& t, WeightStorage storage, const std::string& source,
                                  const QuantOptions& q = {});
  // Takes ownership of float32 values (tests, merged weights).
  static FrozenMatrix from_f32(std::vector<float> values, int64_t rows, int64_t cols, WeightStorage storage,
                               const QuantOptions& q = {}, const std::string& what = "weight");

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  WeightStorage storage() const { return storage_; }
  bool empty() const { return rows_ == 0; }
  bool zero_copy() const { return zero_copy_; }

  // out[n * cols] = rows [r0, r0 + n) as float32 (exact for F32/BF16; the dequantised values for
  // NF4/INT8, bit-identical to bitsandbytes' float32 dequantisation).
  void rows_f32(int64_t r0, int64_t n, float* out) const;
  // The float32 data when stored as F32 (GEMM can use it in place), else nullptr.
  const float* f32_data() const { return f32_; }
  // The bfloat16 data when stored as BF16 (a bf16 GEMM can use it in place), else nullptr.
  const uint16_t* bf16_data() const { return bf16_; }
  // Bytes this matrix keeps resident (mapped or owned).
  size_t bytes() const;

 private:
  void rows_f32_serial(int64_t r0, int64_t n, float* out) const;

  int64_t rows_ = 0, cols_ = 0;
  WeightStorage storage_ = WeightStorage::F32;
  bool zero_copy_ = false;
  const float* f32_ = nullptr;
  const uint16_t* bf16_ = nullptr;
  std::vector<float> own_f32_;
  std::vector<uint16_t> own_bf16_;
  struct Quantized;  // NF4 / int8 state (src/quant)
  std::shared_ptr<const Quantized> quant_;
};

}  // namespace bidora
