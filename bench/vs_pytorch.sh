#!/usr/bin/env bash
# bidora vs eager PyTorch (+ a PEFT-equivalent LoRA/DoRA, bench/pytorch_train.py) fine-tuning the
# same random model on the same token ids, in one run: tokens/s, peak RSS, the speed ratio and
# the model-FLOPs utilisation against bidora's sgemm throughput measured in the same run.
#
#   bench/vs_pytorch.sh [PRESET...] [--steps N] [--methods "lora dora"] [--bases "bf16 nf4"]
#                       [--computes "f32 bf16"] [--torch-dtypes "bf16 f32"]
#     PRESET  smollm2-135m, qwen2.5-0.5b, qwen3-0.6b (tests/reference/model_reference.py);
#             default all three
#     --steps timed optimiser steps per configuration (default 3); each run does one more, untimed
#     --methods lora and/or dora (default lora); --bases bidora's frozen-weight storage (default
#             bf16 nf4); --computes bidora's model.compute_dtype (default f32 bf16: bf16 multiplies
#             the frozen weights in bf16 with f32 sums, as torch.autocast; shown as "<base>+bf16mm");
#             --torch-dtypes PyTorch's torch_dtype (default bf16 f32)
#   BIDORA_BUILD_DIR   the build to use (default build/); results go to its bench-results/
#   BIDORA_OPENBLAS_DIR a directory holding OpenBLAS's libblas.so.3 (default: Debian's
#             libopenblas0-pthread location, else that package unpacked into <build>/deps by
#             apt-get download). Debian's torch calls whatever libblas.so.3 the system selects for
#             its float32 GEMMs; the reference BLAS runs them at ~3 GFLOP/s, so without OpenBLAS
#             the PyTorch f32 runs are skipped (with a warning).
#
# Setting: batch 4 x 512 tokens (64 documents cut to exactly 512 tokens), LoRA r = 16, alpha 32
# (rsLoRA scaling alpha/sqrt(r), bidora's default) on all seven projections, dropout 0.05,
# gradient checkpointing, AdamW (lr 2e-4, weight decay 0.01, clipping 1.0), seed 42, all cores
# for both engines. PyTorch runs with OpenBLAS forced to
# its best kernels for this CPU (OPENBLAS_CORETYPE=Cooperlake with AVX512_BF16, SkylakeX with
# AVX-512); its bf16 GEMMs go through oneDNN (torch's mkldnn bf16 path) either way.
#
# Same model, same tokens: both engines load build/bench-models/<preset> (written once, as
# bench/train_throughput.sh does); pytorch_train.py trains on the ids `bidora data-preview --json`
# prints and in bidora's batch order, and this script checks that PyTorch's first-step loss (the
# adapter is still the identity) equals bidora's: within 1e-3 relative for PyTorch f32 against
# bidora bf16 (same bf16-stored weights, both computing in f32); bf16 compute and NF4 weights
# differ by rounding and are only shown. A mismatch fails the run.
#
# Timing: one warm-up step excluded on both sides. bidora's tokens/s is taken from
# metrics.jsonl (tokens and elapsed time of steps 2..N+1), PyTorch's from its timed steps; both
# count rows x padded length per step, as `bidora train` does. Peak RSS: /usr/bin/time for bidora,
# getrusage for PyTorch (its safetensors are read tensor by tensor, not counted twice).
#
# FLOPs per trained token (L layers, H hidden, V vocab, T tokens per row, r rank; a
# multiply-add counts 2):
#   F_lin  = 2 * L * (sum of the 7 projection weights' out*in)  frozen linears, forward
#            (cross-checked against the *_proj.weight sizes in the safetensors header)
#   F_head = 2 * V * H                                          lm_head, forward
#   F_attn = 2 * 2 * L * n_heads * head_dim * (T+1)/2           causal QK^T and PV, forward
#   F_lora = L * sum over the 7 linears of 2 * r * (in+out)     adapters, forward
#   model FLOPs/token    = F_lin + F_head + F_attn + F_lora                  forward
#                        + F_lin + F_head + 2*F_attn + 2*F_lora              backward (input grads
#                          of frozen linears and head, attention, LoRA input+weight grads)
#   hardware FLOPs/token = model + F_lin + F_attn + F_lora (the decoder layers' forward again,
#                          recomputed under checkpointing)
#   MFU = tokens/s * model FLOPs/token / sgemm FLOP/s; HFU likewise with hardware FLOPs. The
#   sgemm figure is bench_sgemm_peak's flop-weighted GFLOP/s on this preset's projection GEMMs
#   (2048 tokens, forward NT and input-gradient NN), float32, all cores. DoRA's extra work (row
#   norms, PEFT's f32 recompute of the base product) is not counted: for one preset and method,
#   MFU is proportional to tokens/s. PyTorch bf16 multiplies in bf16 (oneDNN, AVX512_BF16), which
#   can run faster than the f32 sgemm that is the denominator.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { echo "vs_pytorch.sh: $*" >&2; exit 2; }
BUILD="$(cd "${BIDORA_BUILD_DIR:-$ROOT/build}" && pwd)" || die "no build directory ${BIDORA_BUILD_DIR:-$ROOT/build}"
BIDORA="$BUILD/bidora"
SGEMM="$BUILD/bench_sgemm_peak"
WORK="$BUILD/bench-models"
RESULTS="$BUILD/bench-results"
PY=/usr/bin/python3

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
PRESETS=()
STEPS=3
METHODS="lora"
BASES="bf16 nf4"
COMPUTES="f32 bf16"
TORCH_DTYPES="bf16 f32"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --steps) STEPS="${2:?--steps needs a value}"; shift 2 ;;
    --methods) METHODS="${2:?--methods needs a value}"; shift 2 ;;
    --bases) BASES="${2:?--bases needs a value}"; shift 2 ;;
    --computes) COMPUTES="${2:?--computes needs a value}"; shift 2 ;;
    --torch-dtypes) TORCH_DTYPES="${2?--torch-dtypes needs a value}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    smollm2-135m|qwen2.5-0.5b|qwen3-0.6b) PRESETS+=("$1"); shift ;;
    *) die "unknown argument '$1' (presets: smollm2-135m qwen2.5-0.5b qwen3-0.6b; --help)" ;;
  esac
done
[[ ${#PRESETS[@]} -gt 0 ]] || PRESETS=(smollm2-135m qwen2.5-0.5b qwen3-0.6b)
[[ "$STEPS" =~ ^[1-9][0-9]*$ ]] || die "--steps must be a positive integer, got '$STEPS'"
for m in $METHODS; do [[ "$m" =~ ^(lora|dora)$ ]] || die "--methods: '$m' is not lora or dora"; done
for q in $BASES; do [[ "$q" =~ ^(bf16|nf4|int8|f32)$ ]] || die "--bases: '$q' is not bf16, nf4, int8 or f32"; done
for c in $COMPUTES; do [[ "$c" =~ ^(f32|bf16)$ ]] || die "--computes: '$c' is not f32 or bf16"; done
for d in $TORCH_DTYPES; do [[ "$d" =~ ^(bf16|f32)$ ]] || die "--torch-dtypes: '$d' is not bf16 or f32"; done

[[ -x "$BIDORA" && -x "$SGEMM" ]] ||
  die "needs $BIDORA and $SGEMM (scripts/build.sh, or cmake --build $BUILD --target bidora bench_sgemm_peak)"
FIXTURES="$ROOT/tests/fixtures/npm"
[[ -f "$FIXTURES/qwen3/tokenizer.json" && -f "$FIXTURES/llama2/tokenizer.json" ]] ||
  die "the tokenizer fixtures are missing: run scripts/fetch-fixtures.sh"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (Debian package 'time')"
$PY -c 'import torch' 2>/dev/null || die "$PY cannot import torch (python3-torch)"
mkdir -p "$WORK" "$RESULTS"
THREADS=$(nproc)

# PyTorch's BLAS: OpenBLAS with its best kernels for this CPU, for float32 (see the header).
OPENBLAS_DIR="${BIDORA_OPENBLAS_DIR:-}"
if [[ -z "$OPENBLAS_DIR" ]]; then
  for d in /usr/lib/x86_64-linux-gnu/openblas-pthread /usr/lib/x86_64-linux-gnu/openblas-openmp; do
    [[ -f "$d/libblas.so.3" ]] && { OPENBLAS_DIR="$d"; break; }
  done
fi
if [[ -z "$OPENBLAS_DIR" ]]; then
  # Not installed: unpack Debian's package into the build directory (apt-get download needs no
  # root and changes nothing system-wide; installing it would switch every program's libblas).
  DEPS="$BUILD/deps"
  OPENBLAS_DIR="$DEPS/root/usr/lib/x86_64-linux-gnu/openblas-pthread"
  if [[ ! -f "$OPENBLAS_DIR/libblas.so.3" ]]; then
    mkdir -p "$DEPS"
    (cd "$DEPS" && apt-get download libopenblas0-pthread >&2 && dpkg -x libopenblas0-pthread_*.deb root) ||
      { echo "vs_pytorch.sh: could not fetch libopenblas0-pthread" >&2; OPENBLAS_DIR=""; }
  fi
fi
TORCH_ENV=(OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS")
if [[ -n "$OPENBLAS_DIR" ]]; then
  [[ -f "$OPENBLAS_DIR/libblas.so.3" ]] || die "$OPENBLAS_DIR/libblas.so.3 does not exist"
  TORCH_ENV+=(LD_LIBRARY_PATH="$OPENBLAS_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  if grep -qw avx512_bf16 /proc/cpuinfo; then TORCH_ENV+=(OPENBLAS_CORETYPE=Cooperlake)
  elif grep -qw avx512f /proc/cpuinfo; then TORCH_ENV+=(OPENBLAS_CORETYPE=SkylakeX)
  fi
elif [[ " $TORCH_DTYPES " == *" f32 "* ]]; then
  echo "vs_pytorch.sh: WARNING: no OpenBLAS found (apt-get install libopenblas0-pthread, or set BIDORA_OPENBLAS_DIR);" \
       "PyTorch f32 would use the reference BLAS: skipping it" >&2
  TORCH_DTYPES="${TORCH_DTYPES//f32/}"
fi

RUN_LIST="$RESULTS/vs_pytorch-runs.jsonl"  # one line per measurement, read by the report below
: >"$RUN_LIST"
DATA="$WORK/text-512.jsonl"
if [[ ! -f "$DATA" ]]; then
  # 64 documents of ~700 words: every row is cut to exactly 512 tokens (as train_throughput.sh).
  $PY - "$DATA" <<'EOF'
import json, random, sys
rng = random.Random(0)
words = ("the model learns adapters over frozen weights while gradients flow through low rank "
         "matrices and the optimiser keeps moments of every trainable value in memory").split()
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(700))}) + "\n")
EOF
fi

for PRESET in "${PRESETS[@]}"; do
  MODEL="$WORK/$PRESET"
  [[ -f "$MODEL/config.json" ]] || $PY "$ROOT/tests/reference/model_reference.py" "$MODEL" --preset "$PRESET" >&2
  # A tokenizer whose ids fit the preset's vocabulary: SmolLM2's 49152 entries cannot hold the
  # Qwen3 tokenizer's ids, Llama 2's 32000 fit (and it is a llama-family tokenizer). Copied every
  # time: a directory written by train_throughput.sh holds the Qwen3 one.
  tok="$FIXTURES/qwen3"
  [[ "$PRESET" == smollm2-135m ]] && tok="$FIXTURES/llama2"
  cp "$tok/tokenizer.json" "$tok/tokenizer_config.json" "$MODEL/"
  echo "== $PRESET: sgemm" >&2
  PREVIEW="$RESULTS/$PRESET-data.json"
  "$BIDORA" data-preview -m "$MODEL" -f "$DATA" --max-seq-len 512 -n 1000000 --json >"$PREVIEW"
  "$SGEMM" --model "$MODEL" --tokens 2048 --json |
    $PY -c 'import json,sys; j=json.load(sys.stdin); j.update(kind="sgemm", preset=sys.argv[1]); print(json.dumps(j))' "$PRESET" \
    >>"$RUN_LIST"
  for method in $METHODS; do
    for q in $BASES; do
     for compute in $COMPUTES; do
      label="$q"
      [[ "$compute" == bf16 ]] && label="$q+bf16mm"
      echo "== $PRESET: bidora $method $label" >&2
      out="$WORK/vs-$PRESET-$method-$q-$compute"
      log="$out.log"
      /usr/bin/time -f $'PEAK_RSS_KB %M\nCPU_WALL_S %U %S %e' "$BIDORA" train -m "$MODEL" -t "$DATA" -o "$out" --overwrite \
        --method "$method" -q "$q" --compute-dtype "$compute" -r 16 --alpha 32 --rslora --dropout 0.05 --targets all-linear --max-seq-len 512 -b 4 \
        --grad-accum 1 --gradient-checkpointing --lr 2e-4 --seed 42 --max-steps $((STEPS + 1)) --val-split 0 \
        --warmup-steps 0 --logging-steps 1 --save-steps 0 >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
      rss=$(sed -n 's/^PEAK_RSS_KB //p' "$log")
      cpu_wall=$(sed -n 's/^CPU_WALL_S //p' "$log")
      reported=$(sed -n 's/^Trained .* (\([0-9.]*\) tokens\/s).*/\1/p' "$log")
      $PY - "$out/metrics.jsonl" "$PRESET" "$method" "$label" "$rss" "${reported:-0}" "$cpu_wall" "$THREADS" \
        >>"$RUN_LIST" <<'EOF'
import json, sys
path, preset, method, base, rss_kb, reported, cpu_wall, threads = sys.argv[1:]
user, system, wall = map(float, cpu_wall.split())
rows = [json.loads(l) for l in open(path) if l.strip()]
steps = [r for r in rows if "loss" in r and "elapsed_seconds" in r]
if len(steps) < 2 or [r["step"] for r in steps] != list(range(1, len(steps) + 1)):
    sys.exit(f"{path}: expected one entry per step (--logging-steps 1), got steps {[r.get('step') for r in steps]}")
seen = [0] + [round(r["tokens_per_second"] * r["elapsed_seconds"]) for r in steps]  # tokens up to each step
a, b = steps[0], steps[-1]
print(json.dumps({"kind": "run", "engine": "bidora", "preset": preset, "method": method, "dtype": base,
                  "tokens_per_second": (seen[-1] - seen[1]) / (b["elapsed_seconds"] - a["elapsed_seconds"]),
                  "reported_tokens_per_second": float(reported),
                  "step_tokens": [y - x for x, y in zip(seen, seen[1:])],
                  "losses": [r["loss"] for r in steps], "step_seconds": [a["elapsed_seconds"]] +
                  [y["elapsed_seconds"] - x["elapsed_seconds"] for x, y in zip(steps, steps[1:])],
                  "peak_rss_mb": int(rss_kb) / 1024.0, "cpu_seconds": user + system, "wall_seconds": wall,
                  "threads": int(threads)}))
EOF
     done
    done
    for dt in $TORCH_DTYPES; do
      echo "== $PRESET: pytorch $method $dt" >&2
      log="$WORK/vs-$PRESET-$method-torch-$dt.log"
      env "${TORCH_ENV[@]}" $PY "$ROOT/bench/pytorch_train.py" --model "$MODEL" --data-json "$PREVIEW" \
        --method "$method" --dtype "$dt" --rank 16 --alpha 32 --rslora --dropout 0.05 --batch-size 4 --max-seq-len 512 \
        --steps "$STEPS" --warmup-steps 1 --lr 2e-4 --seed 42 --threads "$THREADS" >"$log.json" 2>"$log" ||
        { cat "$log" >&2; exit 1; }
      tail -n 1 "$log.json" |
        $PY -c 'import json,sys; j=json.load(sys.stdin); j.update(kind="run", preset=sys.argv[1]); print(json.dumps(j))' \
          "$PRESET" >>"$RUN_LIST"
    done
  done
done

# The report: FLOP counts per preset, the tables, the same-tokens check and the JSON.
$PY - "$RUN_LIST" "$WORK" "$RESULTS/vs_pytorch.json" "$STEPS" <<'EOF'
import json, os, struct, sys
runs_path, work, out_path, steps = sys.argv[1:]
results = os.path.dirname(out_path)
records = [json.loads(l) for l in open(runs_path) if l.strip()]
presets = list(dict.fromkeys(r["preset"] for r in records))
report, failures = {"steps": int(steps), "presets": {}}, []

def header_params(model_dir):
    """Element counts of the checkpoint's tensors, from the safetensors headers."""
    files = ["model.safetensors"]
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted(set(json.load(open(index))["weight_map"].values()))
    sizes = {}
    for name in files:
        with open(os.path.join(model_dir, name), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            for k, v in json.loads(f.read(n)).items():
                if k != "__metadata__":
                    p = 1
                    for d in v["shape"]:
                        p *= d
                    sizes[k] = p
    return sizes

for preset in presets:
    model_dir = os.path.join(work, preset)
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    H, I, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim", H // nh)
    r = 16
    # T: the rows' length (all 512 here: every document is longer and cut; with unequal rows
    # the mean length stands in, and the table says so).
    lengths = [e["tokens"] for e in json.load(open(os.path.join(results, f"{preset}-data.json")))["examples"]]
    T = sum(lengths) / len(lengths)
    if min(lengths) != max(lengths):
        print(f"note: {preset}: rows of {min(lengths)}..{max(lengths)} tokens, F_attn uses their mean {T:.1f}")
    shapes = [(nh * hd, H), (nkv * hd, H), (nkv * hd, H), (H, nh * hd), (I, H), (I, H), (H, I)]  # (out, in)
    p_lin = L * sum(o * i for o, i in shapes)
    sizes = header_params(model_dir)
    p_lin_file = sum(v for k, v in sizes.items() if k.startswith("model.layers.") and k.endswith("_proj.weight"))
    if p_lin != p_lin_file:
        failures.append(f"{preset}: the 7 projections hold {p_lin_file} weights in the safetensors, config.json gives {p_lin}")
    f_lin, f_head = 2 * p_lin, 2 * V * H
    f_attn = 2 * 2 * L * nh * hd * (T + 1) / 2
    f_lora = L * sum(2 * r * (o + i) for o, i in shapes)
    model_f = (f_lin + f_head + f_attn + f_lora) + (f_lin + f_head) + 2 * f_attn + 2 * f_lora
    hw_f = model_f + f_lin + f_attn + f_lora
    sg = next(x for x in records if x["kind"] == "sgemm" and x["preset"] == preset)
    peak = sg["gflops"] * 1e9
    runs = [x for x in records if x["kind"] == "run" and x["preset"] == preset]
    for x in runs:
        x["cpu_share"] = x["cpu_seconds"] / (x["wall_seconds"] * x["threads"])
        x["mfu"] = x["tokens_per_second"] * model_f / peak
        x["hfu"] = x["tokens_per_second"] * hw_f / peak
        best = max((y["tokens_per_second"] for y in runs if y["engine"] == "pytorch" and y["method"] == x["method"]),
                   default=None)
        x["vs_best_pytorch"] = x["tokens_per_second"] / best if best else None
    # Same model, same tokens: step-1 losses (identity adapters) of PyTorch f32 and bidora bf16.
    for m in dict.fromkeys(x["method"] for x in runs):
        ref = next((x for x in runs if x["engine"] == "bidora" and x["method"] == m and x["dtype"] == "bf16"), None)
        for x in runs:
            if ref and x["method"] == m:
                x["loss1_rel_diff"] = abs(x["losses"][0] - ref["losses"][0]) / abs(ref["losses"][0])
        tf = next((x for x in runs if x["engine"] == "pytorch" and x["method"] == m and x["dtype"] == "f32"), None)
        if ref and tf and tf["loss1_rel_diff"] > 1e-3:
            failures.append(f"{preset} {m}: first-step loss {tf['losses'][0]:.6f} (PyTorch f32) vs {ref['losses'][0]:.6f} "
                            "(bidora bf16): not the same model and tokens")
    for x in runs:
        if x["step_tokens"] != runs[0]["step_tokens"]:
            failures.append(f"{preset}: {x['engine']} {x['method']} {x['dtype']} processed {x['step_tokens']} tokens per "
                            f"step, {runs[0]['engine']} {runs[0]['method']} {runs[0]['dtype']} {runs[0]['step_tokens']}")
        if x["engine"] == "pytorch" and x["dtype"] == "f32" and not any("openblas" in b for b in x["blas"]):
            failures.append(f"{preset}: PyTorch f32 ran without OpenBLAS (loaded: {', '.join(x['blas'])})")
    flops = {"F_lin": f_lin, "F_head": f_head, "F_attn": f_attn, "F_lora": f_lora, "model_flops_per_token": model_f,
             "hardware_flops_per_token": hw_f, "projection_params": p_lin, "total_params": sum(sizes.values())}
    report["presets"][preset] = {"flops": flops, "sgemm": sg, "runs": runs}

    print(f"\n{preset}: {L} layers, H {H}, {sum(sizes.values()) / 1e6:.1f} M params ({p_lin / 1e6:.1f} M in the "
          f"projections); {model_f / 1e9:.3f} GFLOP/token model, {hw_f / 1e9:.3f} hardware "
          f"(F_lin {f_lin / 1e9:.3f}, F_head {f_head / 1e9:.3f}, F_attn {f_attn / 1e9:.3f}, F_lora {f_lora / 1e9:.4f})")
    print(f"sgemm (bidora, oneDNN f32, {sg['threads']} threads): {sg['gflops']:.1f} GFLOP/s")
    print(f"{'engine / config':<24} {'tokens/s':>9} {'peak RSS MB':>12} {'vs best PT':>11} {'MFU':>7} {'HFU':>7} "
          f"{'loss@1':>9} {'Δloss@1':>9} {'CPU':>5}")
    for x in runs:
        name = f"{x['engine']} {x['method']} {x['dtype']}"
        ratio = f"{x['vs_best_pytorch']:.2f}x" if x["vs_best_pytorch"] else "-"
        diff = f"{x['loss1_rel_diff']:.1e}" if "loss1_rel_diff" in x else "-"
        print(f"{name:<24} {x['tokens_per_second']:>9.1f} {x['peak_rss_mb']:>12.0f} {ratio:>11} "
              f"{100 * x['mfu']:>6.1f}% {100 * x['hfu']:>6.1f}% {x['losses'][0]:>9.4f} {diff:>9} "
              f"{100 * x['cpu_share']:>4.0f}%")

print("""
tokens/s: trained tokens (rows x padded length) per second over the timed steps, one warm-up step
  excluded; bidora: from metrics.jsonl; PyTorch: eager, PEFT-style adapters (bench/pytorch_train.py).
peak RSS: the whole process (bidora: /usr/bin/time; PyTorch: getrusage, including torch itself).
vs best PT: tokens/s over the fastest PyTorch configuration of the same preset and method.
MFU / HFU: tokens/s x model (hardware: + checkpoint recompute) FLOPs per token over bidora's sgemm
  GFLOP/s on this preset's projection GEMMs, measured in this run (formulas: bench/vs_pytorch.sh).
loss@1: the first step's loss (adapter = identity); Δloss@1 relative to bidora bf16. PyTorch f32 must
  match it (< 1e-3: same model, same tokens, same order); bf16 compute and NF4 weights round.
+bf16mm: bidora with model.compute_dtype bf16 (frozen products in bf16, f32 sums and everything
  else f32); PyTorch bf16 is torch_dtype bf16 (every tensor and op in bf16, its matmuls in oneDNN).
CPU: the process's CPU time over its wall time x threads. Well under ~90% means other processes
  held the cores during the run: its figures (and MFU, against an sgemm figure measured at another
  moment) are not comparable; re-run on a quiet machine.""")
json.dump(report, open(out_path, "w"), indent=1)
print(f"results: {out_path}")
if failures:
    print("\nFAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
EOF
