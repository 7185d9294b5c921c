#pragma once
// Test-only fault injection, so the fault tests (tests/cli/fault_test.cpp) can crash or break
// bidora at an exact moment instead of racing a timer: a kill -9 in the middle of a checkpoint
// save, a full disk on the n-th file written, a non-finite loss at step k. Compiled into every
// build and inactive unless the environment variable BIDORA_FAULT is set; it is read once, and a
// point costs one atomic load while inactive.
//
//   BIDORA_FAULT=<point>:<n>[,<point>:<n>...]   fires the n-th time (1-based) `point` is reached
//
// Points, and where they are reached:
//   checkpoint_write  save_checkpoint: the adapter files are in the temporary directory; the
//                     optimiser state, trainer_state.json and the rename are not done. SIGKILL.
//   final_save        the final model save: the adapter files are in the temporary directory,
//                     the tokenizer files, the model card and the rename are not done. SIGKILL.
//   step              train_step, once per optimiser step: after the backward passes, before the
//                     update. SIGKILL.
//   nan_loss          train_step, once per optimiser step: the loss of its last micro-batch is NaN.
//   write_enospc      write_file_atomic, once per file: from the n-th file on (a full disk stays
//                     full) half of the bytes are written, then the write fails with ENOSPC.
#include <string_view>

namespace bidora::fault {

// Counts one arrival at `point`; true on the arrival BIDORA_FAULT names (write_enospc: and on
// every later one). A malformed setting or an
// unknown point in it throws Error naming BIDORA_FAULT (at the first point reached).
bool reached(std::string_view point);

// reached(point), and if so the process kills itself with SIGKILL (no handler, no flush, no
// destructor runs: what a crash or the OOM killer leaves behind).
void kill_if_reached(std::string_view point);

// Replaces the BIDORA_FAULT setting ("" turns every point off) and resets the counts: for unit
// tests, which cannot set the environment before the first point is reached.
void configure_for_testing(std::string_view spec);

}  // namespace bidora::fault
