#pragma once
// BiDoRA against DoRA with the same budget on a small synthetic task where the held-out split
// matters. Shared by tests/train/test_bidora_synthetic.cpp (a small run with sanity assertions)
// and bench/bench_bidora_synthetic.cpp (the same comparison, larger). Reported as measured:
// nothing here is tuned for either method to win.
//
// Task: a character-level mapping written as prompt/completion JSONL,
//   {"prompt": "map [c,a,t] =", "completion": "d,b,u"}   (target rule: each letter + 1, z -> a)
// (the EOS token ends every completion and is trained too).
// Letters are comma-separated so that every letter is one byte-level token of the tiny Qwen2
// tokenizer (a letter after a space would merge into "Ġa" for some letters and not others).
//   TRAIN: `noise` of the examples (evenly spread) follow a conflicting rule, each letter + 2: the
//          training data is not the distribution we care about.
//   VAL, TEST: the target rule only. Words are distinct across all three splits, so VAL is the
//          only clean sample of the target distribution a method can learn from, and TEST is
//          never seen by any method.
//
// Runs, each with the same budget (optimiser steps, lr, warm-up, r, alpha, all seven projections,
// batch, seed; dropout, weight decay and the cosine schedule at their defaults) on the bundled
// examples/tiny-qwen2 (random weights, bf16 storage):
//   (a) dora          DoRA on TRAIN; VAL for evaluation and best_model (standard HF practice).
//   (b) dora-trainval DoRA on TRAIN + VAL concatenated: the same data BiDoRA sees.
//   (c) bidora        BiDoRA: search on TRAIN (directions) / VAL (magnitudes), lower_steps 1 and
//                     the other training.bidora.* defaults, then retraining on TRAIN + VAL. The
//                     trainer's max_steps sets the length of each phase, so max_steps = steps/2
//                     gives search + retrain = the DoRA step count exactly. Each phase has its
//                     own schedule, as the trainer defines it (the retraining warms up again).
// Measured for each: the mean token loss on TEST's completion tokens (Decoder::loss over the
// collated test examples, prompt tokens masked as in training) with the adapter of final_model,
// and for (a) best_model and (c) search_model too; greedy letter accuracy on TEST (is the
// target rule learned, rather than the mixture of both rules?); the VAL loss of final_model,
// which is held out only for (a) (for (b) and (c) VAL is training data); wall-clock seconds.
// The base model (no adapter) gives the reference TEST and VAL losses.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "adapters/adapter_runtime.h"
#include "adapters/peft_io.h"
#include "config/train_config.h"
#include "core/error.h"
#include "core/files.h"
#include "data/batch.h"
#include "data/codec.h"
#include "data/dataset.h"
#include "model/decoder.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"
#include "train/trainer.h"

namespace bidora::train::synthetic {

struct TaskOptions {
  int64_t train = 240, val = 48, test = 64;  // examples per split
  double noise = 0.4;                        // fraction of TRAIN that follows the conflicting rule
  // Word length. Fixed by default: then every completion letter sits at one fixed offset from
  // the prompt letter it maps, which attention in the random 2-layer model can pick up within a
  // small budget. With 3-5 letters DoRA stayed near the letter marginals (letter accuracy 0.10
  // after 1200 steps, one seed: bench_bidora_synthetic --min-letters 3 --max-letters 5).
  int64_t min_letters = 3, max_letters = 3;
  uint64_t seed = 7;
};

struct Budget {
  int64_t steps = 60;  // optimiser steps of every method (even: BiDoRA splits it in two phases)
  int64_t batch = 8;
  double lr = 1e-2;
  int64_t warmup = 6;
  int64_t r = 8;
  double alpha = 16;
  int64_t eval_steps = 10;  // evaluation on VAL (DoRA runs and BiDoRA's search phase)
  int64_t seed = 42;
  int64_t threads = 0;  // hardware.threads; 0 = every CPU available
};

struct DataFiles {
  std::string train, val, train_val, test;
};

namespace detail {

inline char shift(char c, int by) {
  return static_cast<char>('a' + (c - 'a' + by) % 26);
}

inline std::string join_letters(const std::string& word, int by) {
  std::string out;
  for (size_t i = 0; i < word.size(); ++i) {
    if (i) out += ',';
    out += shift(word[i], by);
  }
  return out;
}

inline std::string record(const std::string& word, int by) {
  return nlohmann::json{{"prompt", "map [" + join_letters(word, 0) + "] ="},
                        {"completion", join_letters(word, by)}}
             .dump() +
         "\n";
}

}  // namespace detail

// Writes train.jsonl, val.jsonl, train_val.jsonl (train then val) and test.jsonl into `dir`.
// Deterministic for a given TaskOptions (mt19937_64 draws reduced by %, not the
// implementation-defined std distributions).
inline DataFiles write_data(const std::string& dir, const TaskOptions& t) {
  if (t.min_letters < 1 || t.max_letters < t.min_letters)
    fail("synthetic task: word length [{}, {}] is empty", t.min_letters, t.max_letters);
  // Words are drawn until unused: refuse requests near the number of distinct words, where
  // that would take long or never end.
  double distinct = 0;
  for (int64_t len = t.min_letters; len <= t.max_letters; ++len) distinct += std::pow(26.0, len);
  const int64_t wanted = t.train + t.val + t.test;
  if (wanted > distinct / 2)
    fail("synthetic task: {} words of {}-{} letters wanted, {:.0f} exist (draw at most half)", wanted,
         t.min_letters, t.max_letters, distinct);
  std::filesystem::create_directories(dir);
  std::mt19937_64 rng(t.seed);
  std::set<std::string> used;
  auto next_word = [&] {
    for (;;) {
      const int64_t span = t.max_letters - t.min_letters + 1;
      const int64_t len = t.min_letters + static_cast<int64_t>(rng() % static_cast<uint64_t>(span));
      std::string w;
      for (int64_t i = 0; i < len; ++i) w += static_cast<char>('a' + rng() % 26);
      if (used.insert(w).second) return w;
    }
  };
  std::string train, val, test;
  for (int64_t i = 0; i < t.train; ++i) {
    // Evenly spread: example i is noisy when floor((i + 1) · noise) steps past floor(i · noise).
    const bool noisy = std::floor((i + 1) * t.noise) > std::floor(i * t.noise);
    train += detail::record(next_word(), noisy ? 2 : 1);
  }
  for (int64_t i = 0; i < t.val; ++i) val += detail::record(next_word(), 1);
  for (int64_t i = 0; i < t.test; ++i) test += detail::record(next_word(), 1);
  DataFiles f{dir + "/train.jsonl", dir + "/val.jsonl", dir + "/train_val.jsonl", dir + "/test.jsonl"};
  write_file_atomic(f.train, train);
  write_file_atomic(f.val, val);
  write_file_atomic(f.train_val, train + val);
  write_file_atomic(f.test, test);
  return f;
}

struct EvalResult {
  double loss = 0;             // mean token loss over the completion tokens (EOS included)
  double letter_accuracy = 0;  // argmax == target over the completion's letter tokens
};

// Scores adapters (or none) on one JSONL file with the model loaded once.
class Evaluator {
 public:
  Evaluator(const std::string& model_dir, WeightStorage storage)
      : weights_(ModelWeights::load(model_dir, LoadOptions(storage))),
        tokenizer_(Tokenizer::from_dir(weights_->dir())),
        codec_(data::codec_for(tokenizer_)) {
    for (char c = 'a'; c <= 'z'; ++c) {
      const auto id = tokenizer_.token_to_id(std::string(1, c));
      if (!id) fail("{}: tokenizer has no single-letter token '{}'", model_dir, c);
      letter_ids_.insert(*id);
    }
  }

  // `adapter_dir` empty: the base model.
  EvalResult evaluate(const std::string& adapter_dir, const std::string& jsonl) {
    // The file as a training file without a split: the examples tokenized and masked exactly
    // as the trainer does for its validation data.
    data::DataOptions o;
    o.train_file = jsonl;
    o.val_ratio = 0;
    const data::TrainingData td = data::load_training_data(codec_, o);
    const std::vector<data::Row> rows = data::make_rows(td.train, false, o.max_seq_len);
    std::optional<AdapterSet> set;
    std::optional<AdapterRuntime> runtime;
    Decoder dec(*weights_);
    if (!adapter_dir.empty()) {
      set.emplace(read_peft_adapter(adapter_dir, weights_->layers()));
      runtime.emplace(*set);
      runtime->set_mode({});  // evaluation: no dropout
      dec.set_adapters(&*runtime);
    }
    const int32_t pad = codec_.pad_id < 0 ? 0 : codec_.pad_id;
    const int64_t vocab = weights_->config().vocab_size;
    LossSums total;
    int64_t letters = 0, correct = 0;
    constexpr int64_t kBatch = 16;
    for (int64_t i = 0; i < static_cast<int64_t>(rows.size()); i += kBatch) {
      std::vector<int64_t> idx;
      for (int64_t j = i; j < std::min<int64_t>(i + kBatch, rows.size()); ++j) idx.push_back(j);
      const data::Batch b = data::collate(td.train, rows, idx, {.pad_id = pad, .pad_to_multiple_of = 1});
      TokenBatch tb;
      tb.rows = b.rows;
      tb.seq_len = b.seq_len;
      tb.input_ids = b.input_ids;
      tb.position_ids = b.position_ids;
      tb.labels = b.labels;
      const LossSums s = dec.loss(tb);
      total.sum += s.sum;
      total.count += s.count;
      const std::vector<float> logits = dec.logits(tb);
      for (int64_t r = 0; r < tb.rows; ++r)
        for (int64_t t = 0; t + 1 < tb.seq_len; ++t) {
          const int32_t target = tb.labels[r * tb.seq_len + t + 1];
          if (!letter_ids_.count(target)) continue;
          const float* row = logits.data() + (r * tb.seq_len + t) * vocab;
          ++letters;
          correct += std::max_element(row, row + vocab) - row == target;
        }
    }
    if (total.count == 0 || letters == 0) fail("{}: no trained completion tokens to score", jsonl);
    return {total.mean(), static_cast<double>(correct) / static_cast<double>(letters)};
  }

 private:
  std::unique_ptr<ModelWeights> weights_;
  Tokenizer tokenizer_;
  data::TextCodec codec_;
  std::set<int32_t> letter_ids_;
};

struct MethodResult {
  std::string name;
  int64_t steps = 0;
  double seconds = 0;         // run_training wall clock (model load, evaluation, saving included)
  double loop_seconds = 0;    // the training loop: optimiser steps plus the evaluations on VAL
  double search_seconds = 0;  // BiDoRA: the loop up to the end of the search phase
  int64_t search_steps = 0;
  EvalResult test_final, val_final;
  std::optional<EvalResult> test_best;    // (a): best_model (lowest VAL loss during training)
  std::optional<EvalResult> test_search;  // (c): search_model
  bool val_held_out = true;               // VAL was not training data of final_model
};

struct Comparison {
  EvalResult base_test, base_val;
  std::vector<MethodResult> runs;  // dora, dora-trainval, bidora
};

inline TrainConfig base_config(const std::string& model_dir, const Budget& b, const std::string& out) {
  TrainConfig cfg;
  cfg.model.name_or_path = model_dir;
  cfg.adapter.method = AdapterMethod::DoRA;
  cfg.adapter.r = b.r;
  cfg.adapter.alpha = b.alpha;
  cfg.adapter.targets = kLinearModules;
  cfg.training.learning_rate = b.lr;
  cfg.training.warmup_steps = b.warmup;
  cfg.training.batch_size = b.batch;
  cfg.training.gradient_accumulation_steps = 1;
  cfg.training.max_steps = b.steps;
  cfg.training.eval_steps = b.eval_steps;
  cfg.training.logging_steps = b.eval_steps;
  cfg.training.save_steps = 0;
  cfg.training.seed = b.seed;
  cfg.hardware.threads = b.threads;
  cfg.output.dir = out;
  cfg.output.overwrite = true;
  return cfg;
}

// Runs (a), (b), (c) and scores them. Output directories go under `work_dir`.
inline Comparison run_comparison(const std::string& model_dir, const std::string& work_dir,
                                 const TaskOptions& task, const Budget& budget,
                                 WeightStorage storage = WeightStorage::BF16) {
  if (budget.steps < 2 || budget.steps % 2)
    fail("synthetic comparison: steps = {} must be even (BiDoRA's two phases share it)", budget.steps);
  const DataFiles files = write_data(work_dir + "/data", task);
  Evaluator eval(model_dir, storage);
  Comparison c;
  c.base_test = eval.evaluate("", files.test);
  c.base_val = eval.evaluate("", files.val);

  auto timed_run = [&](MethodResult& m, const TrainConfig& cfg) {
    int64_t search_end = 0;
    double search_seconds = 0, loop_seconds = 0;
    TrainCallbacks cb;
    cb.on_step = [&](const TrainLog& e) {
      loop_seconds = e.elapsed_seconds;
      if (e.phase == "search") {
        search_end = e.step;
        search_seconds = e.elapsed_seconds;
      }
    };
    const auto t0 = std::chrono::steady_clock::now();
    const TrainResult r = run_training(cfg, storage, cb);
    m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    m.steps = r.steps;
    m.loop_seconds = loop_seconds;
    m.search_steps = search_end;
    m.search_seconds = search_seconds;
    m.test_final = eval.evaluate(r.final_adapter_dir, files.test);
    m.val_final = eval.evaluate(r.final_adapter_dir, files.val);
    return r;
  };

  {
    MethodResult m;
    m.name = "dora";
    TrainConfig cfg = base_config(model_dir, budget, work_dir + "/dora");
    cfg.data.train_file = files.train;
    cfg.data.val_file = files.val;
    timed_run(m, cfg);
    m.test_best = eval.evaluate(cfg.output.dir + "/best_model", files.test);
    c.runs.push_back(m);
  }
  {
    // VAL is evaluated too (the same evaluation cost as the other runs), but it is training
    // data here, so its best_model is not a held-out choice and is not reported.
    MethodResult m;
    m.name = "dora-trainval";
    m.val_held_out = false;
    TrainConfig cfg = base_config(model_dir, budget, work_dir + "/dora-trainval");
    cfg.data.train_file = files.train_val;
    cfg.data.val_file = files.val;
    timed_run(m, cfg);
    c.runs.push_back(m);
  }
  {
    MethodResult m;
    m.name = "bidora";
    m.val_held_out = false;
    TrainConfig cfg = base_config(model_dir, budget, work_dir + "/bidora");
    cfg.adapter.method = AdapterMethod::BiDoRA;
    cfg.data.train_file = files.train;
    cfg.data.val_file = files.val;
    cfg.training.max_steps = budget.steps / 2;  // per phase: search + retrain = budget.steps
    cfg.training.bidora.lower_steps = 1;
    const TrainResult r = timed_run(m, cfg);
    m.test_search = eval.evaluate(r.search_adapter_dir, files.test);
    c.runs.push_back(m);
  }
  return c;
}

// The comparison as a plain-text table, then BiDoRA's time per optimiser step relative to (a)'s.
// s/step is the training loop's time per step (its evaluations on VAL included, as they are
// part of every run; model loading and the final save are not).
inline std::string format_table(const Comparison& c) {
  std::string s =
      fmt::format("{:<15} {:>5} {:>10} {:>8} {:>10} {:>10} {:>10} {:>9} {:>8}\n", "method", "steps",
                  "test_loss", "test_acc", "test_best", "test_srch", "val_loss", "seconds", "s/step");
  s += fmt::format("{:<15} {:>5} {:>10.4f} {:>8.3f} {:>10} {:>10} {:>10.4f} {:>9} {:>8}\n", "base (none)", 0,
                   c.base_test.loss, c.base_test.letter_accuracy, "-", "-", c.base_val.loss, "-", "-");
  auto per_step = [](const MethodResult& m) { return m.loop_seconds / std::max<int64_t>(1, m.steps); };
  const double dora_step = c.runs.empty() ? 0 : per_step(c.runs[0]);
  for (const MethodResult& m : c.runs) {
    auto opt = [](const std::optional<EvalResult>& e) { return e ? fmt::format("{:.4f}", e->loss) : "-"; };
    s +=
        fmt::format("{:<15} {:>5} {:>10.4f} {:>8.3f} {:>10} {:>10} {:>9.4f}{} {:>9.2f} {:>8.4f}\n", m.name,
                    m.steps, m.test_final.loss, m.test_final.letter_accuracy, opt(m.test_best),
                    opt(m.test_search), m.val_final.loss, m.val_held_out ? " " : "*", m.seconds, per_step(m));
  }
  s += "val_loss*: VAL was training data of this final_model (not held out).\n";
  for (const MethodResult& m : c.runs) {
    if (m.search_steps <= 0 || m.search_steps >= m.steps) continue;
    const double search_step = m.search_seconds / m.search_steps;
    const double retrain_step = (m.loop_seconds - m.search_seconds) / (m.steps - m.search_steps);
    s += fmt::format(
        "{} time per optimiser step relative to dora: {:.2f}x overall, {:.2f}x search "
        "(direction + magnitude step), {:.2f}x retrain\n",
        m.name, per_step(m) / dora_step, search_step / dora_step, retrain_step / dora_step);
  }
  return s;
}

}  // namespace bidora::train::synthetic
