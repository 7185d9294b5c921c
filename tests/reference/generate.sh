#!/usr/bin/env bash
# Writes every PyTorch reference the C++ tests compare against into OUTDIR (default build/reference):
#   OUTDIR/model  tiny random models of each family + reference logits/loss (model_reference.py)
#   OUTDIR/quant  NF4 / int8 / 8-bit blockwise reference quantisations (quant_reference.py)
#   OUTDIR/adapters  LoRA / rsLoRA / DoRA forward + autograd gradients, a PEFT-style adapter dir (adapter_reference.py)
#   OUTDIR/optim  torch AdamW + clip_grad_norm_ + LambdaLR schedules, bnb 8-bit blockwise AdamW re-implementation (optim_reference.py)
#   OUTDIR/train  a few optimiser steps of LoRA / rsLoRA / DoRA training on the tiny models (train_reference.py)
#   OUTDIR/bidora  BiDoRA's magnitude hypergradient (with the exact mixed derivative) and a few bi-level steps, in float64 (bidora_reference.py)
# Uses Debian's python3-torch (/usr/bin/python3): a test-time reference only, never a runtime dependency.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-$HERE/../../build/reference}"
PY=/usr/bin/python3
mkdir -p "$OUT"
"$PY" "$HERE/model_reference.py" "$OUT/model"
"$PY" "$HERE/quant_reference.py" "$OUT/quant"
"$PY" "$HERE/adapter_reference.py" "$OUT/adapters"
"$PY" "$HERE/train_reference.py" "$OUT/train"
"$PY" "$HERE/bidora_reference.py" "$OUT/bidora"
"$PY" "$HERE/optim_reference.py" "$OUT/optim"
