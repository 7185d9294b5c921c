// safetensors: header parsing and every tensor's data, from a heap buffer (ASan reports any read
// past it) and, for a share of the inputs, through the path (mmap) constructor too.
#include <string>
#include <vector>

#include "core/error.h"
#include "fuzz_util.h"
#include "io/safetensors.h"

namespace {

void exercise(const bidora::SafetensorsFile& f, size_t input_size) {
  size_t covered = 0;
  for (const bidora::TensorView& t : f.tensors()) {
    // A view's size matches its dtype and shape, and all views together fit in the input.
    if (static_cast<size_t>(t.numel()) * bidora::dtype_size(t.dtype) != t.nbytes) __builtin_trap();
    covered += t.nbytes;
    if (covered > input_size) __builtin_trap();
    bidora::fuzz::touch(t.data, t.nbytes);
    if (f.find(t.name) != &t) __builtin_trap();
    (void)t.shape_str();
    if (t.dtype == bidora::DType::F32 || t.dtype == bidora::DType::BF16 || t.dtype == bidora::DType::F16) {
      std::vector<float> out(static_cast<size_t>(t.numel()));
      bidora::tensor_to_f32(t, out.data(), f.path());
    } else {
      try {  // other dtypes are refused with an Error, never converted
        float dummy[1];
        if (t.numel() <= 1) bidora::tensor_to_f32(t, dummy, f.path());
      } catch (const bidora::Error&) {
      }
    }
  }
  for (const auto& [k, v] : f.metadata()) (void)(k.size() + v.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = bidora::SafetensorsFile::from_bytes(std::string(reinterpret_cast<const char*>(data), size),
                                                 "fuzz.safetensors");
    exercise(f, size);
  } catch (const bidora::Error&) {
  }
  // The path constructor on one input in eight: the same parser over a mapped file.
  if (size > 0 && data[size - 1] % 8 == 0) {
    const std::string& path = bidora::fuzz::temp_path("safetensors");
    bidora::fuzz::write_temp(path, data, size);
    try {
      bidora::SafetensorsFile f(path);
      exercise(f, size);
    } catch (const bidora::Error&) {
    }
  }
  return 0;
}
