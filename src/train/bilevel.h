#pragma once
// BiDoRA's bi-level optimisation (shared/reference/bidora-algorithm.md §2-§3), on top of the
// ordinary training step:
//   lower level: the directions θ = {A, B} of every adapted linear minimise the training loss
//                (plus the orthogonality regulariser) with the magnitudes m frozen;
//   upper level: the magnitudes m minimise the validation loss through the hypergradient
//     h = ∂L_val/∂m − [∇_m L_tr(θ + εv, m) − ∇_m L_tr(θ − εv, m)] / (2ε),
//     v = ∂L_val/∂θ, ε = fd_alpha / (‖v‖ + 1e-15)  (Betty's "darts" form the official code runs:
//     inverse Hessian ≈ I, no ξ factor, θ± centred at the current θ, L_tr re-evaluated on the
//     micro-batches of the last lower step).
// Cost per upper step: one forward+backward on the validation micro-batches (both gradients
// from one backward) and two on the training micro-batches that only propagate to dm.
#include <cstdint>
#include <span>
#include <vector>

#include "adapters/adapter_runtime.h"
#include "model/decoder.h"
#include "train/optim_optimizer.h"
#include "train/train_step.h"

namespace bidora::train {

// The optimiser views of the two levels (PEFT keys, HF Trainer's weight-decay rule):
// directions = lora_A, lora_B of every adapted linear; magnitudes = lora_magnitude_vector.
std::vector<ParamRef> direction_params(AdapterSet& set);
std::vector<ParamRef> magnitude_params(AdapterSet& set);

struct HypergradientOptions {
  double fd_alpha = 0.01;  // ε = fd_alpha / ‖v‖
  uint64_t seed = 42;      // dropout seed of the training run
  int64_t train_step = 0;  // the 0-based lower step whose micro-batches `train_micro` are
};

struct HypergradientResult {
  double val_loss = 0;        // mean token loss over the validation micro-batches
  double v_norm = 0;          // ‖∂L_val/∂θ‖ over every A and B
  double eps = 0;             // the finite-difference step used
  double direct_norm = 0;     // ‖∂L_val/∂m‖
  double implicit_norm = 0;   // ‖(g⁺ − g⁻) / (2ε)‖
  double hypergrad_norm = 0;  // ‖h‖
};

// Computes h into every DoRA layer's dm (overwritten). A and B end bit-identical to their
// values on entry (restored by copy, not by subtracting εv); dA and dB are left zeroed.
// Validation passes run without dropout (the upper objective is the loss of the model as it is
// evaluated); both training passes use the dropout masks of step `train_step`. Losses are
// normalised like train_step's: Σ token losses / trained labels of all the micro-batches.
// Throws Error if a loss or gradient is not finite, or there are no trained labels.
HypergradientResult magnitude_hypergradient(Decoder& decoder, AdapterRuntime& runtime,
                                            std::span<const TokenBatch> train_micro,
                                            std::span<const TokenBatch> val_micro,
                                            const HypergradientOptions& opts);

struct UpperStepResult {
  HypergradientResult hyper;
  double grad_norm = 0;  // ‖h‖ before clipping (= hyper.hypergrad_norm)
  double lr = 0;         // the magnitude learning rate used
};

// One upper-level step: the hypergradient, global-norm clipping of it (max_grad_norm <= 0: none)
// and one update of `magnitude_optimizer` (built over magnitude_params) at learning rate `lr`.
UpperStepResult upper_step(Decoder& decoder, AdapterRuntime& runtime, std::span<const TokenBatch> train_micro,
                           std::span<const TokenBatch> val_micro, Optimizer& magnitude_optimizer, double lr,
                           double max_grad_norm, const HypergradientOptions& opts);

}  // namespace bidora::train
