#!/usr/bin/python3
"""Checks a model directory written by `bidora merge` against PEFT's merge re-stated in PyTorch,
computed from the same base model and adapter files.

  check_merge.py BASE_DIR ADAPTER_DIR MERGED_DIR [BASE_DIR ADAPTER_DIR MERGED_DIR ...]

PEFT (tuners/lora/layer.py Linear.merge, get_delta_weight; dora.py get_weight_norm), per adapted
Linear with s = lora_alpha / r (or / sqrt(r) with use_rslora), here in float64:
  LoRA:  W' = W + s * B @ A
  DoRA:  W' = (m / ||W + s * B @ A||_row) * (W + s * B @ A)
The adapter is read by peft_loader.py (PeftModel.from_pretrained's rules). Checked:
  - the merged directory holds exactly the base's tensors (tied embeddings: no lm_head.weight), all
    floating ones in config.json's torch_dtype; the sharded form's index (total_size, weight_map);
  - tensors not adapted equal torch's .to(dtype) of the base tensor exactly (torch's rounding);
  - merged tensors are within one unit in the last place of the output dtype of the float64 merge;
  - logits of the merged model (model_reference.forward): within 1e-4 of the model torch would
    save (PEFT's merge rounded to the dtype); against the base with the adapter, 1e-4 for float32
    output, 10 units of roundoff of the largest logit for bfloat16 / float16; and the adapter must
    move the logits by much more than that;
  - config.json equals the base's except torch_dtype.

Exit status: 0 all checks pass, 1 a check failed, 77 /usr/bin/python3 lacks torch.
"""
import json
import os
import sys

try:
    import numpy  # noqa: F401  (st_io needs it)
    import torch
except ImportError as e:
    print(f"check_merge: skipped, no PyTorch reference available ({e})")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model_reference as mr  # noqa: E402
import peft_loader  # noqa: E402
import st_io  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Significand bits after the point: one ulp is 2^-BITS relative to the leading power of two.
BITS = {torch.float32: 23, torch.bfloat16: 7, torch.float16: 10}
SMALLEST = {torch.float32: 2.0 ** -149, torch.bfloat16: 2.0 ** -133, torch.float16: 2.0 ** -24}
INDEX = "model.safetensors.index.json"


class CheckFailed(Exception):
    pass


def load_dir(path):
    """(config dict, {name: tensor as stored}, {name: shard file}, index dict or None)."""
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    index_path = os.path.join(path, INDEX)
    index = None
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
        files = sorted(set(index["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors, owner = {}, {}
    for fn in files:
        metadata, _ = peft_loader.read_safetensors_header(os.path.join(path, fn))
        if metadata != {"format": "pt"}:
            raise CheckFailed(f"{path}/{fn}: metadata {metadata}, expected {{'format': 'pt'}}")
        for k, v in st_io.load(os.path.join(path, fn)).items():
            if k in tensors:
                raise CheckFailed(f"{path}: tensor {k} in both {owner[k]} and {fn}")
            tensors[k], owner[k] = v, fn
    return cfg, tensors, owner, index


def nbytes(t):
    return t.numel() * t.element_size()


def check_triple(base_dir, adapter_dir, merged_dir):
    base_cfg, base, _, _ = load_dir(base_dir)
    merged_cfg, merged, owner, index = load_dir(merged_dir)
    name = os.path.basename(os.path.dirname(os.path.abspath(merged_dir))) + "/" + os.path.basename(merged_dir)

    dt = DTYPES.get(merged_cfg.get("torch_dtype"))
    if dt is None:
        raise CheckFailed(f"{merged_dir}/config.json: torch_dtype {merged_cfg.get('torch_dtype')!r}")
    expected_cfg = dict(base_cfg, torch_dtype=merged_cfg["torch_dtype"])
    if merged_cfg != expected_cfg:
        raise CheckFailed(f"{merged_dir}/config.json differs from the base's beyond torch_dtype")
    if set(merged) != set(base):
        raise CheckFailed(f"{merged_dir}: tensors {sorted(set(merged) ^ set(base))} differ from the base's")
    if base_cfg.get("tie_word_embeddings") and "lm_head.weight" in merged:
        raise CheckFailed(f"{merged_dir}: tied embeddings but lm_head.weight written")
    if index is not None:
        total = sum(nbytes(t) for t in merged.values())
        if index.get("metadata") != {"total_size": total}:
            raise CheckFailed(f"{merged_dir}/{INDEX}: metadata {index.get('metadata')}, total_size should be {total}")
        if index["weight_map"] != owner:
            raise CheckFailed(f"{merged_dir}/{INDEX}: weight_map does not match the shards' contents")

    cfg = mr.fill_defaults(base_cfg)
    base_f = {k: v.float() for k, v in base.items()}
    adapters, settings, modules = peft_loader.load_peft_adapter(adapter_dir, cfg, base_f)

    worst_ulps, inexact = 0.0, 0
    torch_merged = {}  # PEFT's merge as torch would save it in dt
    for key, got in merged.items():
        if got.dtype != dt:
            raise CheckFailed(f"{merged_dir}: {key} is {got.dtype}, config.json says {dt}")
        mod = key[:-len(".weight")] if key.endswith(".weight") else None
        if mod not in adapters:
            want = base[key].to(dt)
            torch_merged[key] = want
            if not torch.equal(got.view(torch.int16 if dt != torch.float32 else torch.int32),
                               want.view(torch.int16 if dt != torch.float32 else torch.int32)):
                raise CheckFailed(f"{merged_dir}: {key} is not the base tensor as torch converts it to {dt}")
            continue
        A, B, m, s = adapters[mod]
        W = base[key].double()
        V = W + s * (B.double() @ A.double())
        if m is not None:
            V = (m.double() / torch.linalg.norm(V, dim=1)).view(-1, 1) * V
        ulp = torch.exp2(torch.floor(torch.log2(V.abs().clamp_min(SMALLEST[dt]))) - BITS[dt])
        ulps = float(((got.double() - V).abs() / ulp.clamp_min(SMALLEST[dt])).max())
        worst_ulps = max(worst_ulps, ulps)
        torch_merged[key] = V.to(dt)
        inexact += int((got != torch_merged[key]).sum())
        if ulps > 1.0:
            raise CheckFailed(f"{merged_dir}: {key} is {ulps:.2f} ulps ({dt}) from PEFT's merge")

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg["vocab_size"], (2, 10), generator=gen)
    pos = torch.arange(10).repeat(2, 1)
    with torch.no_grad():
        want = mr.forward(base_f, cfg, ids, pos, torch.float32, adapters)
        plain = mr.forward(base_f, cfg, ids, pos, torch.float32)
        got = mr.forward({k: v.float() for k, v in merged.items()}, cfg, ids, pos, torch.float32)
        peft = mr.forward({k: v.float() for k, v in torch_merged.items()}, cfg, ids, pos, torch.float32)
    # Against the model torch would save (same weights when every value is its correctly rounded
    # merge): float32 noise only. Against base + adapter: plus the output dtype's rounding of every
    # weight, bounded by 10 units of its roundoff (2^-(BITS+1)) of the largest logit.
    err_peft = float((got - peft).abs().max())
    err = float((got - want).abs().max())
    effect = float((want - plain).abs().max())
    bound = 1e-4 if dt == torch.float32 else 10 * 2.0 ** -(BITS[dt] + 1) * float(want.abs().max())
    kind = "DoRA" if settings["use_dora"] else "LoRA"
    print(f"{name}: {kind} rslora={str(settings['use_rslora']).lower()} {len(modules)} linears -> {dt}, "
          f"{len(set(owner.values()))} file(s): merged weights within {worst_ulps:.2f} ulp of PEFT's merge "
          f"({inexact} values not its correctly rounded result); logits {err_peft:.2e} from torch's merged "
          f"model, {err:.2e} from base+adapter (bound {bound:.1e}; the adapter moves them by {effect:.3f})")
    if inexact == 0 and not err_peft <= 1e-4:
        raise CheckFailed(f"{merged_dir}: logits differ from torch's merged model by {err_peft:.3e} > 1e-4")
    if not err <= bound:
        raise CheckFailed(f"{merged_dir}: merged logits differ from base+adapter by {err:.3e} > {bound:.1e}")
    if not effect >= 10 * bound:
        raise CheckFailed(f"{merged_dir}: the adapter moves the logits by only {effect:.3e}")


def main():
    args = sys.argv[1:]
    if not args or len(args) % 3:
        print(__doc__)
        return 2
    try:
        for i in range(0, len(args), 3):
            check_triple(*args[i:i + 3])
    except (CheckFailed, peft_loader.LoaderError) as e:
        print(f"check_merge: FAILED: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
