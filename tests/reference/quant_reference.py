#!/usr/bin/python3
"""Reference data for bidora's frozen-weight quantisation (src/quant), written with PyTorch.

Usage: quant_reference.py <outdir>     (the tests read <reference_dir()>/quant/*.safetensors)

bitsandbytes is not installed here, so this is an independent re-implementation in torch that
follows bitsandbytes' own code paths (functional.py, backends/default/ops.py, csrc/kernels.cu),
written in a vectorised "torch" style rather than the loop style of the C++ code, so that the two
can catch each other's mistakes:

* NF4 code table: get_4bit_type("nf4") (shared/reference/formats.md §3.1).
* NF4 quantize: absmax per block of the flattened tensor; x = w * (1/absmax) (kQuantizeBlockwise
  multiplies by the reciprocal); the code is dQuantizeNF4's decision tree, i.e. the number of
  float32 midpoints that are strictly below x, computed with torch.bucketize(right=False).
* 8-bit blockwise quantize (quantize_blockwise): kernels.cu dQuantize, a binary search over the odd
  indices followed by a float32 midpoint test. Here: P = 2 * bucketize(x, code[1::2]) and the
  neighbour test with torch.where.
* create_dynamic_map exactly as bitsandbytes writes it, except that torch.linspace is re-done the
  way PyTorch >= 2.1 computes it on x86 (start + step*i, end - step*(steps-1-i), fused
  multiply-add). torch 1.13 (this machine) still used a vectorised variant whose rounding differs
  in ~40 of the 256 entries; the maps published from real bitsandbytes runs match the >= 2.1 form.
* Double quantization: offset = mean(absmax) rounded exactly (a rational mean rounded once to
  float32; torch's float32 mean depends on thread count and device), absmax - offset quantized with
  the signed dynamic map, blocksize 256; dequantized absmax = code8[q]*absmax2 + offset as two
  float32 operations.
* LLM.int8 row-wise: Int8Params._quantize casts to float16, then int8_vectorwise_quant:
  SCB = max|w16| per row, CB = round(w16 * (127.0 / SCB)) (torch evaluates 127.0/t as
  t.reciprocal()*127), dequant CB * SCB * 7.874015718698502e-3.
* Degenerate blocks (documented choices shared with the C++ code): an all-zero block quantizes
  every element as x = 0 (NF4 code 7, the 8-bit code of 0.0, int8 0); a block whose reciprocal
  overflows (absmax < 2^-128) uses x = w / absmax instead of w * inf.
"""
import json
import math
import os
import struct
import sys
from fractions import Fraction

import numpy as np
import torch

F32 = torch.float32

# --------------------------------------------------------------------------------------------
# tiny safetensors writer (formats.md §1): u64 LE header length, JSON padded with spaces to a
# multiple of 8, then the data.

_DTYPES = {torch.float32: ("F32", 4), torch.uint8: ("U8", 1), torch.int8: ("I8", 1),
           torch.int64: ("I64", 8), torch.float16: ("F16", 2)}


class SafetensorsOut:
    def __init__(self):
        self.items = []
        self.meta = {}

    def add(self, name, t):
        t = t.contiguous()
        assert name not in [n for n, _ in self.items], name
        self.items.append((name, t))

    def write(self, path):
        header = {}
        if self.meta:
            header["__metadata__"] = {k: str(v) for k, v in self.meta.items()}
        blobs = []
        off = 0
        for name, t in self.items:
            dt, size = _DTYPES[t.dtype]
            data = t.numpy().tobytes() if t.numel() else b""
            assert len(data) == t.numel() * size
            header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
            blobs.append(data)
            off += len(data)
        hj = json.dumps(header, separators=(",", ":")).encode()
        hj += b" " * ((8 - len(hj) % 8) % 8)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(hj)))
            f.write(hj)
            for b in blobs:
                f.write(b)
        os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# exact float32 helpers

def f32_round(q):
    """Correctly rounded (ties to even) float32 of an exact rational q."""
    q = Fraction(q)
    f = np.float32(float(q))  # float(q) is correctly rounded to double; fix any double rounding
    best = None
    for c in (np.nextafter(f, np.float32(-np.inf)), f, np.nextafter(f, np.float32(np.inf))):
        if not np.isfinite(c):
            continue
        d = abs(Fraction(float(c)) - q)
        if best is None or d < best[0] or (d == best[0] and (int(c.view(np.uint32)) & 1) == 0):
            best = (d, c)
    return np.float32(best[1])


def fma32(a, b, c):
    return f32_round(Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c)))


def exact_mean_f32(t):
    vals = t.double().tolist()  # float32 -> double is exact
    return f32_round(sum(Fraction(v) for v in vals) / len(vals))


# --------------------------------------------------------------------------------------------
# bitsandbytes code tables

NF4_CODE = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0], dtype=F32)
# dQuantizeNF4 compares against float literals equal to the double-precision midpoints.
# The kernel's literals are the shortest decimal reprs of the double midpoints, written with an
# `f` suffix: the compiler rounds that decimal text once to float32, which for 4 of the 15 differs
# by one ulp from rounding the double (double rounding).
_NF4_MID64 = (NF4_CODE.double()[:-1] + NF4_CODE.double()[1:]) / 2
NF4_THRESHOLDS = torch.tensor(np.array([f32_round(Fraction(repr(m))) for m in _NF4_MID64.tolist()],
                                       dtype=np.float32))
_SPEC_MIDPOINTS = [-0.8480964004, -0.6106329262, -0.4599952698, -0.3396794349, -0.2346074060,
                   -0.1379117332, -0.0455250181, 0.0397901498, 0.1202552505, 0.2035212517,
                   0.2920137718, 0.3893125355, 0.5016634166, 0.6427869201, 0.8614784181]
assert all(abs(a - b) < 1e-9 for a, b in zip(_NF4_MID64.tolist(), _SPEC_MIDPOINTS))
assert _NF4_MID64[7].item() == 0.03979014977812767 and _NF4_MID64[0].item() == -0.8480964004993439


def torch2_linspace(start, end, steps):
    """torch.linspace(start, end, steps) in float32 as PyTorch >= 2.1 computes it on x86."""
    s = np.float32(start)
    e = np.float32(end)
    step = np.float32(np.float32(e - s) / np.float32(steps - 1))
    half = steps // 2
    out = []
    for i in range(steps):
        if i < half:
            out.append(fma32(step, np.float32(i), s))
        else:
            out.append(fma32(-step, np.float32(steps - i - 1), e))
    return torch.tensor(np.array(out, dtype=np.float32))


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    # Same statements as bitsandbytes.functional.create_dynamic_map, with torch2_linspace.
    data = []
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed
                             else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1)
        boundaries = torch2_linspace(0.1, 1, fraction_items)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    if additional_items > 0:
        boundaries = torch2_linspace(0.1, 1, additional_items + 1)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    assert len(data) == 2 ** total_bits
    for _ in range(256 - len(data)):
        data.append(0)
    data.sort()
    return torch.tensor(data, dtype=F32)


# --------------------------------------------------------------------------------------------
# quantisation primitives (vectorised)

def blocks_of(flat, blocksize):
    """[nblocks, blocksize] view of flat padded with zeros (zeros never change an absmax)."""
    n = flat.numel()
    nb = -(-n // blocksize)
    pad = torch.zeros(nb * blocksize, dtype=flat.dtype)
    pad[:n] = flat
    return pad.view(nb, blocksize)


def normalise(blk, absmax):
    """x = w * (1/absmax) per block, with the documented degenerate-block rules."""
    recip = torch.reciprocal(absmax)
    x = blk * recip[:, None]
    tiny = torch.isinf(recip) & (absmax > 0)
    if tiny.any():
        x[tiny] = blk[tiny] / absmax[tiny][:, None]
    x[absmax == 0] = 0.0
    return x


def nf4_codes(x):
    return torch.bucketize(x, NF4_THRESHOLDS, right=False).to(torch.uint8)


def dquantize(x, code):
    """kernels.cu dQuantize<0> for values x (float32) and a sorted 256-entry code."""
    P = 2 * torch.bucketize(x, code[1:255:2].contiguous(), right=False)
    val = code[P]
    up = code[torch.clamp(P + 1, max=255)]
    lo = code[torch.clamp(P - 1, min=0)]
    mid_up = (up + val) * 0.5
    mid_lo = (lo + val) * 0.5
    res = torch.where(x > val,
                      torch.where(x > mid_up, P + 1, P),
                      torch.where(x < mid_lo, torch.clamp(P - 1, min=0), P))
    return res.to(torch.uint8)


def quantize_blockwise(flat, code, blocksize):
    n = flat.numel()
    blk = blocks_of(flat, blocksize)
    absmax = blk.abs().amax(dim=1)
    x = normalise(blk, absmax)
    q = dquantize(x.reshape(-1), code)[:n]
    return q, absmax


def dequantize_blockwise(q, absmax, code, blocksize):
    n = q.numel()
    vals = blocks_of(code[q.long()], blocksize)
    return (vals * absmax[:, None]).reshape(-1)[:n]


def quantize_nf4(w, blocksize):
    flat = w.reshape(-1).to(F32)
    n = flat.numel()
    if n % 2:
        flat = torch.cat([flat, torch.zeros(1, dtype=F32)])  # the pad element is a 0.0 -> code 7
    blk = blocks_of(flat, blocksize)
    absmax = blk.abs().amax(dim=1)
    x = normalise(blk, absmax)
    codes = nf4_codes(x.reshape(-1))[: flat.numel()]
    packed = (codes[0::2] << 4) | codes[1::2]
    return packed, absmax


def dequantize_nf4(packed, absmax, n, blocksize):
    codes = torch.stack([packed >> 4, packed & 0xF], dim=1).reshape(-1)[:n]
    vals = blocks_of(NF4_CODE[codes.long()], blocksize)
    return (vals * absmax[:, None]).reshape(-1)[:n]


def double_quant(absmax, code8):
    offset = torch.tensor(exact_mean_f32(absmax), dtype=F32)
    centred = absmax - offset
    q, absmax2 = quantize_blockwise(centred, code8, 256)
    deq = dequantize_blockwise(q, absmax2, code8, 256)
    deq = deq + offset  # a separate float32 add, as `absmax += quant_state.offset`
    return q, absmax2, offset, deq


INV127 = np.float32(7.874015718698502e-3)


def int8_rowwise(w):
    w16 = w.to(torch.float16)
    assert torch.isfinite(w16).all()
    scb = w16.abs().amax(dim=1).float()
    scale = torch.reciprocal(scb) * 127.0  # what `127.0 / row_stats` evaluates to
    cb = torch.round(w16.float() * scale[:, None])
    cb[scb == 0] = 0
    cb = cb.to(torch.int8)
    deq = cb.float() * scb[:, None] * float(INV127)
    return cb, scb, deq


def int8_blockwise(w, blocksize):
    flat = w.reshape(-1).to(F32)
    n = flat.numel()
    blk = blocks_of(flat, blocksize)
    absmax = blk.abs().amax(dim=1)
    scale = torch.reciprocal(absmax) * 127.0
    q = torch.round(blk * scale[:, None])
    tiny = torch.isinf(scale) & (absmax > 0)
    if tiny.any():
        q[tiny] = torch.round(blk[tiny] / absmax[tiny][:, None] * 127.0)
    q[absmax == 0] = 0
    q = q.to(torch.int8)
    deq = (q.float() * absmax[:, None] * float(INV127)).reshape(-1)[:n]
    return q.reshape(-1)[:n], absmax, deq


# --------------------------------------------------------------------------------------------
# test matrices

def bf16(t):
    return t.to(torch.bfloat16).to(F32)


def nf4_cases(g):
    cases = {}
    cases["gauss_64x128"] = (bf16(torch.randn(64, 128, generator=g) * 0.02), 64)
    cases["odd_37x45"] = (bf16(torch.randn(37, 45, generator=g)), 64)  # n = 1665: odd, partial block
    z = torch.randn(8, 96, generator=g)
    z[1, 32:96] = 0  # elements 128..191 = block 2 is all zero
    z[5, :] = 0
    cases["zero_block_8x96"] = (bf16(z), 64)
    # one scale per block, from subnormal (reciprocal overflows) to near FLT_MAX
    scales = [1e-40, 1e-38, 1e-30, 1e-12, 1e-3, 1.0, 7.5, 1e12, 1e30, 1e38]
    t = torch.randn(len(scales), 64, generator=g)
    t = t / t.abs().amax(dim=1, keepdim=True)  # |t| <= 1 so 1e38 stays finite
    t = t * torch.tensor(scales, dtype=torch.float64).float()[:, None]
    cases["tiny_huge_10x64"] = (t, 64)
    # ties: absmax = 1 so x == w exactly; every threshold and both float neighbours
    th = NF4_THRESHOLDS.numpy()
    vals = np.concatenate([th, np.nextafter(th, np.float32(-2)), np.nextafter(th, np.float32(2)),
                           NF4_CODE.numpy(), [1.0, -1.0, 0.0, -0.0]]).astype(np.float32)
    assert len(vals) <= 126
    row = np.zeros(64 * 2, dtype=np.float32)
    row[:63] = vals[:63]  # block 0 = row[0:64], block 1 = row[64:128]; each holds a |1.0|
    row[64:64 + len(vals) - 63] = vals[63:]
    row[63] = 1.0
    row[127] = -1.0
    cases["ties_1x128"] = (torch.tensor(row).view(1, 128), 64)
    base = bf16(torch.randn(24, 200, generator=g))
    for bs in (32, 128, 256, 4096):
        cases[f"bs{bs}_24x200"] = (base.clone(), bs)
    # > 256 blocks so absmax2 has several (the last partial) blocks
    cases["many_blocks_300x200"] = (bf16(torch.randn(300, 200, generator=g) * 0.05), 64)
    cases["one_1x1"] = (torch.tensor([[0.3]]), 64)
    cases["one_1x3"] = (torch.tensor([[-2.0, 0.5, 1.0]]), 64)
    cases["constant_16x64"] = (torch.full((16, 64), -0.25), 64)
    cases["all_zero_4x64"] = (torch.zeros(4, 64), 64)
    return cases


def blockwise8_cases(g, signed_map, unsigned_map):
    cases = {}
    cases["signed_gauss"] = (torch.randn(5000, generator=g) * 1e-3, signed_map, 256)
    cases["unsigned_sq"] = ((torch.randn(5000, generator=g) * 1e-3) ** 2, unsigned_map, 256)
    cases["signed_bs64"] = (torch.randn(1000, generator=g), signed_map, 64)
    cases["signed_bs2048_partial"] = (torch.randn(3000, generator=g), signed_map, 2048)
    for name, code in (("signed", signed_map), ("unsigned", unsigned_map)):
        c = code.numpy()
        mids = ((code[:-1] + code[1:]) * 0.5).numpy()
        vals = np.concatenate([mids, np.nextafter(mids, np.float32(-2)), np.nextafter(mids, np.float32(2)),
                               c, [1.0]]).astype(np.float32)
        n = len(vals)
        blocks = -(-n // 255)
        arr = np.zeros(blocks * 256, dtype=np.float32)
        for b in range(blocks):  # each 256-block holds 1.0 so absmax == 1 and x == value
            chunk = vals[b * 255:(b + 1) * 255]
            arr[b * 256: b * 256 + len(chunk)] = chunk
            arr[b * 256 + 255] = 1.0
        cases[f"ties_{name}"] = (torch.tensor(arr), code, 256)
    z = torch.randn(1024, generator=g)
    z[256:512] = 0
    cases["zero_block_signed"] = (z, signed_map, 256)
    cases["zero_block_unsigned"] = (z.abs(), unsigned_map, 256)
    return cases


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: quant_reference.py <outdir>")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(20240611)

    signed_map = create_dynamic_map(True)
    unsigned_map = create_dynamic_map(False)
    # Entries published from real bitsandbytes runs (they distinguish the linspace variants).
    assert signed_map[1].item() == -0.9789062738418579
    assert signed_map[18].item() == -0.7398437261581421
    assert signed_map[254].item() == 0.992968738079071 and signed_map[255].item() == 1.0

    maps = SafetensorsOut()
    maps.add("signed", signed_map)
    maps.add("unsigned", unsigned_map)
    for signed, e, bits in ((True, 4, 8), (False, 3, 4), (True, 3, 4), (True, 2, 5)):
        maps.add(f"{'signed' if signed else 'unsigned'}_e{e}_b{bits}", create_dynamic_map(signed, e, bits))
    maps.add("nf4_code", NF4_CODE)
    maps.add("nf4_thresholds", NF4_THRESHOLDS)
    maps.write(os.path.join(outdir, "maps.safetensors"))

    out = SafetensorsOut()
    names = []
    for name, (w, bs) in nf4_cases(g).items():
        rows, cols = w.shape
        n = w.numel()
        packed, absmax = quantize_nf4(w, bs)
        deq_plain = dequantize_nf4(packed, absmax, n, bs).view(rows, cols)
        q, absmax2, offset, absmax_dq = double_quant(absmax, signed_map)
        deq_nested = dequantize_nf4(packed, absmax_dq, n, bs).view(rows, cols)
        out.add(f"{name}.w", w.contiguous())
        out.add(f"{name}.packed", packed)
        out.add(f"{name}.absmax", absmax)
        out.add(f"{name}.deq_plain", deq_plain)
        out.add(f"{name}.absmax_q", q)
        out.add(f"{name}.absmax2", absmax2)
        out.add(f"{name}.offset", offset.view(1))
        out.add(f"{name}.deq", deq_nested)
        out.meta[name] = bs
        names.append(name)
    out.meta["cases"] = ",".join(names)
    out.write(os.path.join(outdir, "nf4.safetensors"))

    out = SafetensorsOut()
    names = []
    for name, (x, code, bs) in blockwise8_cases(g, signed_map, unsigned_map).items():
        q, absmax = quantize_blockwise(x.to(F32), code, bs)
        out.add(f"{name}.x", x.to(F32))
        out.add(f"{name}.code", code)
        out.add(f"{name}.q", q)
        out.add(f"{name}.absmax", absmax)
        out.add(f"{name}.deq", dequantize_blockwise(q, absmax, code, bs))
        out.meta[name] = bs
        names.append(name)
    out.meta["cases"] = ",".join(names)
    out.write(os.path.join(outdir, "blockwise8.safetensors"))

    out = SafetensorsOut()
    names = []
    i8 = {
        "gauss_48x80": bf16(torch.randn(48, 80, generator=g) * 0.03),
        "odd_7x33": torch.randn(7, 33, generator=g),  # float32 values: the float16 cast rounds
        "rows_zero_6x40": bf16(torch.randn(6, 40, generator=g)),
        "range_5x64": torch.randn(5, 64, generator=g) * torch.tensor([1e-6, 1e-3, 1.0, 1e3, 6e4])[:, None] / 8,
        "halves_3x8": torch.tensor([[0.5, 1.5, 2.5, -0.5, -1.5, 127.0, 3.5, -2.5]] * 3) * torch.tensor([1.0, 0.25, 2.0])[:, None],
    }
    i8["rows_zero_6x40"][2] = 0
    i8["tiny_blocks_4x64"] = torch.randn(4, 64, generator=g) * torch.tensor([1e-41, 1e-39, 1e-20, 1.0])[:, None]
    for name, w in i8.items():
        w = w.to(F32).contiguous()
        out.add(f"{name}.w", w)
        if name != "tiny_blocks_4x64":  # row-wise rounds to float16 first: keep it in range
            cb, scb, deq = int8_rowwise(w)
            out.add(f"{name}.cb", cb)
            out.add(f"{name}.scb", scb)
            out.add(f"{name}.deq_rowwise", deq)
        for bs in (64, 256):
            q, absmax, deq = int8_blockwise(w, bs)
            out.add(f"{name}.q_bs{bs}", q)
            out.add(f"{name}.absmax_bs{bs}", absmax)
            out.add(f"{name}.deq_bs{bs}", deq)
        names.append(name)
    out.meta["cases"] = ",".join(names)
    out.write(os.path.join(outdir, "int8.safetensors"))

    # A Linear4bit as transformers serialises it (formats.md §3.4), double quantised.
    w = bf16(torch.randn(40, 72, generator=g) * 0.04)
    packed, absmax = quantize_nf4(w, 64)
    q, absmax2, offset, absmax_dq = double_quant(absmax, signed_map)
    p = "model.layers.0.mlp.down_proj.weight"
    out = SafetensorsOut()
    out.add(p, packed.view(-1, 1))
    out.add(p + ".absmax", q)
    out.add(p + ".quant_map", NF4_CODE)
    out.add(p + ".nested_absmax", absmax2)
    out.add(p + ".nested_quant_map", signed_map)
    qs = {"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [40, 72],
          "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": offset.item()}
    out.add(p + ".quant_state.bitsandbytes__nf4", torch.tensor(list(json.dumps(qs).encode()), dtype=torch.uint8))
    out.add("expected." + p, dequantize_nf4(packed, absmax_dq, w.numel(), 64).view(40, 72))
    # and one without double quantisation (absmax stays float32)
    p2 = "model.layers.0.self_attn.o_proj.weight"
    w2 = bf16(torch.randn(16, 50, generator=g))
    packed2, absmax2p = quantize_nf4(w2, 128)
    out.add(p2, packed2.view(-1, 1))
    out.add(p2 + ".absmax", absmax2p)
    out.add(p2 + ".quant_map", NF4_CODE)
    qs2 = {"quant_type": "nf4", "blocksize": 128, "dtype": "float16", "shape": [16, 50]}
    out.add(p2 + ".quant_state.bitsandbytes__nf4", torch.tensor(list(json.dumps(qs2).encode()), dtype=torch.uint8))
    out.add("expected." + p2, dequantize_nf4(packed2, absmax2p, w2.numel(), 128).view(16, 50))
    out.write(os.path.join(outdir, "bnb_serialized.safetensors"))
    print(f"quant reference written to {outdir}")


if __name__ == "__main__":
    main()
