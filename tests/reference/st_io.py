"""Minimal safetensors writer/reader for the test references (no dependency but torch/numpy).

Written independently from the C++ reader so that each checks the other.
"""
import json
import struct

import numpy as np
import torch

_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int32: "I32",
           torch.int64: "I64", torch.uint8: "U8", torch.int8: "I8"}
_FROM = {"F64": (torch.float64, np.float64), "F32": (torch.float32, np.float32), "BF16": (torch.bfloat16, np.int16), "F16": (torch.float16, np.float16),
         "I32": (torch.int32, np.int32), "I64": (torch.int64, np.int64), "U8": (torch.uint8, np.uint8),
         "I8": (torch.int8, np.int8)}


def _to_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def save(path, tensors, metadata=None):
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    blobs, offset = [], 0
    for name in sorted(tensors):
        b = _to_bytes(tensors[name])
        header[name] = {"dtype": _DTYPES[tensors[name].dtype], "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        tdt, ndt = _FROM[info["dtype"]]
        arr = np.frombuffer(data[8 + n + b:8 + n + e], dtype=ndt).copy()
        t = torch.from_numpy(arr)
        if tdt == torch.bfloat16:
            t = t.view(torch.bfloat16)
        out[name] = t.reshape(info["shape"])
    return out
