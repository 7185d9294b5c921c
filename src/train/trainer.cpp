#include "train/trainer.h"

#include <fmt/format.h>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "adapters/adapter_loading.h"
#include "adapters/adapter_runtime.h"
#include "adapters/direction_regulariser.h"
#include "adapters/peft_io.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/fault_injection.h"
#include "core/files.h"
#include "data/batch.h"
#include "data/dataset.h"
#include "tokenizer/tokenizer.h"
#include "train/bilevel.h"
#include "train/checkpoint.h"
#include "train/evaluate.h"
#include "train/init_adapter.h"
#include "train/metrics_plot.h"
#include "train/optim_optimizer.h"
#include "train/train_step.h"
#include "train/trainer_output.h"

namespace bidora::train {
namespace fs = std::filesystem;

namespace {

// BiDoRA trains DoRA adapters (a different optimisation, the same parameterisation), so its
// result is a standard PEFT DoRA adapter.
AdapterConfig adapter_config_from(const AdapterSection& a) {
  AdapterConfig c;
  c.method = a.method == AdapterMethod::LoRA ? LoraVariant::LoRA : LoraVariant::DoRA;
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

// Hash of tokenised examples (ids and loss mask), for the resume fingerprint.
uint64_t data_hash(const std::vector<data::TokenizedExample>& examples, uint64_t h = fnv1a64(nullptr, 0)) {
  for (const auto& e : examples) {
    const int64_t n = static_cast<int64_t>(e.ids.size());
    h = fnv1a64(&n, sizeof n, h);
    h = fnv1a64(e.ids.data(), e.ids.size() * sizeof(int32_t), h);
    h = fnv1a64(e.trained.data(), e.trained.size(), h);
  }
  return h;
}

// The newest magnitude step of a log window, kept in the trainer state (so a resumed run logs
// what the uninterrupted one would).
nlohmann::ordered_json upper_to_json(const TrainLog::Upper& u) {
  return {{"val_loss", u.val_loss},
          {"hypergrad_norm", u.hypergrad_norm},
          {"direct_norm", u.direct_norm},
          {"implicit_norm", u.implicit_norm},
          {"eps", u.eps},
          {"lr", u.lr}};
}

std::optional<TrainLog::Upper> upper_from_json(const nlohmann::ordered_json& j) {
  if (!j.is_object()) return std::nullopt;
  return TrainLog::Upper{j.value("val_loss", 0.0),    j.value("hypergrad_norm", 0.0),
                         j.value("direct_norm", 0.0), j.value("implicit_norm", 0.0),
                         j.value("eps", 0.0),         j.value("lr", 0.0)};
}

// The data and step range of one phase of a run. LoRA / DoRA have one phase; BiDoRA has the
// search phase (directions on the training split, magnitudes on the validation split) and the
// retraining phase (directions on training + validation data, magnitudes frozen).
struct Phase {
  std::string name;  // "" (LoRA / DoRA), "search" or "retrain"
  const std::vector<data::TokenizedExample>* examples = nullptr;
  std::vector<data::Row> rows;
  std::vector<int64_t> lengths;
  int64_t steps_per_epoch = 0;
  int64_t first_step = 0, steps = 0;  // global steps [first_step, first_step + steps)
  uint64_t dropout_seed = 0;
  bool evaluate = true;  // the validation data is held out in this phase
  int64_t end() const { return first_step + steps; }
};

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
  // The adapter settings must already be the init adapter's (the CLI takes them from it): fail
  // before loading anything.
  resolve_init_adapter(cfg, nullptr);
  const fs::path out(cfg.output.dir);
  // A process killed mid-save leaves temporary directories (never taken for checkpoints): clean
  // them up, restoring a directory caught between two renames, before choosing where to resume.
  const std::vector<std::string> debris = remove_interrupted_saves(out.string());
  const std::string resume_dir = prepare_output(cfg);
  fs::create_directories(out);
  if (cfg.hardware.threads > 0) set_num_threads(static_cast<int>(cfg.hardware.threads));
  auto event = [&](const std::string& text) {
    if (callbacks.on_event) callbacks.on_event(text);
  };
  for (const std::string& path : debris) event(fmt::format("Removed {} (left by an interrupted save)", path));
  const bool bilevel = cfg.adapter.method == AdapterMethod::BiDoRA;
  const BiDoRASection& bcfg = cfg.training.bidora;
  const uint64_t seed = static_cast<uint64_t>(cfg.training.seed);

  // Model and tokenizer.
  auto weights = ModelWeights::load(cfg.model.name_or_path, LoadOptions(storage));
  const Tokenizer tokenizer = Tokenizer::from_dir(weights->dir());
  const data::TextCodec codec = data::codec_for(tokenizer);

  // Data.
  const data::TrainingData td = data::load_training_data(codec, data_options(cfg));
  if (td.train.empty()) fail("{}: no training examples", cfg.data.train_file);
  const std::vector<data::Row> val_rows = data::make_rows(td.val, false, cfg.training.max_seq_len);
  if (bilevel && val_rows.empty())
    fail(
        "adapter.method = bidora trains the magnitudes on validation data, but {} left no validation example "
        "(set data.val_file, or a larger data.val_split_ratio)",
        cfg.data.val_file.empty() ? cfg.data.train_file : cfg.data.val_file);
  // Padding is masked by length, never by id, so any valid id will do when the tokenizer has none.
  const int32_t pad_id = codec.pad_id < 0 ? 0 : codec.pad_id;
  const std::vector<TokenBatch> val_batches =
      evaluation_batches(td.val, val_rows, cfg.training.batch_size, pad_id);

  // Phases: an optimiser step per `accum` batches (a final partial group still steps, as HF).
  // max_steps caps each phase.
  const int64_t accum = cfg.training.gradient_accumulation_steps;
  data::BatchPlanOptions plan;
  plan.batch_size = cfg.training.batch_size;
  plan.seed = seed;
  auto make_phase = [&](std::string name, const std::vector<data::TokenizedExample>& examples, int64_t epochs,
                        int64_t first_step) {
    Phase ph;
    ph.name = std::move(name);
    ph.examples = &examples;
    ph.rows = data::make_rows(examples, cfg.data.packing, cfg.training.max_seq_len);
    ph.lengths = data::row_lengths(ph.rows);
    const int64_t batches = static_cast<int64_t>(data::plan_epoch(ph.lengths, plan, 0).size());
    ph.steps_per_epoch = (batches + accum - 1) / accum;
    ph.first_step = first_step;
    ph.steps = cfg.training.max_steps > 0 ? cfg.training.max_steps : ph.steps_per_epoch * epochs;
    ph.dropout_seed = seed;
    return ph;
  };
  std::vector<Phase> phases;
  phases.push_back(make_phase(bilevel ? "search" : "", td.train, cfg.training.epochs, 0));
  std::vector<data::TokenizedExample> combined;  // BiDoRA's retraining data: train + validation
  if (bilevel && bcfg.retrain_epochs > 0) {
    combined = td.train;
    combined.insert(combined.end(), td.val.begin(), td.val.end());
    phases.push_back(make_phase("retrain", combined, bcfg.retrain_epochs, phases[0].end()));
    phases[1].evaluate = false;
    // Other dropout masks than the search phase's steps of the same number.
    phases[1].dropout_seed = seed ^ 0x7265747261696eULL;
  }
  const int64_t search_steps = phases[0].steps;
  const int64_t total_steps = phases.back().end();
  const int64_t lower_k = bcfg.lower_steps;
  if (bilevel && search_steps < lower_k)
    fail(
        "training.bidora.lower_steps = {} but the search phase has only {} step(s): no magnitude step would "
        "run (lower lower_steps or train longer)",
        lower_k, search_steps);

  // Adapters, optimisers, schedules. BiDoRA: the directions' optimiser (search), the magnitudes'
  // (search, `upper`), and a fresh one for the directions when they are retrained.
  const AdapterConfig adapter_cfg = adapter_config_from(cfg.adapter);
  AdapterSet adapters(adapter_cfg, weights->layers(), seed);
  // Continuing a trained adapter: its values replace the fresh initialisation (a resume below
  // then replaces them with the checkpoint's). Kept for BiDoRA's retrain_from_init.
  LoadedAdapter start;
  if (!cfg.adapter.init_from.empty()) {
    start = load_adapter_for_model(cfg.adapter.init_from, *weights, cfg.model.name_or_path,
                                   cfg.adapter.allow_base_mismatch);
    adapters.assign_values(*start.set, cfg.adapter.init_from);
  }
  AdapterRuntime runtime(adapters);
  Decoder decoder(*weights);
  decoder.set_adapters(&runtime);
  decoder.set_gradient_checkpointing(cfg.training.gradient_checkpointing);
  const bool bf16_compute = cfg.model.compute_dtype == ComputeDtype::BF16;
  decoder.set_bf16_compute(bf16_compute);
  runtime.set_bf16_compute(bf16_compute);
  AdamWConfig ac;
  ac.beta1 = cfg.training.adam_beta1;
  ac.beta2 = cfg.training.adam_beta2;
  ac.eps = cfg.training.adam_epsilon;
  ac.weight_decay = cfg.training.weight_decay;
  const char* optim_kind =
      cfg.training.optimizer == OptimizerKind::AdamW8bit ? "adamw_bnb_8bit" : "adamw_torch";
  auto schedule_for = [&](double base_lr, int64_t warmup, int64_t total) {
    LrSchedule s;
    s.kind = cfg.training.lr_scheduler == LrScheduler::Linear   ? ScheduleKind::Linear
             : cfg.training.lr_scheduler == LrScheduler::Cosine ? ScheduleKind::Cosine
                                                                : ScheduleKind::ConstantWithWarmup;
    s.base_lr = base_lr;
    s.warmup_steps = warmup;
    s.total_steps = total;
    return s;
  };
  auto optimizer =
      make_optimizer(optim_kind, bilevel ? direction_params(adapters) : adapter_params(adapters), ac);
  const LrSchedule schedule =
      schedule_for(cfg.training.learning_rate, cfg.training.warmup_steps, search_steps);
  std::unique_ptr<Optimizer> upper, retrain_opt;
  LrSchedule upper_schedule, retrain_schedule;
  if (bilevel) {
    upper = make_optimizer(optim_kind, magnitude_params(adapters), ac);
    upper_schedule = schedule_for(cfg.training.learning_rate * bcfg.upper_lr_mult,
                                  cfg.training.warmup_steps / lower_k, search_steps / lower_k);
    if (phases.size() > 1) {
      // Retraining warms up again, over at most a tenth of its steps (as the official code).
      retrain_schedule =
          schedule_for(cfg.training.learning_rate, std::min(cfg.training.warmup_steps, phases[1].steps / 10),
                       phases[1].steps);
    }
  }
  // Made when retraining starts (or resumes); the search phase's optimisers are freed then.
  auto retrain_optimizer = [&]() -> Optimizer& {
    if (!retrain_opt) {
      optimizer.reset();
      upper.reset();
      retrain_opt = make_optimizer(optim_kind, direction_params(adapters), ac);
    }
    return *retrain_opt;
  };
  // The optimisers a checkpoint holds: those of the phase its last step belonged to.
  auto optimizer_slots = [&](const TrainerState& s) {
    std::vector<OptimizerSlot> slots;
    if (s.phase == "retrain") {
      slots.push_back(
          {"optimizer.safetensors", &retrain_optimizer(), &retrain_schedule, s.global_step - search_steps});
    } else {
      slots.push_back({"optimizer.safetensors", optimizer.get(), &schedule, s.global_step});
      if (bilevel)
        slots.push_back(
            {"upper_optimizer.safetensors", upper.get(), &upper_schedule, s.global_step / lower_k});
    }
    return slots;
  };

  // Where the run starts: step 0, or everything a checkpoint recorded.
  TrainerState st;
  st.max_steps = total_steps;
  st.seed = seed;
  st.phase = bilevel ? "search" : "";
  st.run = run_fingerprint(cfg, storage, data_hash(td.val, data_hash(td.train)));
  const std::string metrics_path = (out / "metrics.jsonl").string();
  TrainResult result;
  if (!resume_dir.empty()) {
    st = load_trainer_state(resume_dir, st.run);
    const bool phase_ok =
        bilevel ? (st.phase == "search" && st.global_step <= search_steps) ||
                      (st.phase == "retrain" && phases.size() > 1 && st.global_step >= search_steps)
                : st.phase.empty();
    if (!phase_ok)
      fail("{}: phase '{}' at step {} does not fit this run ({} search steps)", resume_dir, st.phase,
           st.global_step, search_steps);
    load_checkpoint_values(resume_dir, adapters, weights->layers(), optimizer_slots(st));
    // Entries logged after the checkpoint (before the interruption) are logged again as the
    // steps are replayed.
    std::string lines;
    for (const auto& e : st.log_history) lines += e.dump() + "\n";
    write_file_atomic(metrics_path, lines);
    result.resumed_from_step = st.global_step;
    // Resumed at the last step, nothing more is logged: the model card's final loss is the last entry's.
    if (!st.log_history.empty()) result.last_loss = st.log_history.back().value("loss", 0.0);
    event(fmt::format("Resumed from {} (step {}/{})", resume_dir, st.global_step, total_steps));
  } else {
    write_file_atomic(metrics_path, "");
    if (start.set)
      event(fmt::format("Starting from the adapter {} (r {}, {}; the optimiser starts fresh)",
                        cfg.adapter.init_from, adapter_cfg.r, method_name(adapter_cfg.method)));
  }
  write_file_atomic((out / "config.yaml").string(), to_yaml(cfg));

  auto evaluate = [&]() -> std::optional<double> {
    if (val_batches.empty()) return std::nullopt;
    runtime.set_mode({});  // eval: no dropout
    const LossSums total = evaluation_loss(decoder, val_batches);
    return total.count ? std::optional(total.mean()) : std::nullopt;
  };
  // The loss / learning-rate plot, redrawn from the whole history at every entry (~1 ms).
  const std::string plot_path = (out / "training_plot.svg").string();
  auto write_plot = [&] {
    write_file_atomic(plot_path, training_plot_svg(plot_points_from_json(st.log_history),
                                                   training_plot_title(cfg), {.total_steps = total_steps}));
  };
  write_plot();
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
  auto log = [&](const TrainLog& entry) {
    const nlohmann::ordered_json j = log_entry_json(entry);
    st.log_history.push_back(j);
    // A full disk may show first here: every log entry appends to the log and rewrites the plot.
    saving(fmt::format("the log of step {}", entry.step), [&] {
      append_file_synced(metrics_path, j.dump() + "\n");
      write_plot();
    });
    if (callbacks.on_log) callbacks.on_log(entry);
  };
  auto save_checkpoint_now = [&](int64_t step) {
    const std::string dir = (out / checkpoint_dir_name(step)).string();
    saving(fmt::format("the checkpoint of step {}", step),
           [&] { save_checkpoint(dir, adapters, cfg.model.name_or_path, optimizer_slots(st), st); });
    rotate_checkpoints(out.string(), cfg.training.save_total_limit);
    result.last_checkpoint = dir;
    event(fmt::format("Saved {}", dir));
  };

  // BiDoRA's validation stream for the magnitude steps: `accum` batches per step, in a seeded
  // order per pass over the validation data (the position is part of the trainer state).
  data::BatchPlanOptions val_plan = plan;
  val_plan.seed = seed ^ 0x76616c6964ULL;
  const std::vector<int64_t> val_lengths = data::row_lengths(val_rows);
  std::vector<std::vector<int64_t>> val_epoch_batches;
  int64_t val_epoch_planned = -1;
  auto next_val_micro_batches = [&] {
    std::vector<TokenBatch> micro;
    for (int64_t i = 0; i < accum; ++i) {
      if (val_epoch_planned != st.val_epoch_index) {
        val_epoch_batches = data::plan_epoch(val_lengths, val_plan, st.val_epoch_index);
        val_epoch_planned = st.val_epoch_index;
      }
      micro.push_back(to_token_batch(
          data::collate(td.val, val_rows, val_epoch_batches[st.val_next_batch], {.pad_id = pad_id})));
      if (++st.val_next_batch == static_cast<int64_t>(val_epoch_batches.size())) {
        st.val_next_batch = 0;
        ++st.val_epoch_index;
      }
    }
    return micro;
  };
  // The regulariser on the directions (BiDoRA, both phases).
  std::function<double()> regulariser;
  RegulariserScratch reg_scratch;
  if (bilevel && bcfg.orth_reg > 0)
    regulariser = [&] {
      return direction_regulariser(adapters, weights->layers(), bcfg.orth_reg, true, reg_scratch);
    };

  // BiDoRA's switch to retraining: keep the searched adapter, freeze the learned magnitudes and
  // continue the directions with a fresh optimiser, or (retrain_from_init) restart them from
  // their initial values as the official code does.
  const std::string search_dir = (out / "search_model").string();
  auto save_search_model = [&] {
    saving("the search-phase adapter",
           [&] { write_peft_adapter(search_dir, adapters, cfg.model.name_or_path); });
    result.search_adapter_dir = search_dir;
  };
  auto start_retraining = [&](const Phase& ph) {
    save_search_model();
    if (bcfg.retrain_from_init) {
      // The run's initial values: the adapter it continued, or the seeded initialisation.
      std::optional<AdapterSet> fresh;
      if (!start.set) fresh.emplace(adapter_cfg, weights->layers(), seed);
      const AdapterSet& initial = start.set ? *start.set : *fresh;
      for (LoraLayer* l : adapters.all()) {
        const LoraLayer* i = initial.find(l->layer(), l->kind());
        std::copy(i->A.begin(), i->A.end(), l->A.begin());
        std::copy(i->B.begin(), i->B.end(), l->B.begin());
      }
    }
    st.phase = "retrain";
    st.epoch_index = 0;
    st.next_batch = 0;
    event(fmt::format(
        "Search phase done ({}); retraining the directions{} on train + validation for {} steps with the "
        "magnitudes frozen",
        search_dir, bcfg.retrain_from_init ? " from their initial values" : "", ph.steps));
  };

  const auto t0 = std::chrono::steady_clock::now();
  const double elapsed_before = st.elapsed_seconds;
  auto seconds = [&] {
    return elapsed_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const int64_t log_every = std::max<int64_t>(1, cfg.training.logging_steps);
  const int64_t save_every = cfg.training.save_steps;

  int64_t step = st.global_step;
  for (const Phase& ph : phases) {
    if (step >= ph.end() || result.interrupted) continue;
    if (ph.name == "retrain" && st.phase != "retrain") start_retraining(ph);
    const bool retraining = ph.name == "retrain";
    Optimizer& opt = retraining ? retrain_optimizer() : *optimizer;
    const LrSchedule& sched = retraining ? retrain_schedule : schedule;
    const int64_t eval_every = cfg.training.eval_steps > 0 ? cfg.training.eval_steps : ph.steps_per_epoch;
    // A stop request ends both loops after its checkpoint; the bookkeeping below is shared.
    for (int64_t epoch = st.epoch_index; step < ph.end() && !result.interrupted; ++epoch) {
      const auto epoch_batches = data::plan_epoch(ph.lengths, plan, epoch);
      const int64_t n_batches = static_cast<int64_t>(epoch_batches.size());
      for (int64_t g = epoch == st.epoch_index ? st.next_batch : 0;
           g < n_batches && step < ph.end() && !result.interrupted; g += accum) {
        std::vector<TokenBatch> micro;
        for (int64_t i = g; i < std::min(n_batches, g + accum); ++i)
          micro.push_back(
              to_token_batch(data::collate(*ph.examples, ph.rows, epoch_batches[i], {.pad_id = pad_id})));
        const int64_t local = step - ph.first_step;  // the schedule's position in this phase
        StepOptions so;
        so.step = local;
        so.max_grad_norm = cfg.training.max_grad_norm;
        so.seed = ph.dropout_seed;
        if (bilevel) {
          so.wants = {.directions = true, .magnitude = false};  // m is the upper level's, or frozen
          so.regulariser = regulariser;
        }
        StepResult r;
        std::optional<TrainLog::Upper> upper_now;
        try {
          r = train_step(decoder, runtime, micro, opt, sched, so);
          if (bilevel && !retraining && (local + 1) % lower_k == 0) {
            const std::vector<TokenBatch> val_micro = next_val_micro_batches();
            HypergradientOptions ho;
            ho.fd_alpha = bcfg.fd_alpha;
            ho.seed = so.seed;
            ho.train_step = local;
            const int64_t u = (local + 1) / lower_k - 1;
            const UpperStepResult ur = upper_step(decoder, runtime, micro, val_micro, *upper,
                                                  upper_schedule.lr(u), cfg.training.max_grad_norm, ho);
            upper_now = TrainLog::Upper{ur.hyper.val_loss,      ur.grad_norm, ur.hyper.direct_norm,
                                        ur.hyper.implicit_norm, ur.hyper.eps, ur.lr};
            st.window_upper = upper_to_json(*upper_now);
          }
        } catch (const Error& e) {
          const auto kept = newest_checkpoint();
          // train_step counts the steps of its phase; BiDoRA's retraining starts after the search.
          fail("{}{}\n{}",
               ph.first_step > 0 ? fmt::format("{} phase, global step {}: ", ph.name, step + 1) : "",
               e.what(),
               kept ? fmt::format("the last good checkpoint is {}", *kept)
                    : std::string("no checkpoint was saved before this step"));
        }
        for (const TokenBatch& b : micro) st.tokens_seen += b.tokens();  // processed, padding included
        st.window_loss += r.loss;
        ++st.window_steps;
        ++step;
        if (step == 1) st.first_loss = r.loss;
        const int64_t done = step - ph.first_step;
        st.global_step = step;
        st.epoch = static_cast<double>(done) / ph.steps_per_epoch;
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
        e.phase = ph.name;
        e.regulariser = r.regulariser;
        e.upper = upper_now;
        if (callbacks.on_step) callbacks.on_step(e);

        const bool eval_now = ph.evaluate && (done % eval_every == 0 || step == ph.end());
        if (step % log_every == 0 || eval_now || step == ph.end()) {
          e.loss = st.window_loss / st.window_steps;
          e.upper = upper_from_json(st.window_upper);
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
          st.window_upper = nullptr;
        }
        // A stop at the last step needs no checkpoint: the run is finishing anyway.
        result.interrupted =
            step < total_steps && callbacks.stop_requested && callbacks.stop_requested->load();
        if ((save_every > 0 && step % save_every == 0) || result.interrupted) save_checkpoint_now(step);
      }
    }
  }
  result.steps = step;
  result.first_loss = st.first_loss;
  result.best_val_loss = st.best_metric;
  result.tokens_per_second = static_cast<double>(st.tokens_seen) / std::max(1e-9, seconds());
  if (result.interrupted) return result;
  if (bilevel && phases.size() == 1) {
    save_search_model();  // no retraining: the searched adapter is the result; keep it under its own name too
  } else if (bilevel) {
    result.search_adapter_dir = search_dir;  // written when retraining started (maybe before a resume)
  }
  const std::string final_dir = (out / "final_model").string();
  saving("the final model", [&] {
    replace_directory(final_dir, [&](const std::string& tmp) {
      write_peft_adapter_files(tmp, adapters, cfg.model.name_or_path);
      fault::kill_if_reached("final_save");  // test hook: a crash halfway through the save
      copy_tokenizer_files(weights->dir(), tmp);
      write_model_card(tmp, cfg, result, final_dir);
    });
  });
  result.final_adapter_dir = final_dir;
  return result;
}

}  // namespace bidora::train
