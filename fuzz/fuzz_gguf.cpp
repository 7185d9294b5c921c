// GGUF reader: header, key-value pairs, tensor infos and the F32/F16/BF16/Q8_0 tensor values.
#include <string>
#include <vector>

#include "core/error.h"
#include "fuzz_util.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    // from_bytes keeps a heap copy of exactly `size` bytes: reads past it are reported by ASan.
    auto f =
        bidora::GgufFile::from_bytes(std::string(reinterpret_cast<const char*>(data), size), "fuzz.gguf");
    for (const auto& [key, value] : f.kvs()) {
      if (f.find(key) == nullptr) __builtin_trap();
      (void)bidora::gguf_type_str(value);
      (void)bidora::gguf_array_type(value);
    }
    try {
      (void)f.get<std::string>("general.architecture");
    } catch (const bidora::Error&) {
    }
    try {
      (void)f.get<uint32_t>("general.alignment");
    } catch (const bidora::Error&) {
    }
    size_t total = 0;
    for (const bidora::GgufTensor& t : f.tensors()) {
      if (f.find_tensor(t.name) == nullptr) __builtin_trap();
      total += t.nbytes;
      if (t.nbytes > size || total > size) __builtin_trap();  // the data lies inside the input
      bidora::fuzz::touch(t.data, t.nbytes);
      (void)t.shape();
      (void)t.ne_str();
      (void)t.numel();
      try {
        std::vector<float> v = bidora::gguf_tensor_to_f32(t, "fuzz.gguf");
        if (v.size() != static_cast<size_t>(t.numel())) __builtin_trap();
      } catch (const bidora::Error&) {
      }
    }
  } catch (const bidora::Error&) {
  }
  return 0;
}
