"""Optimiser references for tests/train/test_optim_reference.cpp.

Writes into OUTDIR (argument):
  adamw.safetensors     torch.optim.AdamW (two HF-style groups: decay / no decay) driven by a
                        transformers-style LambdaLR (linear warmup + decay) with
                        torch.nn.utils.clip_grad_norm_ before every step. Initial params, the
                        gradient of every step, the params after every step, the pre-clip grad norm
                        and the lr used at every step.
  adamw8bit.safetensors a vectorised torch re-implementation of bitsandbytes' 8-bit blockwise AdamW
                        (kOptimizerStatic8bit2StateBlockwise, blocksize 256; tensors < 4096
                        elements use kOptimizer32bit2State), with the same float32 operation order
                        as the C++ port, plus the final quantised states.
  schedules.safetensors LambdaLR learning rates for every schedule type and a few (warmup, total)
                        pairs, the lambdas re-stated from transformers.optimization.

torch 1.13 (Debian python3-torch) is a test-time reference only.
"""
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import st_io  # noqa: E402
from quant_reference import create_dynamic_map  # noqa: E402

F32 = torch.float32
STEPS = 20


# ------------------------------------------------------------------------------------------------
# transformers.optimization schedules, re-stated
def lambda_for(kind, warmup, total, num_cycles=0.5):
    def linear(step):
        if step < warmup:
            return float(step) / float(max(1, warmup))
        return max(0.0, float(total - step) / float(max(1, total - warmup)))

    def cosine(step):
        if step < warmup:
            return float(step) / float(max(1, warmup))
        progress = float(step - warmup) / float(max(1, total - warmup))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))

    def constant(step):
        if step < warmup:
            return float(step) / float(max(1.0, warmup))
        return 1.0

    return {"linear": linear, "cosine": cosine, "constant_with_warmup": constant}[kind]


def schedules(out):
    tensors = {}
    for kind in ["linear", "cosine", "constant_with_warmup"]:
        for warmup, total in [(0, 10), (3, 20), (5, 5), (7, 100)]:
            p = torch.nn.Parameter(torch.zeros(1))
            opt = torch.optim.SGD([p], lr=3e-4)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda_for(kind, warmup, total))
            lrs = []
            for _ in range(total + 2):  # two steps past the end: the factor stays clamped
                lrs.append(opt.param_groups[0]["lr"])
                opt.step()
                sched.step()
            tensors[f"{kind}.w{warmup}.t{total}"] = torch.tensor(lrs, dtype=torch.float64).view(torch.int64)
    st_io.save(os.path.join(out, "schedules.safetensors"), tensors, {"base_lr": "0.0003"})


# ------------------------------------------------------------------------------------------------
# torch AdamW + clip_grad_norm_ + LambdaLR
ADAMW_SHAPES = {  # name -> (shape, decay)
    "layers.0.q_proj.lora_A.weight": ((8, 64), True),
    "layers.0.q_proj.lora_B.weight": ((48, 8), True),
    "layers.0.q_proj.lora_magnitude_vector": ((48,), True),
    "layers.0.input_layernorm.weight": ((64,), False),
}


def adamw_case(out, g):
    base_lr, wd, max_norm, warmup = 1e-2, 0.1, 1.0, 3
    params = {n: torch.nn.Parameter(torch.randn(s, generator=g, dtype=F32)) for n, (s, _) in ADAMW_SHAPES.items()}
    tensors = {f"init.{n}": p.detach().clone() for n, p in params.items()}
    groups = [{"params": [params[n] for n, (_, d) in ADAMW_SHAPES.items() if d], "weight_decay": wd},
              {"params": [params[n] for n, (_, d) in ADAMW_SHAPES.items() if not d], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=base_lr, betas=(0.9, 0.999), eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda_for("linear", warmup, STEPS))
    norms, lrs = [], []
    for step in range(STEPS):
        # Scales spanning ~0.05..4 so that some steps clip and others do not.
        scale = float(torch.exp(torch.empty(1).uniform_(-3.0, 1.5, generator=g)))
        for n, p in params.items():
            grad = torch.randn(p.shape, generator=g, dtype=F32) * (scale / 10.0)
            tensors[f"grad.{step}.{n}"] = grad.clone()
            p.grad = grad
        lrs.append(opt.param_groups[0]["lr"])
        norms.append(float(torch.nn.utils.clip_grad_norm_(list(params.values()), max_norm)))
        opt.step()
        sched.step()
        for n, p in params.items():
            tensors[f"param.{step}.{n}"] = p.detach().clone()
    tensors["grad_norm"] = torch.tensor(norms, dtype=torch.float64).view(torch.int64)
    tensors["lr"] = torch.tensor(lrs, dtype=torch.float64).view(torch.int64)
    md = {"steps": str(STEPS), "base_lr": repr(base_lr), "weight_decay": repr(wd), "max_norm": repr(max_norm),
          "warmup": str(warmup)}
    st_io.save(os.path.join(out, "adamw.safetensors"), tensors, md)


# ------------------------------------------------------------------------------------------------
# bitsandbytes 8-bit blockwise AdamW, vectorised, float32 operation order of the C++ port
def quantize_2d(x, code, signed):
    pivot = torch.full(x.shape, 127, dtype=torch.long)
    upper_pivot = torch.full(x.shape, 255, dtype=torch.long)
    lower_pivot = torch.zeros(x.shape, dtype=torch.long)
    lower = torch.full(x.shape, -1.0 if signed else 0.0, dtype=F32)
    upper = torch.ones(x.shape, dtype=F32)
    val = code[pivot]
    for i in [64, 32, 16, 8, 4, 2, 1]:
        gt = x > val
        lower_pivot = torch.where(gt, pivot, lower_pivot)
        lower = torch.where(gt, val, lower)
        upper_pivot = torch.where(gt, upper_pivot, pivot)
        upper = torch.where(gt, upper, val)
        pivot = torch.where(gt, pivot + i, pivot - i)
        val = code[pivot]
    gt = x > val
    hi = torch.where(x > (upper + val) * 0.5, upper_pivot, pivot)
    lo = torch.where(x < (lower + val) * 0.5, lower_pivot, pivot)
    return torch.where(gt, hi, lo)


class Bnb8bitAdamW:
    def __init__(self, params, decay, code1, code2, beta1, beta2, eps, wd):
        self.params, self.decay, self.code1, self.code2 = params, decay, code1, code2
        self.b1, self.b2 = torch.tensor(beta1, dtype=F32), torch.tensor(beta2, dtype=F32)
        self.eps, self.wd = torch.tensor(eps, dtype=F32), torch.tensor(wd, dtype=F32)
        self.step_count = 0
        self.state = {}
        for n, p in params.items():
            if p.numel() >= 4096:
                blocks = (p.numel() + 255) // 256
                self.state[n] = {"q1": torch.zeros(p.numel(), dtype=torch.long),
                                 "q2": torch.zeros(p.numel(), dtype=torch.long),
                                 "a1": torch.zeros(blocks, dtype=F32), "a2": torch.zeros(blocks, dtype=F32)}
            else:
                self.state[n] = {"s1": torch.zeros(p.numel(), dtype=F32), "s2": torch.zeros(p.numel(), dtype=F32)}

    def step(self, lr_double, grads):
        self.step_count += 1
        t = self.step_count
        one = torch.tensor(1.0, dtype=F32)
        lr = torch.tensor(lr_double, dtype=F32)
        c1 = torch.tensor(1.0 - float(self.b1) ** t, dtype=F32)   # beta^t in double, rounded once
        c2 = torch.sqrt(torch.tensor(1.0 - float(self.b2) ** t, dtype=F32))
        step_size = (-lr * c2) / c1
        omb1, omb2 = one - self.b1, one - self.b2
        for n, p in self.params.items():
            w = p.view(-1)
            gr = grads[n].view(-1)
            st = self.state[n]
            decay = (one - lr * self.wd) if (self.decay[n] and float(self.wd) > 0) else one
            if "s1" in st:
                st["s1"] = st["s1"] * self.b1 + omb1 * gr
                st["s2"] = st["s2"] * self.b2 + omb2 * (gr * gr)
                w.copy_(w + step_size * (st["s1"] / (torch.sqrt(st["s2"]) + self.eps * c2)))
                w.copy_(w * decay)
                continue
            numel = w.numel()
            blocks = st["a1"].numel()
            pad = blocks * 256 - numel
            finite = torch.isfinite(gr)
            g0 = torch.where(finite, gr, torch.zeros_like(gr))
            blk = torch.arange(numel) // 256
            s2 = self.code2[st["q2"]] * st["a2"][blk]
            s2 = s2 * self.b2 + omb2 * g0 * g0
            s1 = self.code1[st["q1"]] * st["a1"][blk]
            s1 = s1 * self.b1 + omb1 * g0
            s1 = torch.where(finite, s1, torch.zeros_like(s1))
            s2 = torch.where(finite, s2, torch.zeros_like(s2))
            m1 = torch.nn.functional.pad(s1.abs(), (0, pad)).view(blocks, 256).max(dim=1).values
            m2 = torch.nn.functional.pad(s2.abs(), (0, pad)).view(blocks, 256).max(dim=1).values
            st["a1"], st["a2"] = m1, m2
            upd = w + step_size * (s1 / (torch.sqrt(s2) + c2 * self.eps))
            upd = upd * decay
            w.copy_(torch.where(finite, upd, w))
            a1, a2 = m1[blk], m2[blk]
            safe1 = torch.where(a1 > 0, a1, torch.ones_like(a1))
            safe2 = torch.where(a2 > 0, a2, torch.ones_like(a2))
            q1 = quantize_2d(s1 / safe1, self.code1, True)
            flip = torch.signbit(self.code1[q1]) != torch.signbit(s1)
            q1 = torch.where(flip, torch.where(s1 > 0, q1 + 1, q1 - 1), q1) % 256
            q1 = torch.where(a1 > 0, q1, torch.full_like(q1, 255))
            q2 = quantize_2d(s2 / safe2, self.code2, False)
            q2 = torch.where(a2 > 0, q2, torch.zeros_like(q2))
            st["q1"], st["q2"] = q1, q2


ADAM8_SHAPES = {  # name -> (shape, decay)
    "big.lora_A.weight": ((20, 250), True),     # 5000: 8-bit, last block partial (136)
    "exact.lora_B.weight": ((4096,), False),    # exactly min_8bit_size: 8-bit
    "small.lora_magnitude_vector": ((300,), True),  # < 4096: 32-bit bnb path
}


def adamw8bit_case(out, g, code1, code2):
    base_lr, wd, warmup = 1e-2, 0.1, 2
    params = {n: torch.randn(s, generator=g, dtype=F32) for n, (s, _) in ADAM8_SHAPES.items()}
    decay = {n: d for n, (_, d) in ADAM8_SHAPES.items()}
    tensors = {f"init.{n}": p.clone() for n, p in params.items()}
    opt = Bnb8bitAdamW(params, decay, code1, code2, 0.9, 0.999, 1e-8, wd)
    lam = lambda_for("cosine", warmup, STEPS)
    for step in range(STEPS):
        grads = {}
        for n, p in params.items():
            grad = torch.randn(p.shape, generator=g, dtype=F32) * 0.05
            # Heavy-tailed entries spread each block's dynamic range.
            grad = grad * torch.exp(torch.randn(p.shape, generator=g, dtype=F32))
            if n.startswith("exact") and step in (0, 1):
                grad.view(-1)[256:512] = 0.0  # a block whose states stay exactly 0 (absmax 0 path)
            if n.startswith("big") and step == 5:
                grad.view(-1)[7] = float("inf")  # non-finite entries are skipped
                grad.view(-1)[4999] = float("nan")
            grads[n] = grad
            tensors[f"grad.{step}.{n}"] = grad.clone()
        opt.step(base_lr * lam(step), grads)
        for n, p in params.items():
            tensors[f"param.{step}.{n}"] = p.clone()
    for n in params:
        st = opt.state[n]
        if "q1" in st:
            tensors[f"final.{n}.state1"] = st["q1"].to(torch.uint8)
            tensors[f"final.{n}.state2"] = st["q2"].to(torch.uint8)
            tensors[f"final.{n}.absmax1"] = st["a1"]
            tensors[f"final.{n}.absmax2"] = st["a2"]
        else:
            tensors[f"final.{n}.state1"] = st["s1"]
            tensors[f"final.{n}.state2"] = st["s2"]
    tensors["code1"] = code1
    tensors["code2"] = code2
    md = {"steps": str(STEPS), "base_lr": repr(base_lr), "weight_decay": repr(wd), "warmup": str(warmup)}
    st_io.save(os.path.join(out, "adamw8bit.safetensors"), tensors, md)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1234)
    schedules(out)
    adamw_case(out, g)
    adamw8bit_case(out, g, create_dynamic_map(True), create_dynamic_map(False))
    print(f"optim reference written to {out}")


if __name__ == "__main__":
    main()
