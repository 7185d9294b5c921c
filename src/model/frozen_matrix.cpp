#include "model/frozen_matrix.h"

#include <cstring>

#include "core/error.h"
#include "core/half.h"

namespace bidora {

const char* storage_name(WeightStorage s) {
  switch (s) {
    case WeightStorage::F32:
      return "f32";
    case WeightStorage::BF16:
      return "bf16";
    case WeightStorage::NF4:
      return "nf4";
    case WeightStorage::INT8:
      return "int8";
  }
  return "?";
}

std::optional<WeightStorage> storage_from_string(std::string_view s) {
  if (s == "f32" || s == "fp32" || s == "float32") return WeightStorage::F32;
  if (s == "bf16" || s == "bfloat16") return WeightStorage::BF16;
  if (s == "nf4" || s == "4bit") return WeightStorage::NF4;
  if (s == "int8" || s == "8bit") return WeightStorage::INT8;
  return std::nullopt;
}

struct FrozenMatrix::Quantized {
  quant::Nf4Matrix nf4;
  quant::Int8Matrix int8;
};

FrozenMatrix FrozenMatrix::from_tensor(const TensorView& t, WeightStorage storage, const std::string& source,
                                       const QuantOptions& q) {
  FrozenMatrix m;
  if (t.shape.size() == 2) {
    m.rows_ = t.shape[0];
    m.cols_ = t.shape[1];
  } else if (t.shape.size() == 1) {
    m.rows_ = 1;
    m.cols_ = t.shape[0];
  } else {
    fail("{}: tensor '{}' has shape {}; expected a matrix", source, t.name, t.shape_str());
  }
  m.storage_ = storage;
  const auto addr = reinterpret_cast<uintptr_t>(t.data);
  if (storage == WeightStorage::F32 && t.dtype == DType::F32 && addr % alignof(float) == 0) {
    m.f32_ = reinterpret_cast<const float*>(t.data);
    m.zero_copy_ = true;
    return m;
  }
  if (storage == WeightStorage::BF16 && t.dtype == DType::BF16 && addr % alignof(uint16_t) == 0) {
    m.bf16_ = reinterpret_cast<const uint16_t*>(t.data);
    m.zero_copy_ = true;
    return m;
  }
  std::vector<float> values(static_cast<size_t>(t.numel()));
  tensor_to_f32(t, values.data(), source);
  return from_f32(std::move(values), m.rows_, m.cols_, storage, q, source + ": tensor '" + t.name + "'");
}

FrozenMatrix FrozenMatrix::from_f32(std::vector<float> values, int64_t rows, int64_t cols,
                                    WeightStorage storage, const QuantOptions& q, const std::string& what) {
  BIDORA_CHECK(static_cast<int64_t>(values.size()) == rows * cols, "FrozenMatrix: {} values for [{}, {}]",
               values.size(), rows, cols);
  FrozenMatrix m;
  m.rows_ = rows;
  m.cols_ = cols;
  m.storage_ = storage;
  switch (storage) {
    case WeightStorage::F32:
      m.own_f32_ = std::move(values);
      m.f32_ = m.own_f32_.data();
      break;
    case WeightStorage::BF16:
      m.own_bf16_.resize(values.size());
      f32_to_bf16_n(values.data(), m.own_bf16_.data(), values.size());
      m.bf16_ = m.own_bf16_.data();
      break;
    case WeightStorage::NF4: {
      auto qm = std::make_shared<Quantized>();
      qm->nf4 = quant::Nf4Matrix::quantize(values.data(), rows, cols, q.nf4, what);
      m.quant_ = std::move(qm);
      break;
    }
    case WeightStorage::INT8: {
      auto qm = std::make_shared<Quantized>();
      qm->int8 = quant::Int8Matrix::quantize(values.data(), rows, cols, q.int8, what);
      m.quant_ = std::move(qm);
      break;
    }
  }
  return m;
}

void FrozenMatrix::rows_f32(int64_t r0, int64_t n, float* out) const {
  // Large ranges (weight tiles before a GEMM) are expanded by all threads, each taking whole
  // rows; small ones (an embedding row) stay on the calling thread. Inside an OpenMP region
  // the nested region runs serially.
  constexpr int64_t kParallelElements = int64_t{1} << 16;
  if (n > 1 && n * cols_ >= kParallelElements) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; ++r) rows_f32_serial(r0 + r, 1, out + r * cols_);
  } else {
    rows_f32_serial(r0, n, out);
  }
}

void FrozenMatrix::rows_f32_serial(int64_t r0, int64_t n, float* out) const {
  const size_t count = static_cast<size_t>(n * cols_);
  const size_t first = static_cast<size_t>(r0 * cols_);
  switch (storage_) {
    case WeightStorage::F32:
      std::memcpy(out, f32_ + first, count * sizeof(float));
      return;
    case WeightStorage::BF16:
      bf16_to_f32_n(bf16_ + first, out, count);
      return;
    case WeightStorage::NF4:
      quant_->nf4.dequantize_rows(r0, n, out);
      return;
    case WeightStorage::INT8:
      quant_->int8.dequantize_rows(r0, n, out);
      return;
  }
}

size_t FrozenMatrix::bytes() const {
  switch (storage_) {
    case WeightStorage::F32:
      return static_cast<size_t>(rows_ * cols_) * 4;
    case WeightStorage::BF16:
      return static_cast<size_t>(rows_ * cols_) * 2;
    case WeightStorage::NF4:
      return quant_->nf4.bytes();
    case WeightStorage::INT8:
      return quant_->int8.bytes();
  }
  return 0;
}

}  // namespace bidora
