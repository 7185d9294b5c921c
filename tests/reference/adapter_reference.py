#!/usr/bin/python3
"""Reference data for bidora's LoRA / rsLoRA / DoRA layers (src/adapters), written with PyTorch.

Usage: adapter_reference.py <outdir>     (the tests read <reference_dir()>/adapters/...)

The peft package is not installed here, so PEFT's forward is re-stated in plain torch following
shared/reference/formats.md §2.3-2.4 and PEFT's tuners/lora/dora.py:
  lora   = (x @ A.T) @ B.T * scaling,  scaling = alpha / r  (alpha / sqrt(r) with rsLoRA)
  LoRA:  y = x @ W.T + lora
  DoRA:  n = ||W + scaling * B @ A||_row, DETACHED;  g = m / n
         y = x @ W.T + (g - 1) * (x @ W.T) + g * lora
Gradients come from autograd of L = sum(dy * y). Everything is float32, as PEFT trains adapters.

Outputs:
  cases/<name>.safetensors  inputs W x A B m dy, outputs y dA dB dm dx norm; metadata r, alpha,
                            use_rslora, use_dora
  peft_dir/                 a PEFT-style adapter directory (full PEFT 0.19 key set in the config,
                            ".default" tensor names, BF16 tensors) for the reader test, with the
                            frozen weights it applies to in peft_base.safetensors
  expected_adapter_config.json  json.dumps(core keys, indent=2, sort_keys=True): the exact text
                            bidora's writer must produce for the same settings
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402


def reference_case(W, x, A, B, m, dy, alpha, use_rslora, use_dora):
    r = A.shape[0]
    scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
    A = A.clone().requires_grad_(True)
    B = B.clone().requires_grad_(True)
    m = m.clone().requires_grad_(True)
    x = x.clone().requires_grad_(True)
    base = x @ W.T
    lora = (x @ A.T) @ B.T
    norm = None
    if use_dora:
        # PEFT dora.py: weight_norm computed from W + scaling * lora_weight, then .detach().
        norm = (W + scaling * (B @ A)).norm(p=2, dim=1).detach()
        g = (m / norm).view(1, -1)
        y = base + (g - 1) * (x @ W.T) + g * lora * scaling
    else:
        y = base + lora * scaling
    (y * dy).sum().backward()
    out = {"y": y.detach(), "dA": A.grad, "dB": B.grad, "dx": x.grad}
    if use_dora:
        out["dm"] = m.grad
        out["norm"] = norm
    return out


def write_cases(outdir):
    os.makedirs(os.path.join(outdir, "cases"), exist_ok=True)
    cases = [
        ("lora", 4, 8.0, False, False),
        ("rslora", 8, 16.0, True, False),
        ("dora", 4, 8.0, False, True),
        ("dora_rslora", 8, 12.0, True, True),
    ]
    n_tok, d_in, d_out = 7, 48, 40
    for i, (name, r, alpha, rs, dora) in enumerate(cases):
        g = torch.Generator().manual_seed(100 + i)
        W = torch.randn(d_out, d_in, generator=g) * 0.2
        x = torch.randn(n_tok, d_in, generator=g)
        bound = 1.0 / math.sqrt(d_in)
        A = (torch.rand(r, d_in, generator=g) * 2 - 1) * bound  # PEFT's kaiming-uniform range
        B = torch.randn(d_out, r, generator=g) * 0.1  # trained-looking, so every term is non-zero
        m = W.norm(p=2, dim=1) * (0.8 + 0.4 * torch.rand(d_out, generator=g))
        dy = torch.randn(n_tok, d_out, generator=g)
        res = reference_case(W, x, A, B, m, dy, alpha, rs, dora)
        tensors = {"W": W, "x": x, "A": A, "B": B, "m": m, "dy": dy}
        tensors.update({k: v.contiguous() for k, v in res.items()})
        meta = {"r": str(r), "alpha": repr(alpha), "use_rslora": str(rs).lower(), "use_dora": str(dora).lower()}
        st_io.save(os.path.join(outdir, "cases", name + ".safetensors"), tensors, meta)


def core_config(r, alpha, dropout, targets, use_dora, use_rslora, base):
    """The core adapter_config.json keys (formats.md §2.1 "for the widest compatibility")."""
    return {
        "alpha_pattern": {}, "base_model_name_or_path": base, "bias": "none", "fan_in_fan_out": False,
        "inference_mode": True, "init_lora_weights": True, "layers_pattern": None, "layers_to_transform": None,
        "lora_alpha": alpha, "lora_dropout": dropout, "modules_to_save": None, "peft_type": "LORA", "r": r,
        "rank_pattern": {}, "revision": None, "target_modules": sorted(targets), "task_type": "CAUSAL_LM",
        "use_dora": use_dora, "use_rslora": use_rslora,
    }


def write_peft_dir(outdir):
    """An adapter as a PEFT 0.19 run would save it, but with BF16 tensors and '.default' names."""
    layers, hidden, r = 2, 32, 4
    g = torch.Generator().manual_seed(7)
    base, adapter = {}, {}
    for layer in range(layers):
        for mod in ("q_proj", "v_proj"):
            out = hidden if mod == "q_proj" else 16  # v_proj of a GQA model is narrower
            W = torch.randn(out, hidden, generator=g) * 0.1
            base[f"model.layers.{layer}.self_attn.{mod}.weight"] = W
            p = f"base_model.model.model.layers.{layer}.self_attn.{mod}."
            adapter[p + "lora_A.default.weight"] = torch.randn(r, hidden, generator=g).to(torch.bfloat16)
            adapter[p + "lora_B.default.weight"] = torch.randn(out, r, generator=g).to(torch.bfloat16)
            adapter[p + "lora_magnitude_vector"] = W.norm(dim=1).to(torch.bfloat16)
    d = os.path.join(outdir, "peft_dir")
    os.makedirs(d, exist_ok=True)
    cfg = core_config(r, 8, 0.05, ["q_proj", "v_proj"], True, False, "tiny/model")
    # Keys newer PEFT versions add, with their defaults: the reader must accept them.
    cfg.update({"alora_invocation_tokens": None, "arrow_config": None, "corda_config": None, "eva_config": None,
                "exclude_modules": None, "loftq_config": {}, "lora_bias": False, "megatron_config": None,
                "megatron_core": "megatron.core", "peft_version": "0.19.1", "qalora_group_size": 16,
                "target_parameters": None, "trainable_token_indices": None, "use_qalora": False})
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True))
    st_io.save(os.path.join(d, "adapter_model.safetensors"), adapter, {"format": "pt"})
    st_io.save(os.path.join(outdir, "peft_base.safetensors"), base, {"format": "pt"})

    # The text bidora must write for: DoRA, r=16, alpha=32, dropout 0.05, rsLoRA, all seven modules.
    expected = core_config(16, 32, 0.05, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                          "down_proj"], True, True, "Qwen/Qwen2.5-0.5B")
    with open(os.path.join(outdir, "expected_adapter_config.json"), "w") as f:
        f.write(json.dumps(expected, indent=2, sort_keys=True))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: adapter_reference.py <outdir>")
    outdir = sys.argv[1]
    torch.manual_seed(0)
    torch.set_num_threads(1)
    write_cases(outdir)
    write_peft_dir(outdir)
    print(f"adapter references written to {outdir}")


if __name__ == "__main__":
    main()
