// Reading pre-quantised bitsandbytes NF4 weights (formats.md §3.4) written by the reference.
#include <gtest/gtest.h>

#include "core/error.h"
#include "quant/bnb_serialized.h"
#include "quant_ref.h"

namespace bidora::quant {
namespace {

BnbTensorBytes bytes_of(const test::RefFile& f, const std::string& key) {
  if (!f.has(key)) return {};
  const test::RefTensor& t = f.get(key);
  return {t.dtype, t.bytes};
}

BnbNf4Tensors tensors_for(const test::RefFile& f, const std::string& p) {
  BnbNf4Tensors t;
  t.weight = bytes_of(f, p);
  t.absmax = bytes_of(f, p + ".absmax");
  t.quant_map = bytes_of(f, p + ".quant_map");
  t.nested_absmax = bytes_of(f, p + ".nested_absmax");
  t.nested_quant_map = bytes_of(f, p + ".nested_quant_map");
  t.quant_state = bytes_of(f, bnb_nf4_quant_state_key(p));
  return t;
}

void expect_dequantises_to_reference(const std::string& p, bool nested, int64_t rows, int64_t cols) {
  const auto& f = test::quant_ref("bnb_serialized.safetensors");
  const Nf4Matrix m = nf4_from_bnb(tensors_for(f, p), "ref: " + p);
  EXPECT_EQ(m.double_quant(), nested);
  EXPECT_EQ(m.rows(), rows);
  EXPECT_EQ(m.cols(), cols);
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (Kernel k : {Kernel::Scalar, Kernel::Auto}) {
    m.dequantize_rows(0, rows, out.data(), k);
    EXPECT_TRUE(test::bits_equal(out, f.get("expected." + p).f32())) << kernel_name(k);
  }
}

TEST(BnbSerialized, DoubleQuantisedWeight) {
  expect_dequantises_to_reference("model.layers.0.mlp.down_proj.weight", true, 40, 72);
}

TEST(BnbSerialized, PlainWeight) {
  expect_dequantises_to_reference("model.layers.0.self_attn.o_proj.weight", false, 16, 50);
}

TEST(BnbSerialized, QuantiseAgreesWithTheFile) {
  // Our own quantisation of the same weight would produce the same parts (checked through the
  // expected dequantisation, which the reference derived from them).
  const auto& f = test::quant_ref("bnb_serialized.safetensors");
  const std::string p = "model.layers.0.mlp.down_proj.weight";
  const Nf4Matrix m = nf4_from_bnb(tensors_for(f, p), p);
  EXPECT_EQ(m.parts().blocksize, 64);
  EXPECT_EQ(m.parts().nested_blocksize, 256);
  EXPECT_EQ(m.parts().code8, dynamic_map_signed());
  EXPECT_EQ(m.parts().code, kNf4Code);
}

std::string error_of(const BnbNf4Tensors& t) {
  try {
    nf4_from_bnb(t, "model.safetensors: P");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(BnbSerialized, BadInputIsAClearError) {
  const auto& f = test::quant_ref("bnb_serialized.safetensors");
  const std::string p = "model.layers.0.mlp.down_proj.weight";
  const BnbNf4Tensors good = tensors_for(f, p);
  const std::vector<uint8_t> truncated(good.weight.bytes.begin(), good.weight.bytes.end() - 1);
  const std::string json_fp4 =
      R"({"quant_type": "fp4", "blocksize": 64, "dtype": "bfloat16", "shape": [40, 72]})";
  const std::string json_bad = R"({"quant_type": "nf4", "blocksize": 64)";
  const std::string json_shape =
      R"({"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [40]})";
  const std::string json_bs =
      R"({"quant_type": "nf4", "blocksize": 48, "dtype": "bfloat16", "shape": [40, 72],
      "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.1})";
  auto as_bytes = [](const std::string& s) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  };

  struct Bad {
    const char* what;
    BnbNf4Tensors t;
    const char* expect;
  };
  std::vector<Bad> bad;
  {
    BnbNf4Tensors t = good;
    t.quant_state = {};
    bad.push_back({"no quant_state", t, "quant_state"});
  }
  {
    BnbNf4Tensors t = good;
    t.weight.bytes = truncated;
    bad.push_back({"truncated codes", t, "packed NF4 bytes"});
  }
  {
    BnbNf4Tensors t = good;
    t.quant_state.bytes = as_bytes(json_fp4);
    bad.push_back({"fp4", t, "fp4"});
  }
  {
    BnbNf4Tensors t = good;
    t.quant_state.bytes = as_bytes(json_bad);
    bad.push_back({"bad json", t, "not a JSON object"});
  }
  {
    BnbNf4Tensors t = good;
    t.quant_state.bytes = as_bytes(json_shape);
    bad.push_back({"bad shape", t, "shape"});
  }
  {
    BnbNf4Tensors t = good;
    t.quant_state.bytes = as_bytes(json_bs);
    bad.push_back({"bad blocksize", t, "blocksize 48"});
  }
  {
    BnbNf4Tensors t = good;
    t.nested_quant_map.bytes = t.nested_quant_map.bytes.first(1020);
    bad.push_back({"short nested map", t, "nested_quant_map"});
  }
  {
    BnbNf4Tensors t = good;
    t.absmax.dtype = "F32";
    bad.push_back({"absmax dtype", t, "must be U8"});
  }
  {
    BnbNf4Tensors t = good;
    t.nested_absmax = {};
    bad.push_back({"no nested_absmax", t, "nested_absmax"});
  }
  {
    BnbNf4Tensors t = good;
    t.absmax.bytes = t.absmax.bytes.first(t.absmax.bytes.size() - 1);
    bad.push_back({"short absmax", t, "quantised absmax"});
  }
  for (const Bad& b : bad) {
    const std::string e = error_of(b.t);
    EXPECT_NE(e.find(b.expect), std::string::npos) << b.what << ": " << (e.empty() ? "no error" : e);
    EXPECT_NE(e.find("model.safetensors: P"), std::string::npos) << b.what << ": " << e;
  }
}

}  // namespace
}  // namespace bidora::quant
