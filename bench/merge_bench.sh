#!/usr/bin/env bash
# `bidora merge` time and peak memory on a random model of a real shape with a random DoRA adapter
# (r = 16, alpha 32, rsLoRA, all seven projections): wall time, peak RSS (/usr/bin/time) and the
# output size, for bf16 output (one file) and f32 output (sharded at 500MB).
#
#   bench/merge_bench.sh [PRESET] [BUILD_DIR]
#     PRESET     qwen2.5-0.5b (default), qwen3-0.6b or smollm2-135m (tests/reference/model_reference.py)
#     BUILD_DIR  where bidora is built (default build/)
# The model (bf16) and the adapter are written once to BUILD_DIR/bench-models/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PRESET="${1:-qwen2.5-0.5b}"
BUILD="${2:-$ROOT/build}"
BIDORA="$BUILD/bidora"
WORK="$BUILD/bench-models"
MODEL="$WORK/$PRESET"
ADAPTER="$WORK/$PRESET-dora-r16"
[[ -x "$BIDORA" ]] || { echo "build first: scripts/build.sh" >&2; exit 1; }
mkdir -p "$WORK"

if [[ ! -f "$MODEL/config.json" ]]; then
  /usr/bin/python3 "$ROOT/tests/reference/model_reference.py" "$MODEL" --preset "$PRESET"
fi
if [[ ! -f "$ADAPTER/adapter_model.safetensors" ]]; then
  /usr/bin/python3 - "$MODEL" "$ADAPTER" "$ROOT/tests/reference" <<'EOF'
import json, os, sys
import torch
sys.path.insert(0, sys.argv[3])
import st_io
model, out = sys.argv[1], sys.argv[2]
cfg = json.load(open(os.path.join(model, "config.json")))
H, I, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
hd = cfg.get("head_dim", H // cfg["num_attention_heads"])
Q, KV = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
dims = {"self_attn.q_proj": (Q, H), "self_attn.k_proj": (KV, H), "self_attn.v_proj": (KV, H),
        "self_attn.o_proj": (H, Q), "mlp.gate_proj": (I, H), "mlp.up_proj": (I, H), "mlp.down_proj": (H, I)}
r, g = 16, torch.Generator().manual_seed(0)
t = {}
for l in range(L):
    for mod, (o, i) in dims.items():
        p = f"base_model.model.model.layers.{l}.{mod}"
        t[p + ".lora_A.weight"] = torch.randn(r, i, generator=g) / i ** 0.5
        t[p + ".lora_B.weight"] = torch.randn(o, r, generator=g) * 0.01
        t[p + ".lora_magnitude_vector"] = torch.rand(o, generator=g) + 0.5
os.makedirs(out, exist_ok=True)
st_io.save(os.path.join(out, "adapter_model.safetensors"), t, {"format": "pt"})
json.dump({"base_model_name_or_path": model, "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r,
           "lora_alpha": 32, "lora_dropout": 0.0, "use_rslora": True, "use_dora": True, "bias": "none",
           "target_modules": [m.split(".")[1] for m in dims]}, open(os.path.join(out, "adapter_config.json"), "w"))
EOF
fi

printf '%-8s %10s %15s %14s %8s\n' dtype "wall (s)" "peak RSS (MB)" "output (MB)" files
for dtype in bf16 f32; do
  out="$WORK/$PRESET-merged-$dtype"
  log="$out.time"
  /usr/bin/time -v "$BIDORA" merge -m "$MODEL" -a "$ADAPTER" -o "$out" --overwrite --dtype "$dtype" \
    --max-shard-size 500MB > "$out.log" 2> "$log" || { cat "$out.log" "$log" >&2; exit 1; }
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$log")
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$log")
  size=$(du -sm "$out" | cut -f1)
  files=$(ls "$out"/*.safetensors | wc -l)
  printf '%-8s %10s %15s %14s %8s\n' "$dtype" "$wall" "$rss" "$size" "$files"
done
echo "model: $(du -sm "$MODEL" | cut -f1) MB bf16 ($PRESET); adapter: DoRA r=16, all linears"
