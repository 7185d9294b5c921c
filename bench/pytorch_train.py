#!/usr/bin/python3
"""Eager PyTorch LoRA / DoRA training of a bidora-trainable model directory: the baseline of
bench/vs_pytorch.sh.

It trains what `bidora train` trains, the way transformers + PEFT + the HF Trainer would, with
no transformers or peft installed (Debian's torch 1.13 only):

  model      config.json + safetensors (llama, mistral, qwen2, qwen3), a batched re-statement of
             the transformers modelling code (eager attention, softmax in f32, RMSNorm in f32)
             built from tests/reference/model_reference.py's pieces. --dtype bf16 is
             from_pretrained(torch_dtype=torch.bfloat16): every weight and op in bf16; f32 loads
             the weights as float32.
  adapters   PEFT LoRA on all seven projections: A kaiming-uniform(a=sqrt(5)), B = 0, scaling
             alpha/r (alpha/sqrt(r) with --rslora), dropout on the adapter input, adapter weights
             in f32 and the input cast to f32 (PEFT's autocast_adapter_dtype default), result cast
             back. --method dora: PEFT's DoraLinearLayer: m = ||W||_row, the norm ||W + s·BA||_row
             detached (B·A formed through an identity as PEFT does), and with dropout active the
             base product recomputed on the dropped-out input in f32, as PEFT does.
  training   torch.utils.checkpoint per decoder layer (--checkpointing, default on; reentrant with
             input grads enabled, as HF + PEFT do), full [rows, T, V] logits cast to f32 +
             F.cross_entropy (HF's ForCausalLMLoss), AdamW over the adapter parameters only
             (HF defaults: lr 2e-4 as bidora, weight decay 0.01, clipping at 1.0, cosine schedule).
  data       the token ids `bidora data-preview --json` prints for the file (it tokenizes exactly
             as training does), examples without a trained token dropped as bidora drops them,
             labels = ids where trained else -100 and -100 on every document's first token (what
             bidora's collate feeds the shifted loss), batches in bidora's order: its seeded
             permutation per epoch (src/data/rng.cpp, xoshiro256** + Fisher-Yates), re-stated
             here so that step k trains the rows bidora's step k trains. vs_pytorch.sh checks it:
             the first step's loss (the adapter is still the identity) must equal bidora's.

Measured: --warmup-steps untimed steps, then --steps timed optimiser steps. tokens/s counts what
bidora counts (src/train/trainer.cpp): rows x padded length of every batch, over the timed steps'
wall time. Peak RSS: getrusage(RUSAGE_SELF).ru_maxrss. The safetensors are read one tensor at a
time (not through st_io.load, which holds the whole file plus a copy) so that the peak is the
training's, not the loader's. Prints one JSON line.

  pytorch_train.py --model DIR --data-json preview.json [--method lora|dora] [--dtype bf16|f32]
                   [--steps 3] [--warmup-steps 1] [--batch-size 4] [--max-seq-len 512] ...
"""
import time

_T0 = time.perf_counter()  # the process's wall time, for its CPU share (imports included)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch.utils.checkpoint  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import model_reference as mr  # noqa: E402
import st_io  # noqa: E402

PROJS = [("self_attn", "q_proj"), ("self_attn", "k_proj"), ("self_attn", "v_proj"), ("self_attn", "o_proj"),
         ("mlp", "gate_proj"), ("mlp", "up_proj"), ("mlp", "down_proj")]
FAMILIES = ("llama", "mistral", "qwen2", "qwen3")


def die(msg):
    print(f"pytorch_train.py: {msg}", file=sys.stderr)
    sys.exit(2)


# --------------------------------------------------------------------------------------------
# Model files.

def read_safetensors(path, dtype, out):
    """Adds every tensor of one safetensors file to `out`, converted to `dtype`, one at a time."""
    import numpy as np
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            die(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        n = int.from_bytes(head, "little")
        size = os.fstat(f.fileno()).st_size
        if n <= 0 or 8 + n > size:
            die(f"{path}: header length {n} does not fit the file ({size} bytes)")
        header = json.loads(f.read(n))
        base = 8 + n
        for name, info in header.items():
            if name == "__metadata__":
                continue
            if info["dtype"] not in st_io._FROM:
                die(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
            tdt, ndt = st_io._FROM[info["dtype"]]
            b, e = info["data_offsets"]
            count = math.prod(info["shape"])
            if base + e > size or e - b != count * np.dtype(ndt).itemsize:
                die(f"{path}: tensor {name} data_offsets {b}..{e} do not match its shape {info['shape']} "
                    f"and dtype {info['dtype']} within the file")
            arr = np.empty(count, dtype=ndt)
            f.seek(base + b)
            if f.readinto(memoryview(arr).cast("B")) != e - b:
                die(f"{path}: tensor {name} is truncated")
            t = torch.from_numpy(arr)
            if tdt == torch.bfloat16:
                t = t.view(torch.bfloat16)
            out[name] = t.reshape(info["shape"]).to(dtype)


def load_model(model_dir, dtype):
    cfg_path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(cfg_path):
        die(f"{cfg_path}: no such file (--model must be a model directory)")
    with open(cfg_path) as f:
        raw = json.load(f)
    for key in ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "vocab_size"):
        if key not in raw:
            die(f"{cfg_path}: field \"{key}\" is missing")
    if raw["model_type"] not in FAMILIES:
        die(f"{cfg_path}: model_type \"{raw['model_type']}\" is not one of {', '.join(FAMILIES)}")
    raw.setdefault("num_key_value_heads", raw["num_attention_heads"])
    cfg = mr.fill_defaults(raw)
    weights = {}
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.isfile(os.path.join(model_dir, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        die(f"{model_dir}: neither model.safetensors nor model.safetensors.index.json")
    for name in files:
        read_safetensors(os.path.join(model_dir, name), dtype, weights)

    H, I, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    shapes = {"q_proj": (nh * hd, H), "k_proj": (nkv * hd, H), "v_proj": (nkv * hd, H), "o_proj": (H, nh * hd),
              "gate_proj": (I, H), "up_proj": (I, H), "down_proj": (H, I)}

    def need(name, shape):
        if name not in weights:
            die(f"{model_dir}: tensor {name} is missing")
        if tuple(weights[name].shape) != tuple(shape):
            die(f"{model_dir}: tensor {name} has shape {list(weights[name].shape)}, config.json implies {list(shape)}")
        return weights[name]

    need("model.embed_tokens.weight", (V, H))
    need("model.norm.weight", (H,))
    if not cfg.get("tie_word_embeddings"):
        need("lm_head.weight", (V, H))
    for l in range(L):
        pre = f"model.layers.{l}."
        need(pre + "input_layernorm.weight", (H,))
        need(pre + "post_attention_layernorm.weight", (H,))
        for mod, p in PROJS:
            need(f"{pre}{mod}.{p}.weight", shapes[p])
        if cfg["model_type"] == "qwen3":
            need(pre + "self_attn.q_norm.weight", (hd,))
            need(pre + "self_attn.k_norm.weight", (hd,))
    return cfg, weights, shapes


# --------------------------------------------------------------------------------------------
# PEFT adapters.

class LoraLinear(torch.nn.Module):
    """peft.tuners.lora.Linear over a frozen weight (and bias), one adapter."""

    def __init__(self, W, b, r, alpha, rslora, dropout, dora):
        super().__init__()
        self.W, self.b = W, b  # frozen, not parameters of this module
        out_f, in_f = W.shape
        self.lora_A = torch.nn.Linear(in_f, r, bias=False, dtype=torch.float32)
        self.lora_B = torch.nn.Linear(r, out_f, bias=False, dtype=torch.float32)
        torch.nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        torch.nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / math.sqrt(r) if rslora else alpha / r
        self.dropout = torch.nn.Dropout(dropout) if dropout > 0 else torch.nn.Identity()
        self.dora = dora
        if dora:
            with torch.no_grad():  # m = ||W + s·BA||_row with B = 0
                self.magnitude = torch.nn.Parameter(self.weight_norm(W.float(), torch.zeros(W.shape)))

    def weight_norm(self, weight, lora_weight):
        return torch.linalg.norm(weight + self.scaling * lora_weight, dim=1).to(weight.dtype)

    def forward(self, x):
        result = F.linear(x, self.W, self.b)
        result_dtype = result.dtype
        x = x.to(self.lora_A.weight.dtype)
        if not self.dora:
            result = result + self.lora_B(self.lora_A(self.dropout(x))) * self.scaling
        else:
            if isinstance(self.dropout, torch.nn.Identity) or not self.training:
                base_result = result
            else:
                x = self.dropout(x)
                base_result = None
            result = result + self.dora_delta(x, base_result)
        return result.to(result_dtype)

    def dora_delta(self, x, base_result):
        """peft.tuners.lora.dora.DoraLinearLayer.forward."""
        x_eye = torch.eye(self.lora_A.weight.shape[1], dtype=x.dtype)
        lora_weight = self.lora_B(self.lora_A(x_eye)).T
        weight = self.W.to(x.dtype)
        norm = self.weight_norm(weight, lora_weight.detach()).detach()
        scale = (self.magnitude / norm).view(1, -1)
        lora_result = self.lora_B(self.lora_A(x))
        if base_result is not None:
            if self.b is not None:
                base_result = base_result - self.b
        else:
            base_result = F.linear(x, weight)
        return (scale - 1) * base_result + scale * lora_result * self.scaling


# --------------------------------------------------------------------------------------------
# The decoder, batched as transformers runs it.

class Decoder(torch.nn.Module):
    def __init__(self, cfg, w, dtype, args):
        super().__init__()
        self.cfg, self.w, self.dtype = cfg, w, dtype
        self.checkpointing = args.checkpointing
        self.layers = torch.nn.ModuleList()
        for l in range(cfg["num_hidden_layers"]):
            pre = f"model.layers.{l}."
            mods = torch.nn.ModuleDict()
            for mod, p in PROJS:
                name = f"{pre}{mod}.{p}"
                mods[p] = LoraLinear(w[name + ".weight"], w.get(name + ".bias"), args.rank, args.alpha, args.rslora,
                                     args.dropout, args.method == "dora")
            self.layers.append(mods)
        self.head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]

    def rope(self, T):
        inv, attn_scale = mr.inv_freq_for(self.cfg, T)
        freqs = torch.arange(T).float()[:, None] * inv[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * attn_scale).to(self.dtype), (emb.sin() * attn_scale).to(self.dtype)

    def mask(self, T, l):
        i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
        visible = j <= i
        window = mr.window_for_layer(self.cfg, l)
        if window:
            visible = visible & (j > i - window)
        m = torch.zeros(T, T, dtype=self.dtype)
        return m.masked_fill(~visible, torch.finfo(self.dtype).min)

    def layer(self, x, l, cos, sin, mask):
        cfg, p, pre = self.cfg, self.layers[l], f"model.layers.{l}."
        B, T, _ = x.shape
        nh, nkv, hd, eps = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["rms_norm_eps"]
        h = mr.rms_norm(x, self.w[pre + "input_layernorm.weight"], eps)
        q = p["q_proj"](h).view(B, T, nh, hd)
        k = p["k_proj"](h).view(B, T, nkv, hd)
        v = p["v_proj"](h).view(B, T, nkv, hd).transpose(1, 2)
        if cfg["model_type"] == "qwen3":
            q = mr.rms_norm(q, self.w[pre + "self_attn.q_norm.weight"], eps)
            k = mr.rms_norm(k, self.w[pre + "self_attn.k_norm.weight"], eps)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        q = q * cos + mr.rotate_half(q) * sin
        k = k * cos + mr.rotate_half(k) * sin
        g = nh // nkv  # transformers' repeat_kv
        k = k[:, :, None].expand(B, nkv, g, T, hd).reshape(B, nh, T, hd)
        v = v[:, :, None].expand(B, nkv, g, T, hd).reshape(B, nh, T, hd)
        scores = torch.matmul(q, k.transpose(2, 3)) * hd ** -0.5 + mask
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(B, T, nh * hd)
        x = x + p["o_proj"](out)
        h = mr.rms_norm(x, self.w[pre + "post_attention_layernorm.weight"], eps)
        return x + p["down_proj"](F.silu(p["gate_proj"](h)) * p["up_proj"](h))

    def forward(self, ids, labels):
        T = ids.shape[1]
        x = F.embedding(ids, self.w["model.embed_tokens.weight"])
        if self.checkpointing and self.training:
            x.requires_grad_(True)  # PEFT's enable_input_require_grads, needed by reentrant checkpoints
        cos, sin = self.rope(T)
        masks = {}
        for l in range(len(self.layers)):
            window = mr.window_for_layer(self.cfg, l)
            if window not in masks:
                masks[window] = self.mask(T, l)
            if self.checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(self.layer, x, l, cos, sin, masks[window], use_reentrant=True)
            else:
                x = self.layer(x, l, cos, sin, masks[window])
        x = mr.rms_norm(x, self.w["model.norm.weight"], self.cfg["rms_norm_eps"])
        logits = F.linear(x, self.head).float()  # ForCausalLMLoss upcasts the full logits
        shift_labels = F.pad(labels, (0, 1), value=-100)[:, 1:]
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), shift_labels.reshape(-1), ignore_index=-100)


# --------------------------------------------------------------------------------------------
# Data: bidora's tokens, masking and batch order.

MASK64 = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


class Rng:
    """bidora::data::Rng (src/data/rng.cpp): xoshiro256** seeded through SplitMix64."""

    def __init__(self, seed):
        self.s = []
        for _ in range(4):
            seed, v = splitmix64(seed)
            self.s.append(v)

    def next(self):
        s = self.s
        rotl = lambda x, k: ((x << k) | (x >> (64 - k))) & MASK64  # noqa: E731
        result = (rotl((s[1] * 5) & MASK64, 7) * 9) & MASK64
        t = (s[1] << 17) & MASK64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def below(self, bound):
        limit = ((1 << 64) - bound) % bound  # 2^64 mod bound, as -bound % bound in uint64
        while True:
            x = self.next()
            if x >= limit:
                return x % bound


def derive_seed(seed, stream):
    x = (seed ^ (stream * 0xD1B54A32D192ED03)) & MASK64
    x, _ = splitmix64(x)
    _, v = splitmix64(x)
    return v


def bidora_epoch_batches(n, batch_size, seed, epoch):
    """bidora::data::plan_epoch with shuffling (no length grouping, no drop_last)."""
    rng = Rng(derive_seed(seed, epoch))
    p = list(range(n))
    for i in range(n, 1, -1):
        j = rng.below(i)
        p[i - 1], p[j] = p[j], p[i - 1]
    return [p[s:s + batch_size] for s in range(0, n, batch_size)]


def load_examples(path, model_dir, max_seq_len, vocab):
    try:
        with open(path) as f:
            j = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        die(f"{path}: cannot read the data-preview JSON: {e}")
    for key in ("examples", "stats", "options", "special_tokens", "tokenizer_dir"):
        if key not in j:
            die(f"{path}: field \"{key}\" is missing (expected `bidora data-preview --json` output)")
    # `bidora train` tokenizes with the model directory's tokenizer: the ids must come from it.
    if os.path.realpath(j["tokenizer_dir"]) != os.path.realpath(model_dir):
        die(f"{path}: tokenized with {j['tokenizer_dir']}, but the model is {model_dir} (run data-preview -m on it)")
    if j["options"].get("max_seq_len") != max_seq_len:
        die(f"{path}: data-preview ran with max_seq_len {j['options'].get('max_seq_len')}, training uses {max_seq_len}")
    if j["options"].get("train_on_prompt"):
        die(f"{path}: data-preview ran with --train-on-prompt; bidora train is run without it")
    if len(j["examples"]) != j["stats"]["examples"]:
        die(f"{path}: shows {len(j['examples'])} of {j['stats']['examples']} examples; run data-preview with "
            f"-n {j['stats']['examples']} so that every training row is known")
    out = []
    for k, ex in enumerate(j["examples"]):
        ids, trained = ex.get("ids"), ex.get("trained")
        if not isinstance(ids, list) or not isinstance(trained, list) or len(ids) != len(trained) or not ids:
            die(f"{path}: examples[{k}] (line {ex.get('line')}): \"ids\" and \"trained\" must be equal-length lists")
        if len(ids) > max_seq_len:
            die(f"{path}: examples[{k}] has {len(ids)} tokens, more than max_seq_len {max_seq_len}")
        if min(ids) < 0 or max(ids) >= vocab:
            die(f"{path}: examples[{k}] has a token id outside the vocabulary [0, {vocab})")
        if any(trained):  # bidora drops examples with nothing to train on
            out.append((ids, trained))
    if not out:
        die(f"{path}: no example has a trained token")
    pad = j["special_tokens"].get("pad_id")
    return out, pad if isinstance(pad, int) and 0 <= pad < vocab else 0


def collate(examples, rows, pad_id):
    """bidora::data::collate without packing: right padding, labels -100 on padding, on untrained
    tokens and on each row's first token."""
    T = max(len(examples[r][0]) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.int64)
    labels = torch.full((len(rows), T), -100, dtype=torch.int64)
    for i, r in enumerate(rows):
        x, tr = examples[r]
        ids[i, :len(x)] = torch.tensor(x)
        labels[i, :len(x)] = torch.where(torch.tensor(tr, dtype=torch.bool), torch.tensor(x), torch.tensor(-100))
        labels[i, 0] = -100
    return ids, labels


# --------------------------------------------------------------------------------------------

def loaded_blas():
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line.lower() or "dnnl" in line.lower()}
    return sorted(os.path.basename(p) for p in libs if p.startswith("/"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data-json", required=True, help="`bidora data-preview -n ALL --json` output for the data")
    ap.add_argument("--method", default="lora", choices=["lora", "dora"])
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32.0)
    ap.add_argument("--rslora", action="store_true")
    ap.add_argument("--dropout", type=float, default=0.05)
    ap.add_argument("--checkpointing", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-seq-len", type=int, default=512)
    ap.add_argument("--steps", type=int, default=3, help="timed optimiser steps")
    ap.add_argument("--warmup-steps", type=int, default=1, help="untimed optimiser steps before them")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=42, help="bidora's training.seed: the data order")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="torch threads (default: the CPUs this process may use, as bidora)")
    args = ap.parse_args()
    for name in ("rank", "batch_size", "max_seq_len", "steps", "threads"):
        if getattr(args, name) < 1:
            die(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.warmup_steps < 0 or not 0 <= args.dropout < 1 or args.alpha <= 0:
        die("--warmup-steps must be >= 0, --dropout in [0, 1) and --alpha > 0")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    t_load = time.perf_counter()
    cfg, weights, _ = load_model(args.model, dtype)
    examples, pad_id = load_examples(args.data_json, args.model, args.max_seq_len, cfg["vocab_size"])
    model = Decoder(cfg, weights, dtype, args)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    load_seconds = time.perf_counter() - t_load

    total = args.warmup_steps + args.steps
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * s / total)))
    per_epoch = math.ceil(len(examples) / args.batch_size)
    epochs = {}
    losses, seconds, tokens = [], [], []
    for step in range(total):
        e = step // per_epoch
        if e not in epochs:
            epochs[e] = bidora_epoch_batches(len(examples), args.batch_size, args.seed, e)
        ids, labels = collate(examples, epochs[e][step % per_epoch], pad_id)
        t0 = time.perf_counter()
        loss = model(ids, labels)
        loss.backward()
        if args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - t0)
        losses.append(loss.item())
        tokens.append(ids.numel())
        if not math.isfinite(losses[-1]):
            die(f"step {step + 1}: loss is {losses[-1]}")
        print(f"step {step + 1}/{total}: loss {losses[-1]:.4f}, {seconds[-1]:.1f} s", file=sys.stderr, flush=True)

    timed_s, timed_tok = sum(seconds[args.warmup_steps:]), sum(tokens[args.warmup_steps:])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "engine": "pytorch", "torch": torch.__version__, "method": args.method, "rslora": args.rslora,
        "dtype": args.dtype, "checkpointing": args.checkpointing, "threads": torch.get_num_threads(),
        "blas": loaded_blas(), "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "rank": args.rank, "alpha": args.alpha, "dropout": args.dropout,
        "trainable_params": sum(p.numel() for p in params), "examples": len(examples),
        "warmup_steps": args.warmup_steps, "steps": args.steps, "step_tokens": tokens,
        "tokens_per_second": timed_tok / timed_s, "step_seconds": seconds, "losses": losses,
        "load_seconds": load_seconds, "peak_rss_mb": usage.ru_maxrss / 1024.0,
        "cpu_seconds": usage.ru_utime + usage.ru_stime, "wall_seconds": time.perf_counter() - _T0,
    }))


if __name__ == "__main__":
    main()
