"""A PEFT-format LoRA / DoRA adapter loader for the PyTorch reference (the peft package is not
installed here, so this re-states what `PeftModel.from_pretrained` does for a causal LM):

- adapter_config.json is read as LoraConfig reads it: missing keys take the dataclass defaults
  (r 8, lora_alpha 8, use_rslora / use_dora false, target_modules = PEFT's default for the model
  type), `target_modules` is a list of module-name suffixes, "all-linear", or a regex matched
  against the whole module name (tuners_utils.check_target_module_exists);
- scaling = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora (lora/layer.py update_layer);
- adapter_model.safetensors keys get the adapter name inserted as set_peft_model_state_dict does
  ("...q_proj.lora_A.weight" -> "...q_proj.lora_A.default.weight", "...lora_magnitude_vector" ->
  "...lora_magnitude_vector.default.weight"; keys already in that in-memory form are kept), and are
  then matched against the parameters the targeted modules own.

Stricter than PEFT where PEFT only warns, because this loader exists to catch a writer's mistakes:
unknown config keys, settings this reference cannot reproduce, unexpected or missing tensors,
wrong shapes and non-finite values are all errors (LoaderError, naming the file and the key).

The result is the `adapters` dict tests/reference/model_reference.py `forward` applies:
{"model.layers.{i}.self_attn.q_proj": (A [r, in], B [out, r], m [out] or None, scaling)}.
"""
import json
import math
import os
import re
import struct

import torch

import st_io

ADAPTER_NAME = "default"  # the name PeftModel.from_pretrained gives the adapter it loads
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
KEY_PREFIX = "base_model.model."  # PeftModelForCausalLM.base_model (LoraModel) .model (XxxForCausalLM)

# The Linear modules of a decoder block that LoRA can adapt here, with their parent module.
BLOCK_LINEARS = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
                 "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
# peft.utils.constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING, for the families bidora supports.
DEFAULT_TARGETS = {"llama": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"],
                   "qwen3": ["q_proj", "v_proj"]}

# Every key a LoraConfig (PEFT 0.15 .. 0.20.dev) dumps, with the values this reference can
# reproduce. None means "any value": the key does not change the loaded adapter's forward.
_ANY = None
NEUTRAL_CONFIG = {
    "alora_invocation_tokens": [None], "alpha_pattern": [{}, None], "arrow_config": [None],
    "auto_mapping": _ANY, "base_model_name_or_path": _ANY, "bias": ["none"], "corda_config": _ANY,
    "ensure_weight_tying": _ANY, "eva_config": _ANY, "exclude_modules": [None, []], "fan_in_fan_out": [False],
    "inference_mode": _ANY, "init_lora_weights": [True, False, "gaussian"], "kasa_config": [None],
    "layer_replication": [None], "layers_pattern": [None, []], "layers_to_transform": [None, []],
    "loftq_config": _ANY, "lora_alpha": _ANY, "lora_bias": [False], "lora_dropout": _ANY, "lora_ga_config": _ANY,
    "megatron_config": [None], "megatron_core": _ANY, "modules_to_save": [None, []], "monteclora_config": [None],
    "peft_type": ["LORA"], "peft_version": _ANY, "qalora_group_size": _ANY, "r": _ANY, "rank_pattern": [{}, None],
    "revision": _ANY, "target_modules": _ANY, "target_parameters": [None, []], "task_type": ["CAUSAL_LM", None],
    "trainable_token_indices": [None], "use_bdlora": [None, False], "use_dora": _ANY, "use_qalora": [False],
    "use_rslora": _ANY, "velora_config": [None],
}


class LoaderError(ValueError):
    pass


def _fail(source, msg):
    raise LoaderError(f"{source}: {msg}")


def _same(a, b):
    # JSON true must not pass for 1 (Python: True == 1), nor 0 for false.
    return type(a) is type(b) and a == b


def parse_config(raw, model_type, source=CONFIG_FILE):
    """adapter_config.json (as a dict) -> {r, lora_alpha, use_rslora, use_dora, target_modules}."""
    if not isinstance(raw, dict):
        _fail(source, f"expected a JSON object, found {type(raw).__name__}")
    for key, value in raw.items():
        if key not in NEUTRAL_CONFIG:
            _fail(source, f'unknown key "{key}" (PEFT would drop it with a warning; a misspelt setting?)')
        allowed = NEUTRAL_CONFIG[key]
        if allowed is not _ANY and not any(_same(value, a) for a in allowed):
            _fail(source, f'{key} is {json.dumps(value)}; this reference loader supports only '
                  f'{" or ".join(json.dumps(a) for a in allowed)}')
    if "peft_type" not in raw:
        _fail(source, "peft_type is missing (PeftConfig.from_pretrained picks the config class from it)")

    def typed(key, default, types, what):
        v = raw.get(key, default)
        if (isinstance(v, bool) and bool not in types) or not isinstance(v, types):
            _fail(source, f"{key} must be {what}, found {json.dumps(v)}")
        return v

    r = typed("r", 8, (int,), "an integer")
    if r <= 0:
        _fail(source, f"r must be positive, found {r}")
    alpha = typed("lora_alpha", 8, (int, float), "a number")
    if not math.isfinite(alpha):
        _fail(source, f"lora_alpha must be finite, found {alpha}")
    use_rslora = typed("use_rslora", False, (bool,), "true or false")
    use_dora = typed("use_dora", False, (bool,), "true or false")
    dropout = typed("lora_dropout", 0.0, (int, float), "a number")
    if not 0 <= dropout < 1:
        _fail(source, f"lora_dropout must be in [0, 1), found {dropout}")

    targets = raw.get("target_modules")
    if targets is None:
        if model_type not in DEFAULT_TARGETS:
            _fail(source, f"target_modules is unset and PEFT has no default for model_type {model_type!r}")
        targets = list(DEFAULT_TARGETS[model_type])
    elif isinstance(targets, list):
        if not targets or not all(isinstance(t, str) for t in targets):
            _fail(source, f"target_modules must be a non-empty list of strings, found {json.dumps(targets)}")
        if len(set(targets)) != len(targets):
            _fail(source, f"target_modules has duplicates: {json.dumps(targets)}")
    elif not isinstance(targets, str):
        _fail(source, f"target_modules must be a list, a regex or \"all-linear\", found {json.dumps(targets)}")
    return {"r": r, "lora_alpha": alpha, "use_rslora": use_rslora, "use_dora": use_dora, "target_modules": targets}


def scaling_for(settings):
    r, alpha = settings["r"], settings["lora_alpha"]
    return alpha / math.sqrt(r) if settings["use_rslora"] else alpha / r


def module_names(model_cfg):
    """Every module name of an XxxForCausalLM (relative to it), as PEFT walks named_modules()."""
    names = ["model", "model.embed_tokens", "model.layers", "model.norm", "model.rotary_emb", "lm_head"]
    for i in range(model_cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}"
        names += [pre, pre + ".self_attn", pre + ".mlp", pre + ".mlp.act_fn", pre + ".input_layernorm",
                  pre + ".post_attention_layernorm"]
        if model_cfg["model_type"] == "qwen3":
            names += [pre + ".self_attn.q_norm", pre + ".self_attn.k_norm"]
        names += [f"{pre}.{parent}.{proj}" for proj, parent in BLOCK_LINEARS.items()]
    return names


def _is_target(name, targets):
    """peft.tuners.tuners_utils.check_target_module_exists (without layers_to_transform)."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return name in targets or any(name.endswith("." + t) for t in targets)


def targeted_modules(settings, model_cfg, source=CONFIG_FILE):
    """Names of the modules that get a LoRA layer; only the block linears are supported here."""
    targets = settings["target_modules"]
    if targets == "all-linear":
        # PEFT expands it to every nn.Linear's last name component except the output layer.
        targets = sorted(BLOCK_LINEARS)
    names = module_names(model_cfg)
    chosen = [n for n in names if _is_target(n, targets)]
    for n in chosen:
        if n.rsplit(".", 1)[-1] not in BLOCK_LINEARS or not n.startswith("model.layers."):
            _fail(source, f"target_modules {json.dumps(targets)} selects module {n!r}; only the decoder blocks' "
                  f"{', '.join(BLOCK_LINEARS)} are supported")
    if not chosen:
        _fail(source, f"target_modules {json.dumps(targets)} matches no module of the model "
              "(PEFT: \"Target modules ... not found in the base model\")")
    if isinstance(targets, list):
        for t in targets:
            if not any(_is_target(n, [t]) for n in names):
                _fail(source, f"target_modules entry {t!r} matches no module of the model")
    return chosen


def in_memory_key(key, adapter_name=ADAPTER_NAME, prefix="lora_"):
    """peft.utils.save_and_load: _insert_adapter_name_into_state_dict, then the DoRA rename."""
    if prefix in key:
        _, _, suffix = key.rpartition(prefix)
        if "." in suffix:
            to_replace = ".".join(suffix.split(".")[1:])
            # A longer suffix (e.g. "A.default.weight") is left as it is: the name is already in
            # the in-memory form.
            if "." not in to_replace:
                key = re.sub(re.escape(to_replace) + r"$", f"{adapter_name}.{to_replace}", key)
        else:
            key = f"{key}.{adapter_name}"
    if key.endswith(f"lora_magnitude_vector.{adapter_name}"):
        key += ".weight"
    return key


def saved_key(key, adapter_name=ADAPTER_NAME):
    """get_peft_model_state_dict's name for an in-memory parameter (what PEFT writes to disk)."""
    if key.endswith(f"lora_magnitude_vector.{adapter_name}.weight"):
        key = key[:-len(".weight")]
    if key.endswith(f".{adapter_name}"):
        return key[:-len(adapter_name) - 1]
    head, _, suffix = key.rpartition(".")
    return re.sub(re.escape(f".{adapter_name}") + r"$", "", head) + "." + suffix


def expected_parameters(modules, settings, base_weights, source):
    """In-memory adapter parameter name -> (module, role, shape) for every targeted module."""
    out = {}
    r = settings["r"]
    for mod in modules:
        w = base_weights.get(mod + ".weight")
        if w is None or w.dim() != 2:
            _fail(source, f"the base model has no 2-D weight {mod}.weight")
        n_out, n_in = w.shape
        base = KEY_PREFIX + mod
        out[f"{base}.lora_A.{ADAPTER_NAME}.weight"] = (mod, "A", (r, n_in))
        out[f"{base}.lora_B.{ADAPTER_NAME}.weight"] = (mod, "B", (n_out, r))
        if settings["use_dora"]:
            out[f"{base}.lora_magnitude_vector.{ADAPTER_NAME}.weight"] = (mod, "m", (n_out,))
    return out


def read_safetensors_header(path):
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            _fail(path, "shorter than a safetensors header")
        n = struct.unpack("<Q", head)[0]
        if n > 100_000_000:
            _fail(path, f"header length {n} is implausible")
        header = json.loads(f.read(n))
    return header.pop("__metadata__", None) or {}, header


def adapters_from_state(raw_config, tensors, model_cfg, base_weights, source="adapter"):
    """The `adapters` dict for model_reference.forward from a parsed config and state dict.

    Returns (adapters, settings, modules)."""
    cfg_source = os.path.join(source, CONFIG_FILE)
    st_source = os.path.join(source, WEIGHTS_FILE)
    settings = parse_config(raw_config, model_cfg["model_type"], cfg_source)
    modules = targeted_modules(settings, model_cfg, cfg_source)
    expected = expected_parameters(modules, settings, base_weights, cfg_source)

    all_modules = module_names(model_cfg)
    found = {}
    for key, t in tensors.items():
        mem = in_memory_key(key)
        if mem not in expected:
            owner = mem[len(KEY_PREFIX):].split(".lora_")[0] if mem.startswith(KEY_PREFIX) else None
            why = ""
            if owner is not None and owner not in all_modules:
                why = f" (the model has no module {owner!r})"
            elif owner is not None and owner not in modules:
                why = f" (module {owner!r} is not selected by target_modules)"
            elif "lora_magnitude_vector" in key and not settings["use_dora"]:
                why = " (a DoRA magnitude, but use_dora is false)"
            _fail(st_source, f'unexpected tensor "{key}" (loads as "{mem}"){why}')
        if mem in found:
            _fail(st_source, f'tensors "{found[mem][0]}" and "{key}" both load as "{mem}"')
        mod, role, shape = expected[mem]
        if t.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            _fail(st_source, f'tensor "{key}" has dtype {t.dtype}, expected a float type')
        if tuple(t.shape) != shape:
            hint = " (transposed?)" if tuple(reversed(t.shape)) == shape else ""
            _fail(st_source, f'tensor "{key}" has shape {list(t.shape)}, expected {list(shape)}{hint} '
                  f'(r = {settings["r"]}, {mod}.weight {list(base_weights[mod + ".weight"].shape)})')
        t = t.float()
        if not torch.isfinite(t).all():
            _fail(st_source, f'tensor "{key}" has non-finite values')
        found[mem] = (key, t)
    missing = sorted(saved_key(k) for k in expected if k not in found)
    if missing:
        _fail(st_source, f"missing {len(missing)} tensor(s) of targeted modules, e.g. \"{missing[0]}\"")

    s = scaling_for(settings)
    adapters = {}
    for mod in modules:
        base = f"{KEY_PREFIX}{mod}"
        A = found[f"{base}.lora_A.{ADAPTER_NAME}.weight"][1]
        B = found[f"{base}.lora_B.{ADAPTER_NAME}.weight"][1]
        m = found[f"{base}.lora_magnitude_vector.{ADAPTER_NAME}.weight"][1] if settings["use_dora"] else None
        adapters[mod] = (A, B, m, s)
    return adapters, settings, modules


def read_adapter_dir(adapter_dir):
    """(raw config dict, {key: tensor}, safetensors metadata, {key: dtype string}) of a PEFT adapter dir."""
    cfg_path = os.path.join(adapter_dir, CONFIG_FILE)
    st_path = os.path.join(adapter_dir, WEIGHTS_FILE)
    for p in (cfg_path, st_path):
        if not os.path.isfile(p):
            _fail(p, "missing (not a PEFT adapter directory?)")
    with open(cfg_path) as f:
        try:
            raw = json.load(f)
        except json.JSONDecodeError as e:
            _fail(cfg_path, f"invalid JSON: {e}")
    metadata, header = read_safetensors_header(st_path)
    tensors = st_io.load(st_path)
    dtypes = {k: v["dtype"] for k, v in header.items()}
    return raw, tensors, metadata, dtypes


def load_peft_adapter(adapter_dir, model_cfg, base_weights):
    """PeftModel.from_pretrained(model, adapter_dir) for this reference: returns (adapters, settings, modules)."""
    raw, tensors, _, _ = read_adapter_dir(adapter_dir)
    return adapters_from_state(raw, tensors, model_cfg, base_weights, adapter_dir)
