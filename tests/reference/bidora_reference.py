#!/usr/bin/python3
"""PyTorch reference for BiDoRA's hypergradient and bi-level steps
(shared/reference/bidora-algorithm.md §1-§4; C++ side: src/train/bilevel.h).

Everything is computed in float64 — the tiny models' float32 weights and the float32 adapter
values written to the PEFT directory are converted exactly — so the reference carries no float32
noise of its own and the C++ (float32) error is what the tests measure. The forward is
model_reference.py's re-statement of transformers + PEFT DoRA, restated here without its float32
round trips (RMSNorm and softmax upcast to float32, logits cast to float32); RoPE's cos/sin stay
float32 constants as in transformers and bidora.

Semantics (Betty's "darts" hypergradient, the form the official BiDoRA code runs), θ = every A
and B, m = every DoRA magnitude, no dropout:
  L(batches)  = Σ token cross-entropy over the micro-batches / number of trained (shifted,
                != -100) labels of all of them  (HF Trainer's normalisation, as train_step)
  v           = ∂L_val/∂θ,  g_dir = ∂L_val/∂m  (one backward)
  ε           = fd_alpha / (‖v‖ + 1e-15)       (global L2 norm over all A and B)
  g±          = ∂L_tr/∂m at θ ± εv (m fixed)
  implicit    = (g⁺ − g⁻) / (2ε),  h = g_dir − implicit
The finite difference approximates the mixed derivative (∂/∂θ ∂L_tr/∂m)·v. Its exact value is
recorded too (double backward), taken on the loss with the DoRA norm NOT detached: g± recompute
n = ‖W + sBA‖ at θ ± εv, so the limit of the finite difference includes ∂n/∂θ, which the
detached graph (PEFT's) drops. The detached-graph value is recorded as well, for information.
The same hypergradient is also computed in float32 PyTorch and its error recorded: g⁺ − g⁻ is
below 1% of g±, so float32 rounding noise is amplified ~100× in the implicit term, and that error
is the floor any float32 implementation (bidora's included) works against.

Lower step (train_step with BiDoRA's options): AdamW over A, B only, loss = CE + R with the
direction regulariser R = (γ/K) Σ_k ‖D_k D_kᵀ − I‖_F, D = diag(1/n)(W + sBA) (n not detached,
plain Frobenius norm, K = number of adapted linears), clip_grad_norm_ over A, B. Upper step:
h on the micro-batches of the group's last lower step, clip_grad_norm_ over the magnitudes,
AdamW over m with its own LambdaLR: base lr · upper_lr_mult, warmup // K, total // K (what the
C++ trainer builds).

Usage: bidora_reference.py OUTDIR   (model_reference.py must have written OUTDIR/../model)
Writes OUTDIR/<case>/{initial_adapter/, batches.safetensors, expected.safetensors, case.json}.
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_reference as mr  # noqa: E402
import st_io  # noqa: E402
import train_reference as tr  # noqa: E402

F64 = torch.float64
QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]
ADAM = dict(adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8)

HYPER_CASES = [
    dict(name="hyper_qwen2_qkvo", model="qwen2_tied_sharded_f32", r=4, alpha=8, rslora=False, targets=QKVO,
         accum=2, val_accum=2, fd_alpha=0.01),
    dict(name="hyper_llama_all_rslora", model="llama_f32", r=4, alpha=8, rslora=True, targets=tr.ALL,
         accum=2, val_accum=2, fd_alpha=0.01),
    # A 5x larger finite-difference step: g+ - g- is then ~5x further above float32 rounding noise.
    dict(name="hyper_qwen2_qkvo_fd05", model="qwen2_tied_sharded_f32", r=4, alpha=8, rslora=False, targets=QKVO,
         accum=2, val_accum=2, fd_alpha=0.05),
]
# gamma = 1e-2 (the official scripts use 1e-5) so that the regulariser visibly moves A and B.
BILEVEL_CASE = dict(name="bilevel_steps", model="qwen2_tied_sharded_f32", r=4, alpha=8, rslora=False, targets=QKVO,
                    lr=2e-2, upper_lr_mult=2.0, weight_decay=0.01, warmup=2, schedule="cosine", upper_steps=3,
                    lower_steps=2, accum=2, val_accum=2, max_grad_norm=1.0, upper_max_grad_norm=1.0, gamma=1e-2,
                    fd_alpha=0.01, seed=42)


# --------------------------------------------------------------------------------------------
# The model in float64 (model_reference.py without its float32 casts; optional non-detached norm).

def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def proj(x, p, name, detach_norm):
    """mr.proj; detach_norm=False keeps n = ‖W + s·BA‖_row in the graph (for the exact mixed derivative)."""
    W, b = p[name + ".weight"], p.get(name + ".bias")
    y = mr.linear(x, W, b)
    ad = p.get(name + ".lora")
    if ad is None:
        return y
    A, B, m, s = ad
    lora = (x @ A.t()) @ B.t()
    if m is None:
        return y + s * lora
    delta = s * (B @ A)
    norm = (W + delta.detach()).norm(p=2, dim=1).detach() if detach_norm else (W + delta).norm(p=2, dim=1)
    g = m / norm
    return y + (g - 1) * (x @ W.t()) + g * s * lora


def attention(x, p, cfg, positions, layer_idx, dn):
    T = x.shape[0]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    q = proj(x, p, "q_proj", dn).view(T, nh, hd).transpose(0, 1)
    k = proj(x, p, "k_proj", dn).view(T, nkv, hd).transpose(0, 1)
    v = proj(x, p, "v_proj", dn).view(T, nkv, hd).transpose(0, 1)
    if cfg["model_type"] == "qwen3":
        q = rms_norm(q, p["q_norm.weight"], cfg["rms_norm_eps"])
        k = rms_norm(k, p["k_norm.weight"], cfg["rms_norm_eps"])
    inv, attn_scale = mr.inv_freq_for(cfg, int(positions.max()) + 1)
    freqs = positions.float()[:, None] * inv[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = (emb.cos() * attn_scale).to(q.dtype), (emb.sin() * attn_scale).to(q.dtype)
    q = q * cos + mr.rotate_half(q) * sin
    k = k * cos + mr.rotate_half(k) * sin
    g = nh // nkv
    k = k[:, None].expand(nkv, g, T, hd).reshape(nh, T, hd)
    v = v[:, None].expand(nkv, g, T, hd).reshape(nh, T, hd)
    scores = (q @ k.transpose(1, 2)) * hd ** -0.5
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    visible = j <= i
    window = mr.window_for_layer(cfg, layer_idx)
    if window:
        visible = visible & (j > i - window)
    scores = scores.masked_fill(~visible, torch.finfo(scores.dtype).min)
    out = (torch.softmax(scores, dim=-1) @ v).transpose(0, 1).reshape(T, nh * hd)
    return proj(out, p, "o_proj", dn)


def forward_document(w, cfg, ids, dn):
    x = w["model.embed_tokens.weight"][ids]
    positions = torch.arange(len(ids))
    eps = cfg["rms_norm_eps"]
    for l in range(cfg["num_hidden_layers"]):
        p = mr.layer_params(w, l)
        x = x + attention(rms_norm(x, p["input_layernorm.weight"], eps), p, cfg, positions, l, dn)
        h = rms_norm(x, p["post_attention_layernorm.weight"], eps)
        x = x + proj(torch.nn.functional.silu(proj(h, p, "gate_proj", dn)) * proj(h, p, "up_proj", dn), p,
                     "down_proj", dn)
    return rms_norm(x, w["model.norm.weight"], eps)


def forward(weights, cfg, input_ids, position_ids, adapters, detach_norm=True):
    """Logits [rows, T, V] in the weights' dtype (float64 here; float32 only to measure the float32
    noise floor); rows are split into documents where position_ids restart at 0."""
    w = dict(weights)
    for name, ad in adapters.items():
        w[name + ".lora"] = ad
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    rows = []
    for r in range(input_ids.shape[0]):
        starts = [t for t in range(input_ids.shape[1]) if position_ids[r, t] == 0] + [input_ids.shape[1]]
        hs = [forward_document(w, cfg, input_ids[r, a:b], detach_norm) for a, b in zip(starts[:-1], starts[1:])]
        rows.append(torch.cat(hs, 0) @ head.t())
    return torch.stack(rows)


def label_count(micro):
    return sum(int((lab[:, 1:] != -100).sum()) for _, _, lab in micro)


def mean_loss(weights, cfg, micro, adapters, detach_norm=True):
    """Σ token CE over the micro-batches / trained labels of all of them."""
    total = 0.0
    for ids, pos, lab in micro:
        logits = forward(weights, cfg, ids, pos, adapters, detach_norm)
        total = total + torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                          lab[:, 1:].reshape(-1), ignore_index=-100,
                                                          reduction="sum")
    return total / label_count(micro)


def regulariser(weights64, adapters, gamma):
    """R = (γ/K) Σ_k ‖D_k D_kᵀ − I‖_F, D = diag(1/n)(W + sBA), n not detached."""
    terms = []
    for path, (A, B, _, s) in adapters.items():
        V = weights64[path + ".weight"] + s * (B @ A)
        D = V / V.norm(p=2, dim=1, keepdim=True)
        terms.append((D @ D.t() - torch.eye(D.shape[0], dtype=F64)).norm())
    return gamma / len(terms) * sum(terms)


# --------------------------------------------------------------------------------------------
# The hypergradient.

def norm_of(tensors):
    return math.sqrt(sum(float(t.pow(2).sum()) for t in tensors))


def hypergradient(weights, cfg, adapters, train_micro, val_micro, fd_alpha, exact=False):
    paths = list(adapters)
    theta = [t for p in paths for t in adapters[p][:2]]
    mags = [adapters[p][2] for p in paths]
    val_loss = mean_loss(weights, cfg, val_micro, adapters)
    grads = torch.autograd.grad(val_loss, theta + mags)
    v, g_dir = grads[:len(theta)], grads[len(theta):]
    v_norm = norm_of(v)
    eps = fd_alpha / (v_norm + 1e-15)

    def grad_m(sign):
        moved = {}
        for i, p in enumerate(paths):
            A, B, m, s = adapters[p]
            moved[p] = ((A + sign * eps * v[2 * i]).detach(), (B + sign * eps * v[2 * i + 1]).detach(), m, s)
        return torch.autograd.grad(mean_loss(weights, cfg, train_micro, moved), mags)

    g_plus, g_minus = grad_m(1.0), grad_m(-1.0)
    implicit = [(a - b) / (2 * eps) for a, b in zip(g_plus, g_minus)]
    # ‖g⁺ − g⁻‖ / ‖g⁺‖: how much of g± cancels; float32 noise in g± is amplified by its inverse.
    fd_ratio = norm_of([a - b for a, b in zip(g_plus, g_minus)]) / norm_of(g_plus)
    out = dict(val_loss=float(val_loss), v_norm=v_norm, eps=eps, g_dir=list(g_dir), implicit=implicit,
               h=[d - i for d, i in zip(g_dir, implicit)], fd_ratio=fd_ratio)
    if exact:
        # (∂/∂θ ∂L_tr/∂m)·v = ∂/∂m (∂L_tr/∂θ · v) for the true loss (norm in the graph), and the
        # same expression on PEFT's detached graph, which is NOT what the finite difference approximates.
        for key, detach in (("implicit_exact", False), ("implicit_exact_detached", True)):
            loss = mean_loss(weights, cfg, train_micro, adapters, detach_norm=detach)
            g_theta = torch.autograd.grad(loss, theta, create_graph=True)
            dot = sum((g * vk.detach()).sum() for g, vk in zip(g_theta, v))
            out[key] = list(torch.autograd.grad(dot, mags))
    return out


# --------------------------------------------------------------------------------------------
# Case set-up and output.

def load_model(outdir, name):
    mdir = os.path.join(os.path.dirname(os.path.abspath(outdir)), "model", "models", name)
    with open(os.path.join(mdir, "config.json")) as f:
        cfg = mr.fill_defaults(json.load(f))
    weights = {}
    for fn in sorted(os.listdir(mdir)):
        if fn.endswith(".safetensors"):
            weights.update({k: v.to(F64) for k, v in st_io.load(os.path.join(mdir, fn)).items()})
    return mdir, cfg, weights


def make_adapters(case, cfg, weights64, gen, perturbed):
    """float32 values (what the PEFT dir holds and the C++ side reads) -> float64 leaves.

    PEFT init: kaiming-uniform A, B = 0, m = ‖W‖_row. perturbed: B ~ 0.05·N(0, 1) and
    m = ‖W‖_row · (1 + 0.05·N(0, 1)), a state where every term of the hypergradient is non-zero.
    """
    scaling = case["alpha"] / (math.sqrt(case["r"]) if case["rslora"] else case["r"])
    adapters, named = {}, {}
    for l in range(cfg["num_hidden_layers"]):
        for t in case["targets"]:
            path = f"model.layers.{l}.{tr.PATHS[t]}"
            W = weights64[path + ".weight"].float()
            bound = 1.0 / math.sqrt(W.shape[1])
            A = (torch.rand(case["r"], W.shape[1], generator=gen) * 2 - 1) * bound
            m = W.norm(p=2, dim=1)
            if perturbed:
                B = 0.05 * torch.randn(W.shape[0], case["r"], generator=gen)
                m = m * (1 + 0.05 * torch.randn(W.shape[0], generator=gen))
            else:
                B = torch.zeros(W.shape[0], case["r"])
            key = "base_model.model." + path
            named[key + ".lora_A.weight"] = A
            named[key + ".lora_B.weight"] = B
            named[key + ".lora_magnitude_vector"] = m
            adapters[path] = tuple(x.to(F64).requires_grad_() for x in (A, B, m)) + (scaling,)
    return adapters, named


def write_adapter(cdir, case, named):
    adir = os.path.join(cdir, "initial_adapter")
    os.makedirs(adir, exist_ok=True)
    st_io.save(os.path.join(adir, "adapter_model.safetensors"), named, {"format": "pt"})
    with open(os.path.join(adir, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": case["model"],
                   "r": case["r"], "lora_alpha": case["alpha"], "lora_dropout": 0.0, "use_rslora": case["rslora"],
                   "use_dora": True, "target_modules": sorted(case["targets"]), "bias": "none",
                   "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True}, f, indent=2,
                  sort_keys=True)


def write_batches(cdir, train_steps, val_steps):
    """train_*: [steps, accum, rows, seq]; val_*: [upper steps, val_accum, rows, seq]; int32."""
    out = {}
    for prefix, steps in (("train_", train_steps), ("val_", val_steps)):
        for i, key in enumerate(("input_ids", "position_ids", "labels")):
            out[prefix + key] = torch.stack([torch.stack([mb[i] for mb in step]) for step in steps]).to(torch.int32)
    st_io.save(os.path.join(cdir, "batches.safetensors"), out)


def scalars(**kw):
    return {k: torch.tensor([float(v)], dtype=F64) for k, v in kw.items()}


def rel(a, b):
    return norm_of([x - y for x, y in zip(a, b)]) / norm_of(b)


def run_hyper(outdir, case, gen):
    mdir, cfg, weights = load_model(outdir, case["model"])
    adapters, named = make_adapters(case, cfg, weights, gen, perturbed=True)
    cdir = os.path.join(outdir, case["name"])
    write_adapter(cdir, case, named)
    train = [tr.micro_batch(cfg, gen) for _ in range(case["accum"])]
    val = [tr.micro_batch(cfg, gen) for _ in range(case["val_accum"])]
    write_batches(cdir, [train], [val])

    hg = hypergradient(weights, cfg, adapters, train, val, case["fd_alpha"], exact=True)
    fd_vs_exact = rel(hg["implicit"], hg["implicit_exact"])
    fd_vs_detached = rel(hg["implicit"], hg["implicit_exact_detached"])
    # Central difference, truncation O((ε‖v‖)²) = O(fd_alpha²): anything larger is a bug here.
    assert fd_vs_exact < 1e-3, f"{case['name']}: finite difference {fd_vs_exact:.2e} from the exact derivative"
    # The same computation in float32 PyTorch: the error float32 arithmetic alone leaves in h (the
    # finite difference cancels most of g±, amplifying their rounding noise), the yardstick for
    # bidora's float32 error.
    w32 = {k: v.float() for k, v in weights.items()}
    ad32 = {p: tuple(x.detach().float().requires_grad_() for x in ad[:3]) + (ad[3],) for p, ad in adapters.items()}
    hg32 = hypergradient(w32, cfg, ad32, train, val, case["fd_alpha"])
    f32_error = rel([h.double() for h in hg32["h"]], hg["h"])
    expected = scalars(val_loss=hg["val_loss"], v_norm=hg["v_norm"], eps=hg["eps"],
                       direct_norm=norm_of(hg["g_dir"]), implicit_norm=norm_of(hg["implicit"]),
                       hypergrad_norm=norm_of(hg["h"]), fd_vs_exact=fd_vs_exact,
                       fd_vs_exact_detached=fd_vs_detached, fd_ratio=hg["fd_ratio"], torch_f32_h_error=f32_error,
                       train_loss=float(mean_loss(weights, cfg, train, adapters)))
    for i, path in enumerate(adapters):
        key = "base_model.model." + path + ".lora_magnitude_vector"
        for name in ("h", "g_dir", "implicit", "implicit_exact", "implicit_exact_detached"):
            expected[(key if name == "h" else f"{name}.{key}")] = hg[name][i].detach().clone()
    st_io.save(os.path.join(cdir, "expected.safetensors"), expected)
    with open(os.path.join(cdir, "case.json"), "w") as f:
        json.dump({**case, "kind": "hypergradient", "model_dir": os.path.relpath(mdir, cdir),
                   "rows": tr.ROWS, "seq_len": tr.SEQ}, f, indent=2)
    print(f"  {case['name']}: |h| {norm_of(hg['h']):.4g} |g_dir| {norm_of(hg['g_dir']):.4g} "
          f"|implicit| {norm_of(hg['implicit']):.4g}; finite difference vs exact {fd_vs_exact:.2e} "
          f"(vs the detached-norm graph {fd_vs_detached:.2e}); |g+ - g-|/|g+| {hg['fd_ratio']:.2e}; "
          f"torch float32 h error {f32_error:.2e}")


def run_bilevel(outdir, case, gen):
    mdir, cfg, weights = load_model(outdir, case["model"])
    adapters, named = make_adapters(case, cfg, weights, gen, perturbed=False)
    cdir = os.path.join(outdir, case["name"])
    write_adapter(cdir, case, named)

    K, U = case["lower_steps"], case["upper_steps"]
    total = K * U
    upper = dict(upper_lr=case["lr"] * case["upper_lr_mult"], upper_warmup=case["warmup"] // K,
                 upper_total_steps=total // K, total_lower_steps=total)
    theta = [t for ad in adapters.values() for t in ad[:2]]
    mags = [ad[2] for ad in adapters.values()]
    betas, eps = (ADAM["adam_beta1"], ADAM["adam_beta2"]), ADAM["adam_epsilon"]
    lower_opt = torch.optim.AdamW(theta, lr=case["lr"], betas=betas, eps=eps, weight_decay=case["weight_decay"])
    lower_sched = torch.optim.lr_scheduler.LambdaLR(lower_opt, tr.lr_lambda(case["schedule"], case["warmup"], total))
    upper_opt = torch.optim.AdamW(mags, lr=upper["upper_lr"], betas=betas, eps=eps,
                                  weight_decay=case["weight_decay"])
    upper_sched = torch.optim.lr_scheduler.LambdaLR(
        upper_opt, tr.lr_lambda(case["schedule"], upper["upper_warmup"], upper["upper_total_steps"]))

    rec = {k: [] for k in ("lower_loss", "lower_reg", "lower_grad_norm", "lower_lr", "val_loss", "v_norm", "eps",
                           "direct_norm", "implicit_norm", "hypergrad_norm", "upper_lr")}
    train_steps, val_steps = [], []
    for _ in range(U):
        for _ in range(K):
            micro = [tr.micro_batch(cfg, gen) for _ in range(case["accum"])]
            train_steps.append(micro)
            count = label_count(micro)
            lower_opt.zero_grad()
            ce = 0.0
            for ids, pos, lab in micro:
                logits = forward(weights, cfg, ids, pos, adapters)
                loss_sum = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                             lab[:, 1:].reshape(-1), ignore_index=-100,
                                                             reduction="sum")
                (loss_sum / count).backward()
                ce += float(loss_sum)
            reg = regulariser(weights, adapters, case["gamma"])
            reg.backward()
            rec["lower_lr"].append(lower_sched.get_last_lr()[0])
            rec["lower_grad_norm"].append(float(torch.nn.utils.clip_grad_norm_(theta, case["max_grad_norm"])))
            rec["lower_loss"].append(ce / count + float(reg))
            rec["lower_reg"].append(float(reg))
            lower_opt.step()
            lower_sched.step()
        val = [tr.micro_batch(cfg, gen) for _ in range(case["val_accum"])]
        val_steps.append(val)
        hg = hypergradient(weights, cfg, adapters, train_steps[-1], val, case["fd_alpha"])
        for m, h in zip(mags, hg["h"]):
            m.grad = h.clone()  # replaces what the lower backward passes left in m.grad
        for k in ("val_loss", "v_norm", "eps"):
            rec[k].append(hg[k])
        rec["direct_norm"].append(norm_of(hg["g_dir"]))
        rec["implicit_norm"].append(norm_of(hg["implicit"]))
        rec["upper_lr"].append(upper_sched.get_last_lr()[0])
        rec["hypergrad_norm"].append(float(torch.nn.utils.clip_grad_norm_(mags, case["upper_max_grad_norm"])))
        upper_opt.step()
        upper_sched.step()

    write_batches(cdir, train_steps, val_steps)
    expected = {k: torch.tensor(v, dtype=F64) for k, v in rec.items()}
    keys = list(named)  # same order as the adapter tensors: A, B, m per linear
    for key, t in zip(keys, [t for ad in adapters.values() for t in ad[:3]]):
        expected[key] = t.detach().clone()
    st_io.save(os.path.join(cdir, "expected.safetensors"), expected)
    with open(os.path.join(cdir, "case.json"), "w") as f:
        json.dump({**case, **ADAM, **upper, "kind": "bilevel_steps", "model_dir": os.path.relpath(mdir, cdir),
                   "rows": tr.ROWS, "seq_len": tr.SEQ}, f, indent=2)
    print(f"  {case['name']}: lower losses {', '.join(f'{x:.5f}' for x in rec['lower_loss'])}; "
          f"val losses {', '.join(f'{x:.5f}' for x in rec['val_loss'])}")


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2024)
    for case in HYPER_CASES:
        run_hyper(out, case, gen)
    run_bilevel(out, BILEVEL_CASE, gen)
    print(f"bidora_reference: wrote {len(HYPER_CASES) + 1} cases to {out}")


if __name__ == "__main__":
    main()
