#pragma once
// The token batch of a tests/reference/model_reference.py case (input ids, position ids with a
// packed row, labels), shared by the tests that run the reference models.
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/decoder.h"
#include "test_support.h"

namespace bidora::test {

inline std::string reference_case_path(const std::string& name) {
  const std::string path = reference_dir() + "/model/cases/" + name + ".safetensors";
  if (!std::filesystem::exists(path))
    throw std::runtime_error("missing reference " + path +
                             ": run tests/reference/generate.sh (scripts/test.sh does)");
  return path;
}

inline std::string reference_model_dir(const std::string& name) {
  return reference_dir() + "/model/models/" + name;
}

inline TokenBatch reference_batch(const SafetensorsFile& f) {
  auto i32 = [&](const char* key) {
    const TensorView& t = f.get(key);
    std::vector<int32_t> v(t.numel());
    std::memcpy(v.data(), t.data, t.nbytes);
    return v;
  };
  TokenBatch b;
  b.rows = f.get("input_ids").shape[0];
  b.seq_len = f.get("input_ids").shape[1];
  b.input_ids = i32("input_ids");
  b.position_ids = i32("position_ids");
  b.labels = i32("labels");
  return b;
}

inline TokenBatch reference_batch(const std::string& name) {
  return reference_batch(SafetensorsFile(reference_case_path(name)));
}

}  // namespace bidora::test
