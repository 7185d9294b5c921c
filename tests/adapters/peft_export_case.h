#pragma once
// Writes one case for tests/reference/check_peft_export.py: the adapter (write_peft_adapter) in
// <reference_dir>/peft_export/<name>/ and, next to it, bidora's logits for the model's reference
// batch with that adapter (bidora_logits.safetensors). Returns those logits. Shared by the
// PeftExport cases of test_adapters (hand-set adapters) and test_train (a BiDoRA-trained one).
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "adapters/adapter_runtime.h"
#include "adapters/peft_io.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "model/reference_cases.h"
#include "test_support.h"

namespace bidora::test {

inline std::vector<float> write_peft_export_case(const std::string& name, const std::string& model,
                                                 const ModelWeights& w, AdapterSet& set) {
  namespace fs = std::filesystem;
  const TokenBatch batch = reference_batch(model);
  Decoder dec(w);
  AdapterRuntime runtime(set);  // default mode: eval, no dropout (what PEFT computes after loading)
  dec.set_adapters(&runtime);
  const std::vector<float> logits = dec.logits(batch);

  const fs::path dir = fs::path(reference_dir()) / "peft_export" / name;
  fs::create_directories(dir.parent_path());
  write_peft_adapter(dir.string(), set, reference_model_dir(model));
  // Written after write_peft_adapter, which replaces the whole directory, so that a failing
  // case still leaves files to run the Python check on.
  SafetensorsWriter st;
  auto i32_bytes = [](const std::vector<int32_t>& v) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(int32_t));
  };
  st.add("input_ids", DType::I32, {batch.rows, batch.seq_len}, i32_bytes(batch.input_ids));
  st.add("position_ids", DType::I32, {batch.rows, batch.seq_len}, i32_bytes(batch.position_ids));
  st.add_f32("logits", {batch.rows, batch.seq_len, w.config().vocab_size}, logits);
  st.set_metadata(
      {{"format", "pt"}, {"model", model}, {"storage", storage_name(w.options().linear_storage)}});
  st.write((dir / "bidora_logits.safetensors").string());
  return logits;
}

}  // namespace bidora::test
