#pragma once
// checkpoint-<step>/ directories, laid out like HF Trainer's with the adapter in PEFT format:
//   adapter_config.json, adapter_model.safetensors  the adapter at this step (usable as it is)
//   optimizer.safetensors  optimiser moments and step count + scheduler settings (optim_state.h)
//   trainer_state.json     step, epoch, data position, RNG, log history, best metric, and the
//                          fingerprint of everything that decides the run's trajectory
// A checkpoint is built in a temporary directory and renamed into place (replace_directory), so
// a crash or a full disk while saving never leaves a half-written checkpoint, and the previous
// ones stay valid.
//
// Resuming is exact because nothing random is stateful: the data order of an epoch is a
// function of (seed, epoch) and every dropout mask of (seed, step, micro-batch, row), so the
// seed and the data position restore every random choice an uninterrupted run would make.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "adapters/adapter_set.h"
#include "config/train_config.h"
#include "model/frozen_matrix.h"
#include "train/lr_schedule.h"
#include "train/optim_optimizer.h"

namespace bidora::train {

struct TrainerState {
  int64_t global_step = 0;  // optimiser steps taken
  int64_t max_steps = 0;
  double epoch = 0;  // global_step / steps per epoch, as HF logs it
  // Data position: the next optimiser step starts with batch `next_batch` of epoch
  // `epoch_index` (batches in data::plan_epoch order).
  int64_t epoch_index = 0, next_batch = 0;
  uint64_t seed = 0;
  int64_t tokens_seen = 0;  // processed tokens, padding included (for tokens/s)
  double elapsed_seconds = 0;
  // Steps since the last log entry, so the next entry averages the same window as without the
  // interruption.
  double window_loss = 0;
  int64_t window_steps = 0;
  // BiDoRA: the figures of the newest magnitude step since the last log entry (null if none).
  nlohmann::ordered_json window_upper;
  double first_loss = 0;
  std::optional<double> best_metric;  // lowest evaluation loss so far
  // BiDoRA only: the phase of the next step ("search" or "retrain"; empty for LoRA / DoRA) and
  // the position in the validation stream the magnitude steps draw from.
  std::string phase;
  int64_t val_epoch_index = 0, val_next_batch = 0;
  std::vector<nlohmann::ordered_json> log_history;  // the metrics.jsonl entries up to global_step
  // What decides the trajectory: configuration values, the resolved weight storage and a hash of
  // the tokenised training data (run_fingerprint). A resume with any of them changed is refused.
  nlohmann::ordered_json run;
};

// The fingerprint stored in TrainerState::run. Fields that do not change the trained values
// (output, hardware, logging/eval/save intervals, file paths — the data is hashed instead) are
// left out, so a run can be resumed with another output path, thread count or log interval.
nlohmann::ordered_json run_fingerprint(const TrainConfig& cfg, WeightStorage storage, uint64_t data_hash);

// 64-bit FNV-1a, to fingerprint the tokenised data.
uint64_t fnv1a64(const void* data, size_t bytes, uint64_t h = 0xcbf29ce484222325ULL);

std::string checkpoint_dir_name(int64_t step);  // "checkpoint-20"

// An optimiser saved in a checkpoint: "optimizer.safetensors" for the (lower-level) adapter
// optimiser, "upper_optimizer.safetensors" for BiDoRA's magnitude optimiser.
struct OptimizerSlot {
  std::string file;
  Optimizer* optimizer = nullptr;
  const LrSchedule* schedule = nullptr;
  int64_t expected_step = 0;  // loading: the step count the trainer state implies
};

// Writes `dir` atomically. Throws Error naming the file and the OS reason when a write fails;
// an existing checkpoint at `dir` and every other one are untouched then.
void save_checkpoint(const std::string& dir, const AdapterSet& adapters, const std::string& base_model,
                     std::span<const OptimizerSlot> optimizers, const TrainerState& state);

// Reads the trainer state of `dir`, checking that the checkpoint is complete and that its
// fingerprint equals `run` (naming every field that differs); Error naming the file otherwise.
TrainerState load_trainer_state(const std::string& dir, const nlohmann::ordered_json& run);

// Restores adapter values and optimiser states in place. Checks that adapter and optimisers
// match this run and that each optimiser's step count is its expected_step; Error naming the
// file otherwise.
void load_checkpoint_values(const std::string& dir, AdapterSet& adapters,
                            const std::vector<LayerWeights>& layers,
                            std::span<const OptimizerSlot> optimizers);

// The complete checkpoint-<step> directories of `out_dir` (those with a trainer_state.json), by
// ascending step. Temporary directories of interrupted saves are ignored.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& out_dir);

// Cleans up after saves that a process which no longer runs left unfinished in `out_dir` (a
// kill -9 or a power cut mid-save): deletes the temporary and set-aside directories and files
// ("checkpoint-8.tmp.<pid>", "final_model.old.<pid>", "metrics.jsonl.tmp.<pid>", ...), first
// putting a directory back in place if the process died between replace_directory's renames.
// Returns the paths deleted.
std::vector<std::string> remove_interrupted_saves(const std::string& out_dir);

// Deletes the oldest checkpoints so that at most `keep` remain; keep <= 0 keeps all.
void rotate_checkpoints(const std::string& out_dir, int64_t keep);

}  // namespace bidora::train
