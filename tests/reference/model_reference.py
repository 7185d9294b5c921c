#!/usr/bin/python3
"""PyTorch reference for bidora's decoder (the llm.c pattern).

Writes tiny random models of each supported family (config.json + safetensors, in the HF
layout) and, for a fixed batch, the reference logits and loss computed by a plain PyTorch
re-statement of the transformers modelling code (Llama / Mistral / Qwen2 / Qwen3). The C++
tests load the same directories and compare.

Usage: model_reference.py OUTDIR            # all tiny cases (a few seconds)
       model_reference.py OUTDIR --preset qwen2.5-0.5b [--dtype bf16]   # one big random model
"""
import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

# --------------------------------------------------------------------------------------------
# The model, as transformers computes it (eager attention, float32 softmax).


def rms_norm(x, w, eps):
    dt = x.dtype
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(dt)


def inv_freq_for(cfg, seq_len):
    hd = cfg["head_dim"]
    base = cfg.get("rope_theta", 10000.0)
    rs = cfg.get("rope_scaling") or cfg.get("rope_parameters") or {}
    base = rs.get("rope_theta", base)
    rtype = rs.get("rope_type", rs.get("type", "default"))
    attn_scale = 1.0
    if rtype == "dynamic" and seq_len > cfg["max_position_embeddings"]:
        f = rs["factor"]
        base = base * ((f * seq_len / cfg["max_position_embeddings"]) - (f - 1)) ** (hd / (hd - 2))
    inv = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    if rtype == "linear":
        inv = inv / rs["factor"]
    elif rtype == "llama3":
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        lo_wl, hi_wl = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > lo_wl, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < hi_wl) * ~(wavelen > lo_wl)
        inv = torch.where(medium, smoothed, inv_l)
    elif rtype == "yarn":
        factor = rs["factor"]
        L = rs.get("original_max_position_embeddings", cfg["max_position_embeddings"])
        bf, bs = rs.get("beta_fast", 32), rs.get("beta_slow", 1)

        def cdim(rot):
            return (hd * math.log(L / (rot * 2 * math.pi))) / (2 * math.log(base))
        low = max(math.floor(cdim(bf)), 0)
        high = min(math.ceil(cdim(bs)), hd - 1)
        if low == high:
            high += 0.001
        pos_freqs = base ** (torch.arange(0, hd, 2).float() / hd)
        extrap, interp = 1.0 / pos_freqs, 1.0 / (factor * pos_freqs)
        ramp = torch.clamp((torch.arange(hd // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
        w = 1 - ramp
        inv = interp * (1 - w) + extrap * w
        attn_scale = rs.get("attention_factor") or (0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0)
    return inv, attn_scale


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def linear(x, W, b):
    y = x @ W.t()
    return y + b if b is not None else y


def proj(x, p, name):
    """A Linear of the block, with its PEFT LoRA / DoRA adapter when p holds one.

    p[name + ".lora"] = (A [r,in], B [out,r], m [out] or None, scaling). LoRA (PEFT layer.py):
    y = base(x) + s·B(A(x)). DoRA (PEFT dora.py): the norm ‖W + s·BA‖_row is detached, and
    y = base(x) + (m/n − 1)·(x Wᵀ) + (m/n)·s·B(A(x)), the bias not rescaled.
    """
    W, b = p[name + ".weight"], p.get(name + ".bias")
    y = linear(x, W, b)
    ad = p.get(name + ".lora")
    if ad is None:
        return y
    A, B, m, s = ad
    lora = (x @ A.t()) @ B.t()
    if m is None:
        return y + s * lora
    norm = (W + s * (B @ A).detach()).norm(p=2, dim=1).detach()
    g = m / norm
    return y + (g - 1) * (x @ W.t()) + g * s * lora


def attention(x, p, cfg, positions, dt, layer_idx):
    T = x.shape[0]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    q = proj(x, p, "q_proj").view(T, nh, hd).transpose(0, 1)
    k = proj(x, p, "k_proj").view(T, nkv, hd).transpose(0, 1)
    v = proj(x, p, "v_proj").view(T, nkv, hd).transpose(0, 1)
    if cfg["model_type"] == "qwen3":
        q = rms_norm(q, p["q_norm.weight"], cfg["rms_norm_eps"])
        k = rms_norm(k, p["k_norm.weight"], cfg["rms_norm_eps"])
    inv, attn_scale = inv_freq_for(cfg, int(positions.max()) + 1)
    freqs = positions.float()[:, None] * inv[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = (emb.cos() * attn_scale).to(dt), (emb.sin() * attn_scale).to(dt)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    g = nh // nkv
    k = k[:, None].expand(nkv, g, T, hd).reshape(nh, T, hd)
    v = v[:, None].expand(nkv, g, T, hd).reshape(nh, T, hd)
    scores = (q @ k.transpose(1, 2)) * hd ** -0.5
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    visible = j <= i
    window = window_for_layer(cfg, layer_idx)
    if window:
        visible = visible & (j > i - window)
    scores = scores.masked_fill(~visible, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores.float(), dim=-1).to(dt)
    out = (probs @ v).transpose(0, 1).reshape(T, nh * hd)
    return proj(out, p, "o_proj")


def window_for_layer(cfg, layer_idx):
    if cfg["model_type"] == "mistral":
        return cfg.get("sliding_window")
    if cfg["model_type"] in ("qwen2", "qwen3") and cfg.get("use_sliding_window"):
        return cfg["sliding_window"] if layer_idx >= cfg.get("max_window_layers", 0) else None
    return None


def mlp(x, p):
    g = proj(x, p, "gate_proj")
    u = proj(x, p, "up_proj")
    return proj(torch.nn.functional.silu(g) * u, p, "down_proj")


def layer_params(weights, l):
    pre = f"model.layers.{l}."
    out = {}
    for name, t in weights.items():
        if name.startswith(pre):
            out[name[len(pre):].split(".", 1)[1] if name[len(pre):].startswith(("self_attn.", "mlp."))
                else name[len(pre):]] = t  # (also carries "<proj>.lora" adapter tuples)
    return out


def forward_document(weights, cfg, ids, dt):
    """Hidden states after the final norm for one document (positions 0..len-1)."""
    x = weights["model.embed_tokens.weight"][ids]
    positions = torch.arange(len(ids))
    eps = cfg["rms_norm_eps"]
    for l in range(cfg["num_hidden_layers"]):
        p = layer_params(weights, l)
        x = x + attention(rms_norm(x, p["input_layernorm.weight"], eps), p, cfg, positions, dt, l)
        x = x + mlp(rms_norm(x, p["post_attention_layernorm.weight"], eps), p)
    return rms_norm(x, weights["model.norm.weight"], eps)


def forward(weights, cfg, input_ids, position_ids, dt, adapters=None):
    """Logits [rows, T, V]; a row is split into documents where position_ids restart at 0.

    adapters: {"model.layers.{l}.self_attn.q_proj": (A, B, m or None, scaling), ...}.
    """
    w = {k: v.to(dt) for k, v in weights.items()}
    for name, ad in (adapters or {}).items():
        w[name + ".lora"] = ad
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    rows = []
    for r in range(input_ids.shape[0]):
        starts = [t for t in range(input_ids.shape[1]) if position_ids[r, t] == 0] + [input_ids.shape[1]]
        hs = [forward_document(w, cfg, input_ids[r, a:b], dt) for a, b in zip(starts[:-1], starts[1:])]
        rows.append(torch.cat(hs, 0) @ head.t())
    return torch.stack(rows).float()


def causal_lm_loss(logits, labels):
    """transformers ForCausalLMLoss: shift, mean over labels != -100."""
    shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1])
    shift_labels = labels[:, 1:].reshape(-1)
    return torch.nn.functional.cross_entropy(shift_logits.double(), shift_labels, ignore_index=-100)


# --------------------------------------------------------------------------------------------
# Random models.

def fill_defaults(cfg):
    cfg = dict(cfg)
    cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    cfg.setdefault("rms_norm_eps", 1e-6)
    cfg.setdefault("max_position_embeddings", 2048)
    return cfg


def random_weights(cfg, gen, scale=1.0):
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    mt = cfg["model_type"]
    qkv_bias = mt == "qwen2" or cfg.get("attention_bias", False)
    o_bias = mt != "qwen2" and cfg.get("attention_bias", False)
    mlp_bias = cfg.get("mlp_bias", False)

    def mat(o, i):
        return torch.randn(o, i, generator=gen) * (scale / math.sqrt(i))

    def vec(n, center=0.0, s=0.1):
        return center + torch.randn(n, generator=gen) * s

    w = {"model.embed_tokens.weight": torch.randn(V, H, generator=gen) * 0.5, "model.norm.weight": vec(H, 1.0)}
    if not cfg.get("tie_word_embeddings"):
        w["lm_head.weight"] = mat(V, H)
    shapes = {"self_attn.q_proj": (nh * hd, H), "self_attn.k_proj": (nkv * hd, H), "self_attn.v_proj": (nkv * hd, H),
              "self_attn.o_proj": (H, nh * hd), "mlp.gate_proj": (I, H), "mlp.up_proj": (I, H),
              "mlp.down_proj": (H, I)}
    for l in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{l}."
        w[pre + "input_layernorm.weight"] = vec(H, 1.0)
        w[pre + "post_attention_layernorm.weight"] = vec(H, 1.0)
        for name, (o, i) in shapes.items():
            w[pre + name + ".weight"] = mat(o, i)
            biased = (name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj") and qkv_bias) or \
                     (name == "self_attn.o_proj" and o_bias) or (name.startswith("mlp.") and mlp_bias)
            if biased:
                w[pre + name + ".bias"] = vec(o, 0.0, 0.2)
        if mt == "qwen3":
            w[pre + "self_attn.q_norm.weight"] = vec(hd, 1.0)
            w[pre + "self_attn.k_norm.weight"] = vec(hd, 1.0)
    return w


def write_model(path, cfg, weights, dtype, shards=1, spell_head_dim=True, config_extra=None):
    os.makedirs(path, exist_ok=True)
    conf = dict(cfg)
    if not spell_head_dim:
        conf.pop("head_dim")
    conf.update(config_extra or {})
    conf["torch_dtype"] = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(conf, f, indent=2)
    stored = {k: v.to(dtype) for k, v in weights.items()}
    if shards == 1:
        st_io.save(os.path.join(path, "model.safetensors"), stored, {"format": "pt"})
    else:
        names = sorted(stored)
        per = math.ceil(len(names) / shards)
        weight_map, total = {}, 0
        for s in range(shards):
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: stored[n] for n in names[s * per:(s + 1) * per]}
            st_io.save(os.path.join(path, fname), part, {"format": "pt"})
            for n, t in part.items():
                weight_map[n] = fname
                total += t.numel() * t.element_size()
        with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    # The weights exactly as stored, in float32, for the reference computations.
    return {k: v.float() for k, v in stored.items()}


BASE = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=320, max_position_embeddings=128, hidden_act="silu")

CASES = [
    # name, config overrides, storage dtype, shards, extra config keys written but not in BASE
    ("llama_f32", dict(model_type="llama", architectures=["LlamaForCausalLM"], rms_norm_eps=1e-5,
                       rope_theta=10000.0, tie_word_embeddings=False), torch.float32, 1),
    ("llama_bias_linear_rope_f32", dict(model_type="llama", architectures=["LlamaForCausalLM"], rms_norm_eps=1e-5,
                                        attention_bias=True, mlp_bias=True, tie_word_embeddings=False,
                                        rope_scaling={"type": "linear", "factor": 2.0}), torch.float32, 1),
    ("llama3_rope_params_bf16", dict(model_type="llama", architectures=["LlamaForCausalLM"], rms_norm_eps=1e-5,
                                     tie_word_embeddings=True, num_key_value_heads=1,
                                     rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                      "original_max_position_embeddings": 16}),
     torch.bfloat16, 1),
    ("qwen2_tied_sharded_f32", dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], rope_theta=1000000.0,
                                    num_key_value_heads=1, tie_word_embeddings=True, use_sliding_window=False,
                                    sliding_window=4), torch.float32, 3),
    ("qwen2_yarn_bf16", dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], rope_theta=1000000.0,
                             tie_word_embeddings=False,
                             rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}),
     torch.bfloat16, 1),
    ("qwen3_headdim_f32", dict(model_type="qwen3", architectures=["Qwen3ForCausalLM"], rope_theta=1000000.0,
                               head_dim=24, tie_word_embeddings=True, attention_bias=False), torch.float32, 1),
    ("mistral_window_f16", dict(model_type="mistral", architectures=["MistralForCausalLM"], rms_norm_eps=1e-5,
                                sliding_window=5, tie_word_embeddings=False), torch.float16, 1),
]

SEQ = 12
DOCS_ROW1 = [5, 4, 3]  # the packed row


def make_batch(cfg, gen):
    V = cfg["vocab_size"]
    ids = torch.randint(0, V, (2, SEQ), generator=gen)
    pos = torch.zeros(2, SEQ, dtype=torch.int64)
    pos[0] = torch.arange(SEQ)
    t = 0
    for n in DOCS_ROW1:
        pos[1, t:t + n] = torch.arange(n)
        t += n
    labels = ids.clone()
    labels[0, 3] = -100                  # an ignored label
    labels[1, pos[1] == 0] = -100        # document starts are never predicted from the previous document
    return ids, pos, labels


def is_dense_matrix(name):
    """Weights bidora keeps in bf16 in its compact modes: every matrix (norms and biases stay f32)."""
    return name.endswith("_proj.weight") or name in ("model.embed_tokens.weight", "lm_head.weight")


def bf16_round(w):
    return {k: (v.to(torch.bfloat16).float() if is_dense_matrix(k) else v) for k, v in w.items()}


def run_case(outdir, name, overrides, dtype, shards, gen):
    cfg = fill_defaults({**BASE, **overrides})
    weights = random_weights(cfg, gen)
    mdir = os.path.join(outdir, "models", name)
    stored = write_model(mdir, cfg, weights, dtype, shards, spell_head_dim=("head_dim" in overrides))
    ids, pos, labels = make_batch(cfg, gen)
    logits = forward(stored, cfg, ids, pos, torch.float32)
    out = {
        "input_ids": ids.to(torch.int32), "position_ids": pos.to(torch.int32), "labels": labels.to(torch.int32),
        "logits": logits, "loss": causal_lm_loss(logits, labels).float().reshape(1),
        # weights rounded to bf16, maths in f32: what bidora computes with bf16 storage
        "logits_wbf16": forward(bf16_round(stored), cfg, ids, pos, torch.float32),
        # HF with torch_dtype=bfloat16: every op rounded to bf16 (documents the bf16 gap)
        "logits_bf16_compute": forward(stored, cfg, ids, pos, torch.bfloat16),
    }
    # NF4 / int8 modes: block Linear weights quantised from their f32 values, embeddings and
    # lm_head in bf16, norms and biases f32.
    dense = bf16_round(stored)
    nf4 = {k: (nf4_roundtrip(stored[k]) if is_block_linear(k) else v) for k, v in dense.items()}
    out["logits_wnf4"] = forward(nf4, cfg, ids, pos, torch.float32)
    i8 = {k: (int8_roundtrip(stored[k]) if is_block_linear(k) else v) for k, v in dense.items()}
    out["logits_wint8"] = forward(i8, cfg, ids, pos, torch.float32)
    os.makedirs(os.path.join(outdir, "cases"), exist_ok=True)
    st_io.save(os.path.join(outdir, "cases", name + ".safetensors"), out)


def nf4_roundtrip(w):
    """bidora's NF4 storage: bitsandbytes NF4, blocksize 64, double quantisation; dequantised f32."""
    import quant_reference as qr
    packed, absmax = qr.quantize_nf4(w, 64)
    _, _, _, deq_absmax = qr.double_quant(absmax, qr.create_dynamic_map(signed=True))
    return qr.dequantize_nf4(packed, deq_absmax, w.numel(), 64).reshape(w.shape)


def int8_roundtrip(w):
    """bidora's default int8 storage: absmax per block of 64 weights."""
    import quant_reference as qr
    return qr.int8_blockwise(w, 64)[2].reshape(w.shape)


def is_block_linear(name):
    return name.startswith("model.layers.") and name.endswith("_proj.weight")


PRESETS = {
    "smollm2-135m": dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=576,
                         intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         vocab_size=49152, rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                         max_position_embeddings=8192),
    "qwen2.5-0.5b": dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], hidden_size=896,
                         intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         vocab_size=151936, rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                         max_position_embeddings=32768, use_sliding_window=False, sliding_window=32768,
                         max_window_layers=21),
    "qwen3-0.6b": dict(model_type="qwen3", architectures=["Qwen3ForCausalLM"], hidden_size=1024,
                       intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                       head_dim=128, vocab_size=151936, rope_theta=1000000.0, rms_norm_eps=1e-6,
                       tie_word_embeddings=True, max_position_embeddings=40960, attention_bias=False),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--preset", choices=sorted(PRESETS))
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
    args = ap.parse_args()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    if args.preset:
        cfg = fill_defaults({**PRESETS[args.preset], "hidden_act": "silu"})
        dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
        w = random_weights(cfg, gen, scale=0.5)
        write_model(args.outdir, cfg, w, dtype, spell_head_dim="head_dim" in PRESETS[args.preset])
        print(f"wrote {args.preset} ({sum(v.numel() for v in w.values()):,} params) to {args.outdir}")
        return
    for name, overrides, dtype, shards in CASES:
        run_case(args.outdir, name, overrides, dtype, shards, gen)
    print(f"model_reference: wrote {len(CASES)} cases to {args.outdir}")


if __name__ == "__main__":
    main()
