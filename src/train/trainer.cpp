#include "train/trainer.h"

#include <fmt/format.h>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "adapters/adapter_runtime.h"
#include "adapters/peft_io.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/files.h"
#include "data/batch.h"
#include "data/dataset.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"
#include "train/metrics_plot.h"
#include "train/optim_optimizer.h"
#include "train/train_step.h"

namespace bidora::train {
namespace fs = std::filesystem;

namespace {

AdapterConfig adapter_config_from(const AdapterSection& a) {
  if (a.method == AdapterMethod::BiDoRA)
    fail("adapter.method = bidora is not available yet; use lora or dora");
  AdapterConfig c;
  c.method = a.method == AdapterMethod::DoRA ? LoraVariant::DoRA : LoraVariant::LoRA;
  c.r = a.r;
  c.alpha = a.alpha;
  c.dropout = a.dropout;
  c.use_rslora = a.use_rslora;
  c.init = a.init == LoraInit::Gaussian ? AdapterInit::Gaussian : AdapterInit::KaimingUniform;
  c.targets.clear();
  for (const std::string& t : a.targets) {
    auto k = linear_kind_from_name(t);
    if (!k)
      fail(
          "adapter.targets: '{}' is not a linear layer of this model (q_proj, k_proj, v_proj, o_proj, "
          "gate_proj, up_proj, down_proj)",
          t);
    c.targets.push_back(*k);
  }
  c.validate("adapter");
  return c;
}

TokenBatch to_token_batch(const data::Batch& b) {
  TokenBatch t;
  t.rows = b.rows;
  t.seq_len = b.seq_len;
  t.input_ids = b.input_ids;
  t.position_ids = b.position_ids;
  t.labels = b.labels;
  return t;
}

// Every row of `rows` in batches of batch_size, in order (evaluation needs no shuffling).
std::vector<TokenBatch> batches_in_order(const std::vector<data::TokenizedExample>& examples,
                                         const std::vector<data::Row>& rows, int64_t batch_size,
                                         int32_t pad) {
  std::vector<TokenBatch> out;
  for (int64_t i = 0; i < static_cast<int64_t>(rows.size()); i += batch_size) {
    std::vector<int64_t> idx;
    for (int64_t j = i; j < std::min<int64_t>(i + batch_size, rows.size()); ++j) idx.push_back(j);
    out.push_back(
        to_token_batch(data::collate(examples, rows, idx, {.pad_id = pad, .pad_to_multiple_of = 1})));
  }
  return out;
}

// The files a user needs next to the adapter to run it: the tokenizer of the base model.
void copy_tokenizer_files(const std::string& model_dir, const std::string& out_dir) {
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "generation_config.json", "chat_template.jinja"}) {
    const fs::path src = fs::path(model_dir) / name;
    if (fs::exists(src)) write_file_atomic((fs::path(out_dir) / name).string(), read_file(src.string()));
  }
}

void write_model_card(const std::string& dir, const TrainConfig& cfg, const TrainResult& r,
                      const std::string& shown_dir) {
  std::string card = fmt::format(
      "# {} adapter for {}\n\nTrained with bidora.\n\n"
      "- method: {}, r = {}, alpha = {}, dropout = {}, rsLoRA: {}\n- targets: {}\n"
      "- data: {} ({} optimiser steps)\n- learning rate {} ({} schedule, {} warmup steps), batch {} x {} "
      "accumulation\n"
      "- final training loss {:.4f}{}\n\n"
      "Load it with PEFT: `PeftModel.from_pretrained(base_model, \"{}\")`.\n",
      to_string(cfg.adapter.method), cfg.model.name_or_path, to_string(cfg.adapter.method), cfg.adapter.r,
      cfg.adapter.alpha, cfg.adapter.dropout, cfg.adapter.use_rslora ? "yes" : "no",
      fmt::join(cfg.adapter.targets, ", "), cfg.data.train_file, r.steps, cfg.training.learning_rate,
      to_string(cfg.training.lr_scheduler), cfg.training.warmup_steps, cfg.training.batch_size,
      cfg.training.gradient_accumulation_steps, r.last_loss,
      r.best_val_loss ? fmt::format(", best validation loss {:.4f}", *r.best_val_loss) : "", shown_dir);
  write_file_atomic((fs::path(dir) / "README.md").string(), card);
}

// How the output directory is prepared: a fresh run needs it free of earlier results (or
// --overwrite, which clears them); a resume needs the checkpoint to continue from.
std::string prepare_output(const TrainConfig& cfg) {
  const fs::path out(cfg.output.dir);
  const auto checkpoints = list_checkpoints(out.string());
  if (!cfg.output.resume.empty()) {
    if (cfg.output.resume != "latest") return cfg.output.resume;
    if (checkpoints.empty())
      fail("--resume: {} holds no checkpoint-<step> directory to continue from", out.string());
    return checkpoints.back().second;
  }
  const bool finished = fs::exists(out / "final_model" / "adapter_config.json");
  if (!cfg.output.overwrite) {
    if (finished)
      fail(
          "{}: already holds a finished run (final_model/); pass --overwrite to replace it or choose another "
          "--output",
          out.string());
    if (!checkpoints.empty())
      fail(
          "{}: holds checkpoints of an unfinished run (newest: {}); pass --resume to continue it, "
          "--overwrite to "
          "start again, or choose another --output",
          out.string(), fs::path(checkpoints.back().second).filename().string());
    if (fs::exists(out / "best_model"))
      fail(
          "{}: holds best_model/ of an earlier run; pass --overwrite to replace it or choose another "
          "--output",
          out.string());
  }
  // Starting again: results of an earlier run must not mix with this one's.
  std::error_code ec;
  for (const auto& [step, dir] : checkpoints) fs::remove_all(dir, ec);
  for (const char* stale : {"best_model", "final_model"}) fs::remove_all(out / stale, ec);
  fs::remove(out / "metrics.jsonl", ec);
  return "";
}

nlohmann::ordered_json log_entry_json(const TrainLog& entry) {
  nlohmann::ordered_json j{{"step", entry.step},
                           {"epoch", entry.epoch},
                           {"loss", entry.loss},
                           {"grad_norm", entry.grad_norm},
                           {"learning_rate", entry.lr},
                           {"tokens_per_second", entry.tokens_per_second},
                           {"elapsed_seconds", entry.elapsed_seconds}};
  if (entry.val_loss) {
    j["eval_loss"] = *entry.val_loss;
    j["eval_perplexity"] = std::exp(*entry.val_loss);
  }
  return j;
}

// Hash of the tokenised training examples (ids and loss mask), for the resume fingerprint.
uint64_t data_hash(const std::vector<data::TokenizedExample>& examples) {
  uint64_t h = fnv1a64(nullptr, 0);
  for (const auto& e : examples) {
    const int64_t n = static_cast<int64_t>(e.ids.size());
    h = fnv1a64(&n, sizeof n, h);
    h = fnv1a64(e.ids.data(), e.ids.size() * sizeof(int32_t), h);
    h = fnv1a64(e.trained.data(), e.trained.size(), h);
  }
  return h;
}

}  // namespace

TrainResult run_training(const TrainConfig& cfg, WeightStorage storage,
                         const std::function<void(const TrainLog&)>& on_log) {
  TrainCallbacks callbacks;
  callbacks.on_log = on_log;
  return run_training(cfg, storage, callbacks);
}

TrainResult run_training(const TrainConfig& cfg, WeightStorage storage, const TrainCallbacks& callbacks) {
  validate(cfg);
  if (auto missing = missing_for_training(cfg); !missing.empty())
    fail("cannot train: {} not set", fmt::join(missing, ", "));
  const fs::path out(cfg.output.dir);
  const std::string resume_dir = prepare_output(cfg);
  fs::create_directories(out);
  if (cfg.hardware.threads > 0) set_num_threads(static_cast<int>(cfg.hardware.threads));
  auto event = [&](const std::string& text) {
    if (callbacks.on_event) callbacks.on_event(text);
  };

  // Model and tokenizer.
  auto weights = ModelWeights::load(cfg.model.name_or_path, LoadOptions(storage));
  const Tokenizer tokenizer = Tokenizer::from_dir(weights->dir());
  const data::TextCodec codec = data::codec_for(tokenizer);

  // Data.
  data::DataOptions dopt;
  dopt.train_file = cfg.data.train_file;
  dopt.val_file = cfg.data.val_file;
  dopt.val_ratio = cfg.data.val_file.empty() ? cfg.data.val_split_ratio : 0.0;
  dopt.max_samples = cfg.data.max_samples;
  dopt.seed = static_cast<uint64_t>(cfg.training.seed);
  dopt.max_seq_len = cfg.training.max_seq_len;
  dopt.train_on_prompt = cfg.data.train_on_prompt;
  dopt.bad_lines = cfg.data.skip_bad_lines ? data::BadLinePolicy::Skip : data::BadLinePolicy::Stop;
  const data::TrainingData td = data::load_training_data(codec, dopt);
  if (td.train.empty()) fail("{}: no training examples", cfg.data.train_file);
  const std::vector<data::Row> train_rows =
      data::make_rows(td.train, cfg.data.packing, cfg.training.max_seq_len);
  const std::vector<int64_t> train_lengths = data::row_lengths(train_rows);
  const std::vector<data::Row> val_rows = data::make_rows(td.val, false, cfg.training.max_seq_len);
  // Padding is masked by length, never by id, so any valid id will do when the tokenizer has none.
  const int32_t pad_id = codec.pad_id < 0 ? 0 : codec.pad_id;
  const std::vector<TokenBatch> val_batches =
      batches_in_order(td.val, val_rows, cfg.training.batch_size, pad_id);

  // Step plan: an optimiser step per `accum` batches (a final partial group still steps, as HF).
  const int64_t accum = cfg.training.gradient_accumulation_steps;
  data::BatchPlanOptions plan;
  plan.batch_size = cfg.training.batch_size;
  plan.seed = static_cast<uint64_t>(cfg.training.seed);
  const int64_t batches_per_epoch = static_cast<int64_t>(data::plan_epoch(train_lengths, plan, 0).size());
  const int64_t steps_per_epoch = (batches_per_epoch + accum - 1) / accum;
  const int64_t total_steps =
      cfg.training.max_steps > 0 ? cfg.training.max_steps : steps_per_epoch * cfg.training.epochs;

  // Adapters, optimiser, schedule.
  AdapterSet adapters(adapter_config_from(cfg.adapter), weights->layers(),
                      static_cast<uint64_t>(cfg.training.seed));
  AdapterRuntime runtime(adapters);
  Decoder decoder(*weights);
  decoder.set_adapters(&runtime);
  decoder.set_gradient_checkpointing(cfg.training.gradient_checkpointing);
  AdamWConfig ac;
  ac.beta1 = cfg.training.adam_beta1;
  ac.beta2 = cfg.training.adam_beta2;
  ac.eps = cfg.training.adam_epsilon;
  ac.weight_decay = cfg.training.weight_decay;
  auto optimizer =
      make_optimizer(cfg.training.optimizer == OptimizerKind::AdamW8bit ? "adamw_bnb_8bit" : "adamw_torch",
                     adapter_params(adapters), ac);
  LrSchedule schedule;
  schedule.kind = cfg.training.lr_scheduler == LrScheduler::Linear   ? ScheduleKind::Linear
                  : cfg.training.lr_scheduler == LrScheduler::Cosine ? ScheduleKind::Cosine
                                                                     : ScheduleKind::ConstantWithWarmup;
  schedule.base_lr = cfg.training.learning_rate;
  schedule.warmup_steps = cfg.training.warmup_steps;
  schedule.total_steps = total_steps;

  // Where the run starts: step 0, or everything a checkpoint recorded.
  TrainerState st;
  st.max_steps = total_steps;
  st.seed = static_cast<uint64_t>(cfg.training.seed);
  st.run = run_fingerprint(cfg, storage, data_hash(td.train));
  const std::string metrics_path = (out / "metrics.jsonl").string();
  TrainResult result;
  if (!resume_dir.empty()) {
    st = load_checkpoint(resume_dir, adapters, weights->layers(), *optimizer, schedule, st.run);
    // Entries logged after the checkpoint (before the interruption) are logged again as the
    // steps are replayed.
    std::string lines;
    for (const auto& e : st.log_history) lines += e.dump() + "\n";
    write_file_atomic(metrics_path, lines);
    result.resumed_from_step = st.global_step;
    event(fmt::format("Resumed from {} (step {}/{})", resume_dir, st.global_step, total_steps));
  } else {
    write_file_atomic(metrics_path, "");
  }
  write_file_atomic((out / "config.yaml").string(), to_yaml(cfg));

  auto evaluate = [&]() -> std::optional<double> {
    if (val_batches.empty()) return std::nullopt;
    runtime.set_mode({});  // eval: no dropout
    LossSums total;
    for (const TokenBatch& b : val_batches) {
      const LossSums s = decoder.loss(b);
      total.sum += s.sum;
      total.count += s.count;
    }
    return total.count ? std::optional(total.mean()) : std::nullopt;
  };
  // The loss / learning-rate plot, redrawn from the whole history at every entry (~1 ms).
  const std::string plot_path = (out / "training_plot.svg").string();
  auto write_plot = [&] {
    write_file_atomic(plot_path, training_plot_svg(plot_points_from_json(st.log_history),
                                                   training_plot_title(cfg), {.total_steps = total_steps}));
  };
  write_plot();
  auto log = [&](const TrainLog& entry) {
    const nlohmann::ordered_json j = log_entry_json(entry);
    st.log_history.push_back(j);
    append_file_synced(metrics_path, j.dump() + "\n");
    write_plot();
    if (callbacks.on_log) callbacks.on_log(entry);
  };
  // Failures name the newest complete checkpoint: what is still good to resume from.
  auto newest_checkpoint = [&]() -> std::optional<std::string> {
    const auto kept = list_checkpoints(out.string());
    return kept.empty() ? std::nullopt : std::optional(kept.back().second);
  };
  // A failed save stops the run with what failed and what is still good.
  auto saving = [&](const std::string& what, const std::function<void()>& write) {
    try {
      write();
    } catch (const Error& e) {
      const auto kept = newest_checkpoint();
      fail("saving {} failed: {}\n{}", what, e.what(),
           kept ? fmt::format("the previous checkpoint {} is intact: free space and continue with --resume",
                              *kept)
                : std::string("no earlier checkpoint exists"));
    }
  };
  auto save_checkpoint_now = [&](int64_t step) {
    const std::string dir = (out / checkpoint_dir_name(step)).string();
    saving(fmt::format("the checkpoint of step {}", step),
           [&] { save_checkpoint(dir, adapters, cfg.model.name_or_path, *optimizer, schedule, st); });
    rotate_checkpoints(out.string(), cfg.training.save_total_limit);
    result.last_checkpoint = dir;
    event(fmt::format("Saved {}", dir));
  };

  const auto t0 = std::chrono::steady_clock::now();
  const double elapsed_before = st.elapsed_seconds;
  auto seconds = [&] {
    return elapsed_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const int64_t log_every = std::max<int64_t>(1, cfg.training.logging_steps);
  const int64_t eval_every = cfg.training.eval_steps > 0 ? cfg.training.eval_steps : steps_per_epoch;
  const int64_t save_every = cfg.training.save_steps;

  int64_t step = st.global_step;
  // A stop request ends both loops after its checkpoint; the bookkeeping below is shared.
  for (int64_t epoch = st.epoch_index; step < total_steps && !result.interrupted; ++epoch) {
    const auto epoch_batches = data::plan_epoch(train_lengths, plan, epoch);
    const int64_t n_batches = static_cast<int64_t>(epoch_batches.size());
    for (int64_t g = epoch == st.epoch_index ? st.next_batch : 0;
         g < n_batches && step < total_steps && !result.interrupted; g += accum) {
      std::vector<TokenBatch> micro;
      for (int64_t i = g; i < std::min(n_batches, g + accum); ++i)
        micro.push_back(
            to_token_batch(data::collate(td.train, train_rows, epoch_batches[i], {.pad_id = pad_id})));
      StepOptions so;
      so.step = step;
      so.max_grad_norm = cfg.training.max_grad_norm;
      so.seed = static_cast<uint64_t>(cfg.training.seed);
      StepResult r;
      try {
        r = train_step(decoder, runtime, micro, *optimizer, schedule, so);
      } catch (const Error& e) {
        const auto kept = newest_checkpoint();
        fail("{}\n{}", e.what(),
             kept ? fmt::format("the last good checkpoint is {}", *kept)
                  : std::string("no checkpoint was saved before this step"));
      }
      for (const TokenBatch& b : micro) st.tokens_seen += b.tokens();  // processed, padding included
      st.window_loss += r.loss;
      ++st.window_steps;
      ++step;
      if (step == 1) st.first_loss = r.loss;
      st.global_step = step;
      st.epoch = static_cast<double>(step) / steps_per_epoch;
      st.epoch_index = g + accum < n_batches ? epoch : epoch + 1;
      st.next_batch = g + accum < n_batches ? g + accum : 0;
      st.elapsed_seconds = seconds();

      TrainLog e;
      e.step = step;
      e.total_steps = total_steps;
      e.epoch = st.epoch;
      e.loss = r.loss;
      e.grad_norm = r.grad_norm;
      e.lr = r.lr;
      e.elapsed_seconds = st.elapsed_seconds;
      e.tokens_per_second = st.tokens_seen / std::max(1e-9, e.elapsed_seconds);
      if (callbacks.on_step) callbacks.on_step(e);

      const bool eval_now = step % eval_every == 0 || step == total_steps;
      if (step % log_every == 0 || eval_now) {
        e.loss = st.window_loss / st.window_steps;
        if (eval_now) {
          e.val_loss = evaluate();
          if (e.val_loss && (!st.best_metric || *e.val_loss < *st.best_metric)) {
            st.best_metric = e.val_loss;
            saving(fmt::format("the best model (step {})", step), [&] {
              write_peft_adapter((out / "best_model").string(), adapters, cfg.model.name_or_path);
            });
          }
        }
        result.last_loss = e.loss;
        log(e);
        st.window_loss = 0;
        st.window_steps = 0;
      }
      // A stop at the last step needs no checkpoint: the run is finishing anyway.
      result.interrupted = step < total_steps && callbacks.stop_requested && callbacks.stop_requested->load();
      if ((save_every > 0 && step % save_every == 0) || result.interrupted) save_checkpoint_now(step);
    }
  }
  result.steps = step;
  result.first_loss = st.first_loss;
  result.best_val_loss = st.best_metric;
  result.tokens_per_second = static_cast<double>(st.tokens_seen) / std::max(1e-9, seconds());
  if (result.interrupted) return result;
  const std::string final_dir = (out / "final_model").string();
  saving("the final model", [&] {
    replace_directory(final_dir, [&](const std::string& tmp) {
      write_peft_adapter_files(tmp, adapters, cfg.model.name_or_path);
      copy_tokenizer_files(weights->dir(), tmp);
      write_model_card(tmp, cfg, result, final_dir);
    });
  });
  result.final_adapter_dir = final_dir;
  return result;
}

}  // namespace bidora::train
