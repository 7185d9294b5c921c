#!/usr/bin/python3
"""Checks that an adapter written by bidora loads in the reference's PEFT-format loader
(peft_loader.py) and gives the same logits as bidora computed with it.

  check_peft_export.py MODEL_DIR ADAPTER_DIR LOGITS_FILE     one adapter
  check_peft_export.py --all [--fallback-reference-dir DIR] [--self-test]
      every case the PeftExport gtest cases (tests/adapters/test_peft_export.cpp) wrote to
      <reference dir>/peft_export/<case>/, with the model <reference dir>/model/models/<model>.
      The reference dir is $BIDORA_REFERENCE_DIR, else DIR (as tests/test_support.cpp finds it).
      --self-test also feeds the loader and the comparison deliberately broken copies of the
      written adapters (a renamed key, a transposed tensor, a wrong alpha, ...) and fails unless
      every one is caught.

LOGITS_FILE is a safetensors file with input_ids and position_ids [rows, T] (I32), bidora's logits
[rows, T, V] (F32) and metadata "model" and "storage". Only f32 storage is compared (bound 1e-4,
as the decoder-vs-PyTorch tests).

Exit status: 0 all within the bound, 1 a check failed, 77 /usr/bin/python3 lacks torch (ctest
SKIP_RETURN_CODE).
"""
import argparse
import copy
import json
import os
import sys

try:
    import numpy  # noqa: F401  (st_io needs it)
    import torch
except ImportError as e:
    print(f"check_peft_export: skipped, no PyTorch reference available ({e})")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model_reference as mr  # noqa: E402
import peft_loader  # noqa: E402
import st_io  # noqa: E402

TOL_F32 = 1e-4
LOGITS_FILE = "bidora_logits.safetensors"
# The adapter must move the logits by far more than the bound, or the comparison could not tell
# a correct adapter from one that is silently not applied.
MIN_EFFECT = 100 * TOL_F32


class CheckFailed(Exception):
    pass


def load_model_dir(path):
    """config.json (with model_reference's defaults) and the weights as float32, single or sharded."""
    with open(os.path.join(path, "config.json")) as f:
        cfg = mr.fill_defaults(json.load(f))
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    weights = {}
    for fn in files:
        weights.update({k: v.float() for k, v in st_io.load(os.path.join(path, fn)).items()})
    return cfg, weights


def load_logits_file(path):
    metadata, header = peft_loader.read_safetensors_header(path)
    t = st_io.load(path)
    for key, dtype in (("input_ids", "I32"), ("position_ids", "I32"), ("logits", "F32")):
        if key not in header or header[key]["dtype"] != dtype:
            raise CheckFailed(f"{path}: expected tensor {key} of dtype {dtype}")
    return metadata, t["input_ids"].long(), t["position_ids"].long(), t["logits"]


def check_saved_form(adapter_dir, tensors, dtypes, metadata):
    """What PEFT's save_pretrained would write: saved key names (no adapter name), F32, format pt."""
    src = os.path.join(adapter_dir, peft_loader.WEIGHTS_FILE)
    for key in tensors:
        if peft_loader.saved_key(peft_loader.in_memory_key(key)) != key:
            raise CheckFailed(f'{src}: tensor "{key}" is not in the form PEFT saves '
                              f'("{peft_loader.saved_key(peft_loader.in_memory_key(key))}")')
        if dtypes[key] != "F32":
            raise CheckFailed(f'{src}: tensor "{key}" is {dtypes[key]}; PEFT stores adapters as F32')
    if metadata != {"format": "pt"}:
        raise CheckFailed(f'{src}: metadata {metadata}, expected {{"format": "pt"}} (as PEFT writes)')


def compare(label, cfg, weights, raw_config, tensors, ids, pos, bidora_logits, source, base_logits=None):
    """Max abs logit error of bidora against the reference with the adapter as loaded from (raw_config, tensors)."""
    adapters, settings, modules = peft_loader.adapters_from_state(raw_config, tensors, cfg, weights, source)
    with torch.no_grad():
        ref = mr.forward(weights, cfg, ids, pos, torch.float32, adapters)
        if base_logits is None:
            base_logits = mr.forward(weights, cfg, ids, pos, torch.float32)
    if ref.shape != bidora_logits.shape:
        raise CheckFailed(f"{label}: logits shape {list(bidora_logits.shape)}, reference {list(ref.shape)}")
    err = float((bidora_logits - ref).abs().max())
    effect = float((ref - base_logits).abs().max())
    return err, effect, settings, modules, base_logits


def check_case(label, model_dir, adapter_dir, logits_path, self_test_done=None):
    """self_test_done: None, or the variants (LoRA / DoRA) already self-tested, to which this case's is added
    unless it is there already (one case of each is enough: the broken variants test the loader)."""
    metadata, ids, pos, bidora_logits = load_logits_file(logits_path)
    if metadata.get("storage", "f32") != "f32":
        raise CheckFailed(f"{logits_path}: storage {metadata['storage']!r}; only f32 storage is compared")
    cfg, weights = load_model_dir(model_dir)
    raw, tensors, st_meta, dtypes = peft_loader.read_adapter_dir(adapter_dir)
    check_saved_form(adapter_dir, tensors, dtypes, st_meta)
    err, effect, settings, modules, base = compare(label, cfg, weights, raw, tensors, ids, pos, bidora_logits,
                                                   adapter_dir)
    kind = "DoRA" if settings["use_dora"] else "LoRA"
    print(f"{label}: {os.path.basename(model_dir)} {kind} r={settings['r']} alpha={settings['lora_alpha']} "
          f"rslora={str(settings['use_rslora']).lower()} scaling={peft_loader.scaling_for(settings):.6g}, "
          f"{len(modules)} adapted linears: max |logit error| = {err:.3e} (bound {TOL_F32:.0e}; "
          f"the adapter moves logits by {effect:.3f})")
    if not err <= TOL_F32:
        raise CheckFailed(f"{label}: bidora's logits differ from the reference's with the adapter loaded from "
                          f"{adapter_dir} by {err:.3e} > {TOL_F32:.0e}")
    if not effect >= MIN_EFFECT:
        raise CheckFailed(f"{label}: the adapter moves the reference logits by only {effect:.3e} "
                          f"(< {MIN_EFFECT:.0e}): the comparison cannot show that it is applied")
    if self_test_done is not None and kind not in self_test_done:
        run_self_test(label, cfg, weights, raw, tensors, ids, pos, bidora_logits, adapter_dir, settings, base)
        self_test_done.add(kind)
    return err


def mutations(raw, tensors, settings, weights):
    """(description, config, tensors) for writer mistakes the check must catch."""
    first = lambda suffix: next(k for k in sorted(tensors) if k.endswith(suffix))  # noqa: E731
    a_key, b_key = first(".lora_A.weight"), first(".lora_B.weight")

    def with_tensors(**changes):
        t = dict(tensors)
        for old, new in changes.get("rename", {}).items():
            t[new] = t.pop(old)
        t.update(changes.get("replace", {}))
        for k in changes.get("drop", []):
            del t[k]
        return t

    def with_config(**changes):
        c = copy.deepcopy(raw)
        c.update(changes)
        return c

    B = tensors[b_key]
    out = [
        ("a key misspelt (lora_a)", raw, with_tensors(rename={a_key: a_key.replace("lora_A", "lora_a")})),
        ("a key without the base_model.model. prefix",
         raw, with_tensors(rename={a_key: a_key[len(peft_loader.KEY_PREFIX):]})),
        ("a key for the wrong layer", raw, with_tensors(rename={a_key: a_key.replace(".layers.0.", ".layers.7.")})),
        ("an extra tensor", raw, with_tensors(replace={a_key.replace("lora_A", "lora_C"): tensors[a_key]})),
        ("lora_B stored transposed", raw, with_tensors(replace={b_key: B.t().contiguous()})),
        ("lora_B data in column-major order under the right shape",
         raw, with_tensors(replace={b_key: B.t().contiguous().reshape(B.shape)})),
        ("lora_B rows out of order", raw, with_tensors(replace={b_key: torch.roll(B, 1, 0)})),
        ("lora_alpha doubled", with_config(lora_alpha=settings["lora_alpha"] * 2), tensors),
        ("use_rslora flipped", with_config(use_rslora=not settings["use_rslora"]), tensors),
        ("r written as a string", with_config(r=str(settings["r"])), tensors),
        ("use_dora flipped", with_config(use_dora=not settings["use_dora"]), tensors),
        ("a misspelt config key", {**{k: v for k, v in raw.items() if k != "use_rslora"},
                                   "use_rs_lora": settings["use_rslora"]}, tensors),
        ("a targeted module dropped from target_modules",
         with_config(target_modules=sorted(raw["target_modules"])[1:]), tensors),
        ("a targeted module's tensors missing", raw, with_tensors(drop=[a_key])),
        # PEFT (>= 0.15) loads these, but does not write them: the file is not what PEFT saves.
        ("lora_A under its in-memory name (.default)",
         raw, with_tensors(rename={a_key: a_key.replace(".lora_A.weight", ".lora_A.default.weight")})),
        ("lora_A stored as BF16", raw, with_tensors(replace={a_key: tensors[a_key].to(torch.bfloat16)})),
    ]
    if settings["use_dora"]:
        m_key = first(".lora_magnitude_vector")
        m = tensors[m_key]
        module = m_key[len(peft_loader.KEY_PREFIX):-len(".lora_magnitude_vector")]
        out += [
            ("the DoRA magnitude missing", raw, with_tensors(drop=[m_key])),
            ("the DoRA magnitude saved with PEFT's in-memory \".weight\"",
             raw, with_tensors(rename={m_key: m_key + ".weight"})),
            ("the DoRA magnitude as a [1, out] tensor", raw, with_tensors(replace={m_key: m.reshape(1, -1)})),
            # e.g. a writer that saved the initial m = ‖W‖_row instead of the trained one
            ("the DoRA magnitude replaced by the row norms", raw,
             with_tensors(replace={m_key: weights[module + ".weight"].norm(dim=1)})),
        ]
    return out


def equivalent_forms(raw, tensors):
    """(description, config, tensors) that PEFT loads into the same model: the loader must accept them."""
    in_memory = {peft_loader.in_memory_key(k): v for k, v in tensors.items()}
    newer_peft = {**raw, "alora_invocation_tokens": None, "arrow_config": None, "ensure_weight_tying": False,
                  "exclude_modules": None, "lora_bias": False, "peft_version": "0.19.1", "qalora_group_size": 16,
                  "target_parameters": None, "trainable_token_indices": None, "use_qalora": False}
    return [("every key in PEFT's in-memory form (.default)", raw, in_memory),
            ("the extra keys PEFT 0.19 writes, at their defaults", newer_peft, tensors)]


def run_self_test(label, cfg, weights, raw, tensors, ids, pos, bidora_logits, source, settings, base):
    for what, same_raw, same_tensors in equivalent_forms(raw, tensors):
        err, _, _, _, _ = compare(label, cfg, weights, same_raw, same_tensors, ids, pos, bidora_logits, source, base)
        if not err <= TOL_F32:
            raise CheckFailed(f"{label}: self-test: {what} gives a max |logit error| of {err:.3e}")
        print(f"  self-test {what}: accepted, max |logit error| = {err:.3e}")
    caught = 0
    cases = mutations(raw, tensors, settings, weights)
    for what, bad_raw, bad_tensors in cases:
        try:
            dtypes = {k: "F32" if v.dtype == torch.float32 else str(v.dtype) for k, v in bad_tensors.items()}
            check_saved_form(source, bad_tensors, dtypes, {"format": "pt"})
            err, _, _, _, _ = compare(label, cfg, weights, bad_raw, bad_tensors, ids, pos, bidora_logits, source,
                                      base)
        except (CheckFailed, peft_loader.LoaderError) as e:
            print(f"  self-test {what}: rejected: {e}")
            caught += 1
            continue
        if err <= TOL_F32:
            raise CheckFailed(f"{label}: self-test: an adapter with {what} was accepted (max |logit error| "
                              f"{err:.3e} <= {TOL_F32:.0e}); the check is not strict enough")
        print(f"  self-test {what}: loads, but max |logit error| = {err:.3e} > {TOL_F32:.0e}")
        caught += 1
    print(f"  self-test: all {caught} broken variants of {label} caught")


def case_dirs(reference_dir):
    root = os.path.join(reference_dir, "peft_export")
    if not os.path.isdir(root):
        return []
    return [os.path.join(root, d) for d in sorted(os.listdir(root))
            if os.path.isfile(os.path.join(root, d, LOGITS_FILE))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", metavar="MODEL_DIR ADAPTER_DIR LOGITS_FILE")
    ap.add_argument("--all", action="store_true", help="check every case under <reference dir>/peft_export")
    ap.add_argument("--fallback-reference-dir", help="reference dir when $BIDORA_REFERENCE_DIR is unset")
    ap.add_argument("--self-test", action="store_true", help="also check that broken adapters are caught")
    args = ap.parse_args()
    torch.set_num_threads(1)  # tiny models; ctest runs other tests on the same cores
    try:
        if not args.all:
            if len(args.paths) != 3:
                ap.error("expected MODEL_DIR ADAPTER_DIR LOGITS_FILE, or --all")
            model_dir, adapter_dir, logits = args.paths
            check_case(os.path.basename(os.path.normpath(adapter_dir)), model_dir, adapter_dir, logits,
                       set() if args.self_test else None)
            return 0
        ref = os.environ.get("BIDORA_REFERENCE_DIR") or args.fallback_reference_dir
        if not ref:
            ap.error("--all needs $BIDORA_REFERENCE_DIR or --fallback-reference-dir")
        dirs = case_dirs(ref)
        if not dirs:
            raise CheckFailed(f"no {LOGITS_FILE} under {ref}/peft_export: run the PeftExport gtest cases first "
                              "(test_adapters --gtest_filter='*PeftExport*')")
        self_test_done = set() if args.self_test else None
        failures = []
        for d in dirs:
            # Every case is checked and reported, so one run shows which families / variants break.
            try:
                metadata, _ = peft_loader.read_safetensors_header(os.path.join(d, LOGITS_FILE))
                if "model" not in metadata:
                    raise CheckFailed(f"{d}/{LOGITS_FILE}: no \"model\" in the metadata")
                check_case(os.path.basename(d), os.path.join(ref, "model", "models", metadata["model"]), d,
                           os.path.join(d, LOGITS_FILE), self_test_done)
            except (CheckFailed, peft_loader.LoaderError) as e:
                print(f"{os.path.basename(d)}: FAILED: {e}")
                failures.append(os.path.basename(d))
        if failures:
            raise CheckFailed(f"{len(failures)} of {len(dirs)} adapter(s) fail: {', '.join(failures)}")
        print(f"check_peft_export: {len(dirs)} adapter(s) written by bidora give the reference's logits "
              f"within {TOL_F32:.0e}")
        return 0
    except (CheckFailed, peft_loader.LoaderError) as e:
        print(f"check_peft_export: FAILED: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
