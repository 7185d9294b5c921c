// Writes small valid safetensors and GGUF files with bidora's own writers, as fuzzing seeds:
//   fuzz_make_seeds <out_dir>   ->  <out_dir>/safetensors/*.safetensors, <out_dir>/gguf/*.gguf
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "io/safetensors.h"

namespace {

std::vector<float> ramp(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(i) * 0.25f - 1.0f;
  return v;
}

std::vector<uint8_t> bytes(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 37 + 1);
  return v;
}

void safetensors_seeds(const std::string& dir) {
  using bidora::DType;
  {
    bidora::SafetensorsWriter w;
    const auto v = ramp(6);
    w.add_f32("model.embed_tokens.weight", {2, 3}, v);
    w.add("model.norm.weight", DType::BF16, {4}, bytes(8));
    w.add("lm_head.weight", DType::F16, {2, 2}, bytes(8));
    w.write(dir + "/mixed.safetensors");
  }
  {
    bidora::SafetensorsWriter w;
    w.add("ids", DType::I64, {3}, bytes(24));
    w.add("mask", DType::BOOL, {5}, bytes(5));
    w.add("u8", DType::U8, {1, 2}, bytes(2));
    w.add("empty", DType::F32, {0, 4}, {});
    w.add("scalar", DType::F64, {}, bytes(8));
    w.set_metadata({{"format", "pt"}, {"note", "seed"}});
    w.write(dir + "/ints.safetensors");
  }
  {
    bidora::SafetensorsWriter w;
    w.set_metadata({});
    w.write(dir + "/empty.safetensors");
  }
}

void gguf_seeds(const std::string& dir) {
  using bidora::GgmlType;
  {
    bidora::GgufWriter w;
    w.set("general.architecture", std::string("llama"));
    w.set("general.type", std::string("adapter"));
    w.set("adapter.lora.alpha", 16.0f);
    w.set("u8", uint8_t{1});
    w.set("i8", int8_t{-1});
    w.set("u16", uint16_t{2});
    w.set("i16", int16_t{-2});
    w.set("u32", uint32_t{3});
    w.set("i32", int32_t{-3});
    w.set("b", true);
    w.set("u64", uint64_t{4});
    w.set("i64", int64_t{-4});
    w.set("f64", 0.5);
    w.set("tokens", std::vector<std::string>{"a", "bc", ""});
    w.set("ids", std::vector<int32_t>{1, 2, 3});
    const auto v = ramp(64);
    w.add_tensor_f32("blk.0.attn_q.weight.lora_a", {2, 32}, v, GgmlType::F32);
    w.add_tensor_f32("blk.0.attn_q.weight.lora_b", {32, 2}, v, GgmlType::F16);
    w.add_tensor_f32("blk.0.attn_k.weight.lora_a", {1, 64}, v, GgmlType::BF16);
    w.add_tensor_f32("blk.0.attn_k.weight.lora_b", {2, 32}, v, GgmlType::Q8_0);
    w.write(dir + "/adapter.gguf");
  }
  {
    bidora::GgufWriter w(64);
    w.set("general.architecture", std::string("qwen2"));
    w.add_tensor("q4", GgmlType::Q4_0, {32}, bytes(18));
    w.add_tensor("i32", GgmlType::I32, {2, 2}, bytes(16));
    w.write(dir + "/aligned64.gguf");
  }
  {
    bidora::GgufWriter w;
    w.write(dir + "/empty.gguf");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <out_dir>\n", argv[0]);
    return 2;
  }
  try {
    const std::string out = argv[1];
    std::filesystem::create_directories(out + "/safetensors");
    std::filesystem::create_directories(out + "/gguf");
    safetensors_seeds(out + "/safetensors");
    gguf_seeds(out + "/gguf");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
