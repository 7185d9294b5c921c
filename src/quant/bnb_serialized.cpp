#include "quant/bnb_serialized.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/error.h"

namespace bidora::quant {
namespace {

using nlohmann::json;

std::vector<float> f32_values(const BnbTensorBytes& t, const std::string& source, const char* field,
                              int64_t expected = -1) {
  BIDORA_CHECK(t.present(), "{}: missing tensor {}", source, field);
  BIDORA_CHECK(t.dtype == "F32", "{}: tensor {} has dtype {}, expected F32", source, field, t.dtype);
  BIDORA_CHECK(t.bytes.size() % 4 == 0, "{}: tensor {} has {} bytes, not a whole number of F32", source,
               field, t.bytes.size());
  std::vector<float> v(t.bytes.size() / 4);
  if (!v.empty()) std::memcpy(v.data(), t.bytes.data(), t.bytes.size());
  BIDORA_CHECK(expected < 0 || static_cast<int64_t>(v.size()) == expected,
               "{}: tensor {} has {} values, expected {}", source, field, v.size(), expected);
  for (size_t i = 0; i < v.size(); ++i)
    BIDORA_CHECK(std::isfinite(v[i]), "{}: tensor {} value {} is not finite", source, field, i);
  return v;
}

const json& field(const json& j, const char* key, const std::string& source) {
  auto it = j.find(key);
  BIDORA_CHECK(it != j.end(), "{}: quant_state JSON has no field \"{}\"", source, key);
  return *it;
}

int64_t int_field(const json& j, const char* key, const std::string& source) {
  const json& v = field(j, key, source);
  BIDORA_CHECK(v.is_number_integer(), "{}: quant_state field \"{}\" must be an integer, got {}", source, key,
               v.dump());
  return v.get<int64_t>();
}

std::string string_field(const json& j, const char* key, const std::string& source) {
  const json& v = field(j, key, source);
  BIDORA_CHECK(v.is_string(), "{}: quant_state field \"{}\" must be a string, got {}", source, key, v.dump());
  return v.get<std::string>();
}

}  // namespace

Nf4Matrix nf4_from_bnb(const BnbNf4Tensors& t, const std::string& source) {
  BIDORA_CHECK(t.quant_state.present(), "{}: missing tensor quant_state.bitsandbytes__nf4", source);
  BIDORA_CHECK(t.quant_state.dtype == "U8", "{}: quant_state.bitsandbytes__nf4 has dtype {}, expected U8",
               source, t.quant_state.dtype);
  const std::string text(reinterpret_cast<const char*>(t.quant_state.bytes.data()),
                         t.quant_state.bytes.size());
  json qs = json::parse(text, nullptr, /*allow_exceptions=*/false);
  BIDORA_CHECK(qs.is_object(), "{}: quant_state.bitsandbytes__nf4 is not a JSON object: {}", source,
               text.substr(0, 200));

  const std::string quant_type = string_field(qs, "quant_type", source);
  BIDORA_CHECK(quant_type == "nf4", "{}: quant_type \"{}\" is not supported (only \"nf4\")", source,
               quant_type);
  const std::string dtype = string_field(qs, "dtype", source);
  BIDORA_CHECK(dtype == "bfloat16" || dtype == "float16" || dtype == "float32",
               "{}: quant_state dtype \"{}\", expected bfloat16, float16 or float32", source, dtype);
  const json& shape = field(qs, "shape", source);
  BIDORA_CHECK(shape.is_array() && shape.size() == 2 && shape[0].is_number_integer() &&
                   shape[1].is_number_integer() && shape[0].get<int64_t>() >= 0 &&
                   shape[1].get<int64_t>() >= 0,
               "{}: quant_state shape {} is not [out, in]", source, shape.dump());

  Nf4Parts p;
  p.rows = shape[0].get<int64_t>();
  p.cols = shape[1].get<int64_t>();
  p.blocksize = int_field(qs, "blocksize", source);

  BIDORA_CHECK(t.weight.present(), "{}: missing the packed NF4 weight tensor", source);
  p.packed.assign(t.weight.bytes.begin(), t.weight.bytes.end());  // any quant_storage dtype: same bytes

  const std::vector<float> code = f32_values(t.quant_map, source, "quant_map", 16);
  std::copy(code.begin(), code.end(), p.code.begin());

  p.double_quant = qs.contains("nested_blocksize") || qs.contains("nested_offset");
  if (p.double_quant) {
    p.nested_blocksize = int_field(qs, "nested_blocksize", source);
    const std::string nested_dtype = string_field(qs, "nested_dtype", source);
    BIDORA_CHECK(nested_dtype == "float32", "{}: nested_dtype \"{}\", expected float32", source,
                 nested_dtype);
    const json& off = field(qs, "nested_offset", source);
    BIDORA_CHECK(off.is_number(), "{}: nested_offset must be a number, got {}", source, off.dump());
    p.offset = static_cast<float>(off.get<double>());  // json.dumps of a float32 value: exact
    BIDORA_CHECK(std::isfinite(p.offset), "{}: nested_offset {} is not finite", source, off.dump());
    BIDORA_CHECK(t.absmax.present() && t.absmax.dtype == "U8",
                 "{}: absmax of a double-quantised weight must be U8, got {}", source,
                 t.absmax.present() ? std::string(t.absmax.dtype) : std::string("nothing"));
    p.absmax_q.assign(t.absmax.bytes.begin(), t.absmax.bytes.end());
    p.absmax2 = f32_values(t.nested_absmax, source, "nested_absmax");
    const std::vector<float> code8 = f32_values(t.nested_quant_map, source, "nested_quant_map", 256);
    std::copy(code8.begin(), code8.end(), p.code8.begin());
  } else {
    p.absmax = f32_values(t.absmax, source, "absmax");
  }
  return Nf4Matrix::from_parts(std::move(p), source);
}

}  // namespace bidora::quant
