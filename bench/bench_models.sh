# Shared by the bench/*.sh scripts (source it): random models of real shapes and synthetic text
# data in build/bench-models/, written once. Needs /usr/bin/python3 with torch (the reference
# scripts' environment) and the tokenizer fixtures (scripts/fetch-fixtures.sh).
#   bench_model PRESET   -> prints the model directory (qwen2.5-0.5b, qwen3-0.6b, smollm2-135m)
#   bench_text WORDS     -> prints a JSONL file of 64 documents of WORDS words each
BENCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_WORK="${BENCH_WORK:-$BENCH_ROOT/build/bench-models}"
mkdir -p "$BENCH_WORK"

bench_model() {
  local preset="$1" dir="$BENCH_WORK/$1"
  if [[ ! -f "$dir/config.json" ]]; then
    /usr/bin/python3 "$BENCH_ROOT/tests/reference/model_reference.py" "$dir" --preset "$preset" >&2
  fi
  if [[ ! -f "$dir/tokenizer.json" ]]; then
    # The Qwen3 tokenizer (151k ids) for the Qwen shapes; SmolLM2's 49k vocabulary cannot take its
    # ids, so it gets the Llama 2 tokenizer (32k ids).
    local tok=qwen3
    [[ "$preset" == smollm2* ]] && tok=llama2
    cp "$BENCH_ROOT/tests/fixtures/npm/$tok/tokenizer.json" "$BENCH_ROOT/tests/fixtures/npm/$tok/tokenizer_config.json" "$dir/"
  fi
  echo "$dir"
}

bench_text() {
  local words="$1" file="$BENCH_WORK/text-$1w.jsonl"
  [[ "$words" == 700 && -f "$BENCH_WORK/text-512.jsonl" ]] && file="$BENCH_WORK/text-512.jsonl"
  if [[ ! -f "$file" ]]; then
    /usr/bin/python3 - "$file" "$words" <<'PY'
import json, random, sys
rng = random.Random(0)
words = ("the model learns adapters over frozen weights while gradients flow through low rank "
         "matrices and the optimiser keeps moments of every trainable value in memory").split()
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(int(sys.argv[2])))}) + "\n")
PY
  fi
  echo "$file"
}
