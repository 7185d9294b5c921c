#pragma once
// What the trainer writes next to the adapters: the output directory's preparation (refusing to
// mix runs), metrics.jsonl entries, the model card and the tokenizer files.
#include <nlohmann/json.hpp>
#include <string>

#include "config/train_config.h"
#include "train/trainer.h"

namespace bidora::train {

// A fresh run needs the output directory free of earlier results (or --overwrite, which clears
// them); a resume needs the checkpoint to continue from, whose path is returned ("" for a fresh
// run).
std::string prepare_output(const TrainConfig& cfg);

// One metrics.jsonl line (HF Trainer's names where they exist).
nlohmann::ordered_json log_entry_json(const TrainLog& entry);

// The files a user needs next to the adapter to run it: the tokenizer of the base model.
void copy_tokenizer_files(const std::string& model_dir, const std::string& out_dir);

// README.md of a finished adapter: how it was trained and how to load it.
void write_model_card(const std::string& dir, const TrainConfig& cfg, const TrainResult& r,
                      const std::string& shown_dir);

}  // namespace bidora::train
