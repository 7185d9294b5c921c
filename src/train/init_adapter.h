#pragma once
// Continuing training from a trained adapter (adapter.init_from, `bidora train --adapter DIR`):
// the run starts from that adapter's A, B and m with its r, alpha, target modules, method and
// rsLoRA; the optimiser and the schedule start fresh. (--resume, which continues a checkpoint
// with its optimiser state, is separate.)
#include <string>

#include "adapters/adapter_config.h"
#include "config/train_config.h"

namespace bidora::train {

// The configuration with adapter.{method, r, alpha, targets, use_rslora} taken from
// <init_from>/adapter_config.json. A value the user set (its origin in `origins` is not
// "default") that differs from the adapter's is an Error naming both; with origins == nullptr
// every value counts as set (the trainer's final check). The origins of the values taken become
// "--adapter". BiDoRA over a DoRA adapter is kept (BiDoRA trains DoRA adapters). Without
// init_from, `cfg` is returned unchanged.
TrainConfig resolve_init_adapter(TrainConfig cfg, ConfigOrigins* origins);

}  // namespace bidora::train
