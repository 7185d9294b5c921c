#pragma once
// Reading a pre-quantised bitsandbytes NF4 Linear weight from the tensors transformers saves for
// it (formats.md §3.4), for a Linear4bit whose weight is `P`:
//   P                                     packed codes, (n+1)/2 bytes (uint8 [(n+1)/2, 1], or the
//                                         same bytes viewed as another quant_storage dtype)
//   P.absmax                              U8 [nblocks] with double quantisation, else F32 [nblocks]
//   P.quant_map                           F32 [16], the 4-bit code
//   P.nested_absmax, P.nested_quant_map   F32, F32 [256] (double quantisation only)
//   P.quant_state.bitsandbytes__nf4       U8: json.dumps of quant_type, blocksize, dtype, shape and,
//                                         when nested, nested_blocksize, nested_dtype, nested_offset.
// The code tables stored in the file are used as they are (not regenerated).
// The model loader (which owns the safetensors reader) passes the raw bytes and dtype strings.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "quant/nf4.h"

namespace bidora::quant {

struct BnbTensorBytes {
  std::string_view dtype;  // safetensors dtype string: "U8", "F32", ... ("" when absent)
  std::span<const uint8_t> bytes;
  bool present() const { return !dtype.empty(); }
};

struct BnbNf4Tensors {
  BnbTensorBytes weight;            // P
  BnbTensorBytes absmax;            // P.absmax
  BnbTensorBytes quant_map;         // P.quant_map
  BnbTensorBytes nested_absmax;     // P.nested_absmax (double quantisation only)
  BnbTensorBytes nested_quant_map;  // P.nested_quant_map (double quantisation only)
  BnbTensorBytes quant_state;       // P.quant_state.bitsandbytes__nf4
};

// Checks every field and size; errors name `source` (e.g. "model.safetensors:
// model.layers.0.mlp.down_proj.weight") and what was expected.
Nf4Matrix nf4_from_bnb(const BnbNf4Tensors& t, const std::string& source);

// The key of the quant-state tensor for a weight named P.
inline std::string bnb_nf4_quant_state_key(const std::string& weight_name) {
  return weight_name + ".quant_state.bitsandbytes__nf4";
}

}  // namespace bidora::quant
