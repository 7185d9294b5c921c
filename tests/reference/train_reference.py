#!/usr/bin/python3
"""PyTorch reference for bidora's training step (issue 4): PEFT LoRA / rsLoRA / DoRA adapters on
the tiny models of model_reference.py, trained for a few optimiser steps exactly as HF Trainer
does it:

  * loss per optimiser step = Σ over its micro-batches of the summed token cross-entropy,
    divided by the number of non-ignored (shifted) labels in the whole step;
  * torch.nn.utils.clip_grad_norm_(params, max_grad_norm) (the pre-clip norm is recorded);
  * torch.optim.AdamW(betas=(0.9, 0.999), eps=1e-8, weight_decay) — HF Trainer decays every
    parameter that is not a bias or a norm weight, so A, B and DoRA magnitudes all decay;
  * transformers' LambdaLR schedules: linear warmup, then linear or cosine decay to 0.

Dropout is 0 here (the masks are bidora's own counter-based ones; its dropout is checked by
finite differences). The initial adapter (PEFT init: kaiming-uniform A, B = 0, m = ‖W‖_row) is
written as a PEFT adapter directory, so the C++ run starts from exactly the same values.

Usage: train_reference.py OUTDIR   (model_reference.py must have written OUTDIR/../model)
Writes OUTDIR/<case>/{initial_adapter/, batches.safetensors, expected.safetensors, train.json}.
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_reference as mr  # noqa: E402
import st_io  # noqa: E402

PATHS = {"q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj", "v_proj": "self_attn.v_proj",
         "o_proj": "self_attn.o_proj", "gate_proj": "mlp.gate_proj", "up_proj": "mlp.up_proj",
         "down_proj": "mlp.down_proj"}
ALL = list(PATHS)

CASES = [
    dict(name="llama_lora", model="llama_f32", method="lora", r=4, alpha=8, rslora=False, targets=["q_proj", "v_proj"],
         lr=2e-2, weight_decay=0.01, warmup=2, schedule="cosine", steps=6, accum=2, max_grad_norm=1.0),
    dict(name="qwen3_rslora_all", model="qwen3_headdim_f32", method="lora", r=4, alpha=8, rslora=True, targets=ALL,
         lr=1e-2, weight_decay=0.0, warmup=1, schedule="linear", steps=5, accum=2, max_grad_norm=0.5),
    dict(name="qwen2_dora", model="qwen2_tied_sharded_f32", method="dora", r=4, alpha=8, rslora=False,
         targets=["q_proj", "k_proj", "v_proj", "o_proj"], lr=2e-2, weight_decay=0.01, warmup=2,
         schedule="cosine", steps=6, accum=2, max_grad_norm=1.0),
]
ROWS, SEQ = 2, 10


def lr_lambda(kind, warmup, total):
    def f(step):
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "linear":
            return max(0.0, (total - step) / max(1, total - warmup))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))
    return f


def micro_batch(cfg, gen):
    ids = torch.randint(0, cfg["vocab_size"], (ROWS, SEQ), generator=gen)
    pos = torch.zeros(ROWS, SEQ, dtype=torch.int64)
    pos[0] = torch.arange(SEQ)
    pos[1, :6] = torch.arange(6)
    pos[1, 6:] = torch.arange(SEQ - 6)
    labels = ids.clone()
    labels[1, pos[1] == 0] = -100
    labels[0, 2] = -100
    return ids, pos, labels


def run(outdir, case, gen):
    mdir = os.path.join(os.path.dirname(os.path.abspath(outdir)), "model", "models", case["model"])
    with open(os.path.join(mdir, "config.json")) as f:
        cfg = mr.fill_defaults(json.load(f))
    weights = {}
    for fn in sorted(os.listdir(mdir)):
        if fn.endswith(".safetensors"):
            weights.update({k: v.float() for k, v in st_io.load(os.path.join(mdir, fn)).items()})
    scaling = case["alpha"] / (math.sqrt(case["r"]) if case["rslora"] else case["r"])

    adapters, params, named = {}, [], {}
    for l in range(cfg["num_hidden_layers"]):
        for t in case["targets"]:
            path = f"model.layers.{l}.{PATHS[t]}"
            W = weights[path + ".weight"]
            bound = 1.0 / math.sqrt(W.shape[1])
            A = ((torch.rand(case["r"], W.shape[1], generator=gen) * 2 - 1) * bound).requires_grad_()
            B = torch.zeros(W.shape[0], case["r"], requires_grad=True)
            m = W.norm(p=2, dim=1).clone().requires_grad_() if case["method"] == "dora" else None
            adapters[path] = (A, B, m, scaling)
            key = "base_model.model." + path
            named[key + ".lora_A.weight"] = A
            named[key + ".lora_B.weight"] = B
            params += [A, B]
            if m is not None:
                named[key + ".lora_magnitude_vector"] = m
                params.append(m)

    cdir = os.path.join(outdir, case["name"])
    adir = os.path.join(cdir, "initial_adapter")
    os.makedirs(adir, exist_ok=True)
    st_io.save(os.path.join(adir, "adapter_model.safetensors"), {k: v.detach().clone() for k, v in named.items()},
               {"format": "pt"})
    with open(os.path.join(adir, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": case["model"],
                   "r": case["r"], "lora_alpha": case["alpha"], "lora_dropout": 0.0, "use_rslora": case["rslora"],
                   "use_dora": case["method"] == "dora", "target_modules": sorted(case["targets"]), "bias": "none",
                   "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True}, f, indent=2,
                  sort_keys=True)

    opt = torch.optim.AdamW(params, lr=case["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=case["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(case["schedule"], case["warmup"], case["steps"]))
    ids_all, pos_all, lab_all, losses, norms, lrs = [], [], [], [], [], []
    for step in range(case["steps"]):
        mbs = [micro_batch(cfg, gen) for _ in range(case["accum"])]
        count = sum(int((lab[:, 1:] != -100).sum()) for _, _, lab in mbs)
        opt.zero_grad()
        total = 0.0
        for ids, pos, lab in mbs:
            logits = mr.forward(weights, cfg, ids, pos, torch.float32, adapters)
            loss_sum = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                         lab[:, 1:].reshape(-1), ignore_index=-100, reduction="sum")
            (loss_sum / count).backward()
            total += float(loss_sum)
            ids_all.append(ids)
            pos_all.append(pos)
            lab_all.append(lab)
        lrs.append(sched.get_last_lr()[0])
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, case["max_grad_norm"])))
        losses.append(total / count)
        opt.step()
        sched.step()

    shape = (case["steps"], case["accum"], ROWS, SEQ)
    st_io.save(os.path.join(cdir, "batches.safetensors"),
               {"input_ids": torch.stack(ids_all).reshape(shape).to(torch.int32),
                "position_ids": torch.stack(pos_all).reshape(shape).to(torch.int32),
                "labels": torch.stack(lab_all).reshape(shape).to(torch.int32)})
    expected = {k: v.detach().clone() for k, v in named.items()}
    expected["step_loss"] = torch.tensor(losses, dtype=torch.float64)
    expected["grad_norm"] = torch.tensor(norms, dtype=torch.float64)
    expected["lr"] = torch.tensor(lrs, dtype=torch.float64)
    st_io.save(os.path.join(cdir, "expected.safetensors"), expected)
    with open(os.path.join(cdir, "train.json"), "w") as f:
        json.dump({**case, "model_dir": os.path.relpath(mdir, cdir), "adam_beta1": 0.9, "adam_beta2": 0.999,
                   "adam_epsilon": 1e-8, "rows": ROWS, "seq_len": SEQ}, f, indent=2)


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(99)
    for case in CASES:
        run(out, case, gen)
    print(f"train_reference: wrote {len(CASES)} cases to {out}")


if __name__ == "__main__":
    main()
