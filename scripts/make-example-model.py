#!/usr/bin/python3
"""Regenerates examples/tiny-qwen2: a tiny randomly initialised Qwen2-architecture model with its
own small byte-level BPE tokenizer, so the quick-start runs every command end to end in seconds.

The files are committed; this script documents how they were made (pure Python, no torch):
  * tokenizer.json: HF `tokenizers` format, Qwen2 layout (Split regex + ByteLevel, BPE, ChatML
    special tokens), with merges learned from examples/data/*.jsonl by plain byte-pair counting.
  * tokenizer_config.json: ChatML template (as Qwen2.5's, without tools), eos <|im_end|>.
  * config.json + model.safetensors: qwen2, hidden 64, 2 layers, bf16 weights drawn as HF
    initialises them (normal, std 0.02; norms 1), except the tied embeddings (std 0.18).
Usage: scripts/make-example-model.py [OUTDIR]
"""
import json
import os
import random
import re
import struct
import sys
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "examples", "tiny-qwen2")
NUM_MERGES = 700
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2's pre-tokenizer regex (as stored in its tokenizer.json).
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
              r"\s+(?!\S)|\s+")
# An ASCII approximation of it for learning merges here (merges are data; any split works).
PY_SPLIT = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\r\n\w]?[^\W\d_]+|\d| ?[^\s\w]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def byte_table():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def corpus_texts():
    texts = []
    for name in sorted(os.listdir(os.path.join(ROOT, "examples", "data"))):
        if not name.endswith(".jsonl"):
            continue
        with open(os.path.join(ROOT, "examples", "data", name), encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    texts.extend(strings_in(json.loads(line)))
    texts += ["user", "assistant", "system", "\n", "Below is an instruction that describes a task.",
              "### Instruction:", "### Input:", "### Response:", "Write a response that appropriately completes "
              "the request.", "paired with an input that provides further context."]
    return texts


def strings_in(v):
    if isinstance(v, str):
        return [v]
    if isinstance(v, list):
        return [s for x in v for s in strings_in(x)]
    if isinstance(v, dict):
        return [s for x in v.values() for s in strings_in(x)]
    return []


def learn_bpe(texts):
    table = byte_table()
    words = Counter()
    for t in texts:
        for piece in PY_SPLIT.findall(t):
            words[tuple(table[b] for b in piece.encode("utf-8"))] += 1
    vocab = {table[b]: i for i, b in enumerate(sorted(table))}  # byte order: id = byte value
    merges = []
    for _ in range(NUM_MERGES):
        pairs = Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        (a, b), count = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if count < 2:
            break
        merges.append(f"{a} {b}")
        vocab[a + b] = len(vocab)
        new_words = Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] += c
        words = new_words
    return vocab, merges


def tokenizer_json(vocab, merges):
    added = [{"id": len(vocab) + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, s in enumerate(SPECIALS)]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN_SPLIT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                           "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


CHATML = ("{%- for message in messages %}{%- if loop.first and message['role'] != 'system' %}"
          "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
          "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
          "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")


def bf16_bytes(values):
    out = bytearray()
    for v in values:
        u = struct.unpack("<I", struct.pack("<f", v))[0]
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16  # round to nearest even
        out += struct.pack("<H", u)
    return bytes(out)


def write_safetensors(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        shape, data = tensors[name]
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    vocab, merges = learn_bpe(corpus_texts())
    n_tokens = len(vocab) + len(SPECIALS)
    vocab_size = (n_tokens + 63) // 64 * 64  # padded like real checkpoints
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_json(vocab, merges), f, ensure_ascii=False, indent=1)
    with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|im_end|>",
                   "pad_token": "<|endoftext|>", "unk_token": None, "model_max_length": 2048,
                   "chat_template": CHATML}, f, indent=2)
    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64,
           "intermediate_size": 192, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "vocab_size": vocab_size, "max_position_embeddings": 2048, "rope_theta": 1000000.0,
           "rms_norm_eps": 1e-6, "tie_word_embeddings": True, "hidden_act": "silu", "use_sliding_window": False,
           "sliding_window": 2048, "max_window_layers": 2, "bos_token_id": len(vocab),
           "eos_token_id": len(vocab) + 2, "torch_dtype": "bfloat16"}
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    rng = random.Random(42)
    H, I, L, hd = 64, 192, 2, 16
    q, kv = 4 * hd, 2 * hd

    def normal(shape, std=0.02):
        n = 1
        for d in shape:
            n *= d
        return shape, bf16_bytes(rng.gauss(0, std) for _ in range(n))

    def ones(n):
        return [n], bf16_bytes([1.0] * n)

    # Embeddings at the scale of trained models (row norm ~1.4), not of a fresh init: the head is
    # tied and frozen, so with std 0.02 the logits could never leave ±1.3 and no adapter could
    # lower the loss much.
    t = {"model.embed_tokens.weight": normal([vocab_size, H], 0.18), "model.norm.weight": ones(H)}
    for l in range(L):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = ones(H)
        t[p + "post_attention_layernorm.weight"] = ones(H)
        for name, shape in (("q_proj", [q, H]), ("k_proj", [kv, H]), ("v_proj", [kv, H]), ("o_proj", [H, q])):
            t[p + "self_attn." + name + ".weight"] = normal(shape)
        for name in ("q_proj", "k_proj", "v_proj"):
            n = q if name == "q_proj" else kv
            t[p + "self_attn." + name + ".bias"] = [n], bf16_bytes([0.0] * n)
        t[p + "mlp.gate_proj.weight"] = normal([I, H])
        t[p + "mlp.up_proj.weight"] = normal([I, H])
        t[p + "mlp.down_proj.weight"] = normal([H, I])
    write_safetensors(os.path.join(OUT, "model.safetensors"), t)
    print(f"wrote {OUT}: {n_tokens} tokens ({len(merges)} merges), vocab_size {vocab_size}")


if __name__ == "__main__":
    main()
