#!/usr/bin/env python3
"""The peer to beat (issue 18): lucid-sweep's batched lucid update written in PyTorch and compiled with
`torch.compile(mode="max-autotune")`, the strongest thing a PyTorch user would reach for.

Same update as the engine (tools/profile_step.py's `Restructured`: the FFT parameterisation with the
1/f scale, decorrelated colour, tanh for lucid's sigmoid mapped to [-1, 1], the composed affine
transform sampled from the unpadded image plus the padding mask, the bf16 network up to the target
layer, the channel objective, TensorFlow's Adam), 513 updates per image. Only what varies per update is
an input of the compiled graph (the variable, the two affine matrices); the transform's output size
takes 11 values, so 11 graphs are compiled once during warm-up, then reused.

It checks that the compiled update computes the same objective and gradient as the eager one before
timing it, and prints one JSON object: both forms' ms per update and images per second (at 513
updates), and the compile time. Run it in the same device session as `lucid-worker bench` on the same
layers and compare images per second:

    python3 tools/compiled_peer.py --layer conv5 --batch 512 --precision bf16 > peer.json
    python3 tools/compiled_peer.py --device cpu --layer conv2 --batch 4 --size 64 --timed 3   # CPU check
"""

import argparse
import json
import random
import time

import torch
import torch.nn.functional as F

from profile_step import (NAMES, PAD, WIDTHS, FewKernelAdam, Net, Restructured, affine, draw,
                          objective, sync)


class CompiledUpdate:
    """One update as a compiled loss over (variable, affine matrices), its backward compiled with it by
    AOTAutograd, and Adam in few in-place kernels (compiled too)."""

    def __init__(self, param, target, channels, compile_mode):
        self.param, self.target, self.channels = param, target, channels
        loss = self.loss
        adam_step = self._adam
        if compile_mode:
            loss = torch.compile(loss, mode=compile_mode, dynamic=False, fullgraph=True)
            adam_step = torch.compile(adam_step, mode=compile_mode, dynamic=False, fullgraph=True)
        self.compiled_loss, self.compiled_adam = loss, adam_step

    def loss(self, v, theta_i, theta_p, out: int):
        p = self.param
        spec = torch.view_as_complex(v) * p.scale8
        t = torch.fft.irfft2(spec, s=(p.size, p.size), norm="backward")
        z = torch.tanh(F.conv2d(t, p.color))
        b = v.shape[0]
        grid = F.affine_grid(theta_i[None], [1, 3, out, out], align_corners=True)
        grid_p = F.affine_grid(theta_p[None], [1, 1, out, out], align_corners=True)
        ones = torch.ones(1, 1, p.size + 2 * PAD, p.size + 2 * PAD, device=v.device)
        mask = F.grid_sample(ones, grid_p, "bilinear", "zeros", align_corners=True) - 1.0
        x = F.grid_sample(z, grid.expand(b, out, out, 2), "bilinear", "zeros", align_corners=True) + mask
        x = x.to(p.net.kind).contiguous(memory_format=torch.channels_last)
        return -objective(p.net.forward(x, self.target), self.channels).sum()

    @staticmethod
    def _adam(var, grad, m, vv, lr_t):
        m.lerp_(grad, 0.1)
        vv.mul_(0.999).addcmul_(grad, grad, value=0.001)
        var.sub_(m / vv.sqrt().add_(1e-8) * lr_t)


def thetas(size, d, device):
    theta_p, out = affine(size, d, True)
    theta_i, _ = affine(size, d, False)
    return theta_i.to(device), theta_p.to(device), out


def run(update, init, draws, timed, device):
    """Warm-up over every output size, then `timed` updates; ms per update and the compile seconds."""
    v = update.param.var(init)
    m, vv = torch.zeros_like(v), torch.zeros_like(v)
    step = [0]

    def one(d):
        step[0] += 1
        theta_i, theta_p, out = thetas(update.param.size, d, device)
        loss = update.compiled_loss(v, theta_i, theta_p, out)
        (g,) = torch.autograd.grad(loss, v)
        t = step[0]
        # a tensor, not a float: a float would be a constant of the graph, recompiled every step
        lr_t = torch.tensor(0.05 * (1 - 0.999 ** t) ** 0.5 / (1 - 0.9 ** t), device=device)
        with torch.no_grad():
            update.compiled_adam(v, g, m, vv, lr_t)

    start = time.perf_counter()
    for i in range(11):  # every transform output size once: compilation and autotuning
        one(((4, 4), i, 0, (2, 2)))
    sync()
    compile_seconds = time.perf_counter() - start
    for d in draws[:3]:
        one(d)
    sync()
    start = time.perf_counter()
    for d in draws[:timed]:
        one(d)
    sync()
    return (time.perf_counter() - start) / timed * 1e3, compile_seconds


def equivalence(eager, compiled, init, draws, device):
    """Largest relative difference of the objective and of the gradient, compiled vs eager."""
    worst_loss, worst_grad = 0.0, 0.0
    for d in draws[:3]:
        theta_i, theta_p, out = thetas(eager.param.size, d, device)
        v1, v2 = eager.param.var(init), compiled.param.var(init)
        l1 = eager.compiled_loss(v1, theta_i, theta_p, out)
        l2 = compiled.compiled_loss(v2, theta_i, theta_p, out)
        (g1,) = torch.autograd.grad(l1, v1)
        (g2,) = torch.autograd.grad(l2, v2)
        worst_loss = max(worst_loss, abs((l1 - l2).item()) / max(abs(l1.item()), 1e-12))
        worst_grad = max(worst_grad, ((g1 - g2).norm() / g1.norm().clamp_min(1e-30)).item())
    return {"max_rel_objective_diff": worst_loss, "max_rel_grad_diff": worst_grad}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layer", default="conv5", choices=NAMES)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--precision", default="bf16", choices=["tf32", "bf16", "fp32"])
    ap.add_argument("--timed", type=int, default=30)
    ap.add_argument("--mode", default="max-autotune", help="torch.compile mode")
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.backends.cudnn.benchmark = True
    tf32 = a.precision != "fp32"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch._dynamo.config.cache_size_limit = 32  # 11 output sizes per compiled function
    kind = torch.bfloat16 if a.precision == "bf16" else torch.float32
    target = NAMES.index(a.layer)
    torch.manual_seed(0)
    init = (torch.randn(a.batch, 2, 3, a.size, a.size // 2 + 1) * 0.01).to(dev)
    channels = (torch.arange(a.batch) % WIDTHS[target]).to(dev)
    rng = random.Random(1)
    draws = [draw(rng) for _ in range(200)]
    net = Net(dev, kind)
    param = Restructured(a.size, dev, net, "native")
    eager = CompiledUpdate(param, target, channels, None)
    compiled = CompiledUpdate(param, target, channels, a.mode)
    out = {
        "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "layer": a.layer,
        "batch": a.batch,
        "size": a.size,
        "precision": a.precision,
        "mode": a.mode,
    }
    for name, update in [("eager", eager), ("compiled", compiled)]:
        ms, compile_seconds = run(update, init, draws, a.timed, dev)
        out[name] = {
            "ms_per_update": round(ms, 3),
            "img_per_s": round(a.batch / (ms * 513 / 1e3), 3),
            "warmup_seconds": round(compile_seconds, 1),
        }
    # after timing, so that every graph is compiled already
    out["equivalence"] = equivalence(eager, compiled, init, draws, dev)
    out["compiled_over_eager"] = round(out["eager"]["ms_per_update"] / out["compiled"]["ms_per_update"], 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
