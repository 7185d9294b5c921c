#pragma once
// Shared helpers for the optimiser tests: a toy parameter set that owns its arrays, and readers
// for the reference files written by tests/reference/optim_reference.py.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "test_support.h"
#include "train/optim_params.h"

namespace bidora::train::test_util {

// Owns the values and gradients; refs() points into them (stable: vectors are never resized).
struct ParamSet {
  std::vector<std::string> names;
  std::vector<std::vector<float>> values, grads;
  std::vector<bool> decay;

  void add(const std::string& name, std::vector<float> v, bool d = true) {
    names.push_back(name);
    grads.emplace_back(v.size(), 0.0f);
    values.push_back(std::move(v));
    decay.push_back(d);
  }
  // Overwrites a gradient in place (re-assigning the vector would move it away from the refs).
  void set_grad(size_t i, const std::vector<float>& g) {
    if (g.size() != grads[i].size()) throw std::runtime_error("gradient size mismatch for " + names[i]);
    std::copy(g.begin(), g.end(), grads[i].begin());
  }
  std::vector<ParamRef> refs() {
    std::vector<ParamRef> out;
    for (size_t i = 0; i < names.size(); ++i)
      out.push_back(
          {names[i], values[i].data(), grads[i].data(), static_cast<int64_t>(values[i].size()), decay[i]});
    return out;
  }
};

inline std::string optim_ref_dir() {
  const std::string dir = bidora::test::reference_dir() + "/optim";
  if (!std::filesystem::exists(dir + "/adamw8bit.safetensors"))
    throw std::runtime_error("missing reference " + dir +
                             ": run tests/reference/generate.sh (scripts/test.sh does)");
  return dir;
}

inline std::vector<float> read_f32(const SafetensorsFile& f, const std::string& name) {
  const TensorView& t = f.get(name);
  std::vector<float> v(static_cast<size_t>(t.numel()));
  tensor_to_f32(t, v.data(), f.path());
  return v;
}

// float64 vectors are stored bit-cast as I64 (st_io has no F64).
inline std::vector<double> read_f64(const SafetensorsFile& f, const std::string& name) {
  const TensorView& t = f.get(name);
  if (t.dtype != DType::I64) throw std::runtime_error(name + ": expected I64-encoded float64");
  std::vector<double> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.data, t.nbytes);
  return v;
}

}  // namespace bidora::train::test_util
