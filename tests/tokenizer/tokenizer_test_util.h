#pragma once
// Helpers for the tokenizer tests: the real fixtures (fetched by scripts/fetch-fixtures.sh) and
// small synthetic tokenizer.json files written to a temp dir.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/files.h"
#include "test_support.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"

namespace bidora::test {

// Directory of a real tokenizer fixture; the test FAILS (not skips) when it is missing.
inline std::string npm_fixture(const std::string& name) {
  const std::string dir = fixture_dir() + "/npm/" + name;
  if (!std::filesystem::exists(dir + "/tokenizer.json"))
    ADD_FAILURE() << "missing tokenizer fixture " << dir << "/tokenizer.json: run scripts/fetch-fixtures.sh";
  return dir;
}

// A minimal tokenizer.json: BPE over `vocab` with `merges`; other sections from `extra`.
inline nlohmann::json bpe_json(const nlohmann::json& vocab, const nlohmann::json& merges,
                               const nlohmann::json& extra = nlohmann::json::object()) {
  nlohmann::json j = {{"version", "1.0"},
                      {"truncation", nullptr},
                      {"padding", nullptr},
                      {"added_tokens", nlohmann::json::array()},
                      {"normalizer", nullptr},
                      {"pre_tokenizer", nullptr},
                      {"post_processor", nullptr},
                      {"decoder", nullptr},
                      {"model",
                       {{"type", "BPE"},
                        {"dropout", nullptr},
                        {"unk_token", nullptr},
                        {"continuing_subword_prefix", nullptr},
                        {"end_of_word_suffix", nullptr},
                        {"fuse_unk", false},
                        {"byte_fallback", false},
                        {"vocab", vocab},
                        {"merges", merges}}}};
  for (auto it = extra.begin(); it != extra.end(); ++it) {
    if (it.key() == "model") {
      for (auto m = it->begin(); m != it->end(); ++m) j["model"][m.key()] = m.value();
    } else {
      j[it.key()] = it.value();
    }
  }
  return j;
}

// Plain write (write_file_atomic fsyncs, far too slow for fuzz loops).
inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// Writes tokenizer.json (and tokenizer_config.json unless null) to a fresh dir; returns the dir.
inline std::string write_tokenizer_dir(const nlohmann::json& tokenizer_json,
                                       const nlohmann::json& tokenizer_config = nullptr) {
  const std::string dir = make_temp_dir("tok");
  write_text(dir + "/tokenizer.json", tokenizer_json.dump());
  if (!tokenizer_config.is_null()) write_text(dir + "/tokenizer_config.json", tokenizer_config.dump());
  return dir;
}

// In memory (no disk): the synthetic tests build hundreds of tokenizers.
inline Tokenizer make_tokenizer(const nlohmann::json& tokenizer_json,
                                const nlohmann::json& tokenizer_config = nullptr) {
  return Tokenizer::from_json(tokenizer_json.dump(),
                              tokenizer_config.is_null() ? "" : tokenizer_config.dump());
}

// The GPT-2 byte-level form of a string: every byte as its table char (ASCII printable stays).
inline std::string byte_level(const std::string& s) {
  std::string out;
  tok::append_byte_level(out, s);
  return out;
}

}  // namespace bidora::test
