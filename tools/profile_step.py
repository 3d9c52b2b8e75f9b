#!/usr/bin/env python3
"""Kernel-level profile of one lucid-sweep update, replicated in PyTorch.

`lucid-worker bench` times the phases of the Rust engine, but libtorch's profiler is not reachable
from tch. This script replays the same operations (the same libtorch kernels) in PyTorch, so that
torch.profiler can say which kernels the time goes to, and times variants of the update that the
engine could adopt. It checks that each variant computes the same network input and gradient as the
baseline before timing it. It prints one JSON object.

    python3 tools/profile_step.py --layer conv5 --batch 512 --precision bf16 --profile > profile.json
    python3 tools/profile_step.py --micro --batch 512 > components.json   # per-layer and per-op timings

Random weights at the ecoset widths of alexnet_v2 (timing does not depend on the weights).
"""

import argparse
import json
import math
import random
import time

import torch
import torch.nn.functional as F

WIDTHS = [64, 192, 384, 384, 256, 4096, 4096, 565]
# (kernel, stride, same padding, pool after)
LAYERS = [(11, 4, False, True), (5, 1, True, True), (3, 1, True, False), (3, 1, True, False),
          (3, 1, True, True), (5, 1, False, False), (1, 1, True, False), (1, 1, True, False)]
NAMES = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
PAD, J1, J2 = 12, 8, 4
ANGLES = list(range(-10, 11)) + [0] * 5
COLOR = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])


def color_matrix():
    return COLOR / COLOR.norm(dim=0).max()


def spectrum_scale(size):
    fy = torch.fft.fftfreq(size, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(size, dtype=torch.float64)[: size // 2 + 1]
    fx = fx.abs()
    fx[-1] = 0.5
    freqs = (fx[None, :] ** 2 + fy ** 2).sqrt()
    return (1.0 / freqs.clamp_min(1.0 / size) * size).float()


def scaled_side(side, i):
    s = 1.0 + (i - 5) / 50.0
    return int(torch.tensor(s, dtype=torch.float32) * side)


def draw(rng):
    return ((rng.randint(0, J1), rng.randint(0, J1)), rng.randint(0, 10), rng.choice(ANGLES),
            (rng.randint(0, J2), rng.randint(0, J2)))


def affine(size, d, padded_frame=True):
    """The fused transform's [2, 3] matrix (the engine's `fused_affine`). With padded_frame=False the
    normalised coordinates are those of the unpadded image."""
    (j1y, j1x), si, angle, (j2y, j2x) = d
    padded = size + 2 * PAD
    scale_input = size + 2 * PAD - J1
    scaled = scaled_side(scale_input, si)
    out = scaled - J2
    r = scale_input / scaled
    c = (scaled - 1) / 2
    s, cs = math.sin(math.radians(angle)), math.cos(math.radians(angle))
    rot = lambda x, y: (cs * x - s * y, s * x + cs * y)
    rx, ry = rot(j2x - c, j2y - c)
    tx, ty = j1x + r * (c + rx), j1y + r * (c + ry)
    if not padded_frame:
        tx, ty, side = tx - PAD, ty - PAD, size
    else:
        side = padded
    k = r * (out - 1) / (side - 1)
    ox, oy = rot(1.0, 1.0)
    bx = 2 / (side - 1) * (r * (out - 1) / 2 * ox + tx) - 1
    by = 2 / (side - 1) * (r * (out - 1) / 2 * oy + ty) - 1
    return torch.tensor([[k * cs, -k * s, bx], [k * s, k * cs, by]]), out


class Net:
    def __init__(self, device, kind, channels_last=True, pad_conv1=0):
        g = torch.Generator().manual_seed(0)
        self.w, self.b = [], []
        cin = 3
        for (k, _, _, _), cout in zip(LAYERS, WIDTHS):
            w = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5
            self.w.append(w.to(device))
            self.b.append((torch.randn(cout, generator=g) * 0.01).to(device))
            cin = cout
        self.kind = kind
        self.pad_conv1 = pad_conv1
        self.wk = [w.to(kind) for w in self.w]
        self.bk = [b.to(kind) for b in self.b]
        if pad_conv1:
            self.wk[0] = F.pad(self.wk[0], (0, 0, 0, 0, 0, pad_conv1 - 3))
        if channels_last:
            self.wk = [w.contiguous(memory_format=torch.channels_last) for w in self.wk]
        self.channels_last = channels_last
        self.s2d = False

    def space_to_depth(self):
        self.s2d = True
        self.wk[0] = space_to_depth_weights(self.w[0].to(self.kind)).contiguous(
            memory_format=torch.channels_last)
        return self

    def forward(self, h, target):
        for i in range(target + 1):
            k, s, same, pool = LAYERS[i]
            if i == 0 and self.s2d:
                k, s = 3, 1
            h = F.conv2d(h, self.wk[i], None, s, k // 2 if same else 0)
            if i == target:
                return h.float()
            h = F.relu(h + self.bk[i].view(1, -1, 1, 1))
            if pool:
                h = F.max_pool2d(h, 3, 2)


class Baseline:
    """The engine's update up to the second session: select × scale, complex, irfft, /4, colour 1x1
    conv, sigmoid, pad with 0.5, affine grid for the batch, grid_sampler, (x − 0.5)·2, cast,
    channels-last."""

    def __init__(self, size, device, net):
        self.size, self.net, self.device = size, net, device
        self.scale = spectrum_scale(size).to(device)[None, None]
        self.color = color_matrix().view(3, 3, 1, 1).to(device)

    def var(self, init):  # init [B, 2, 3, H, Wf]
        return init.clone().requires_grad_(True)

    def net_input(self, v, d):
        real = v.select(1, 0) * self.scale
        imag = v.select(1, 1) * self.scale
        img = torch.fft.irfft2(torch.complex(real, imag), s=(self.size, self.size), norm="backward") / 4
        img = torch.sigmoid(F.conv2d(img, self.color))
        padded = F.pad(img - 0.5, (PAD,) * 4) + 0.5
        theta, out = affine(self.size, d)
        theta = theta.to(self.device)[None].expand(v.shape[0], 2, 3)
        grid = torch.affine_grid_generator(theta, [v.shape[0], 3, out, out], True)
        x = torch.grid_sampler(padded, grid, 0, 0, True)
        x = ((x - 0.5) * 2).to(self.net.kind)
        return x.contiguous(memory_format=torch.channels_last) if self.net.channels_last else x


class Restructured(Baseline):
    """The engine's update since the third session (variant "restructured_native_s2d", with
    Net.space_to_depth and FewKernelAdam): the variable stored [B, 3, H, Wf, 2] (viewed as complex, no copies),
    scale/8 folded into one multiply, tanh(t/2)=2·sigmoid(t)−1 so the network input needs no
    shift, the padding replaced by sampling the unpadded image plus a per-update mask (−1 where the
    padded image ends), grid built once and broadcast over the batch, one cast into channels-last."""

    def __init__(self, size, device, net, sampler="dispatch", color="conv"):
        super().__init__(size, device, net)
        self.scale8 = (spectrum_scale(size) / 8).to(device)[None, None]
        self.sampler = sampler
        self.color_mode = color
        self.color_mat = color_matrix().to(device)

    def var(self, init):
        return init.permute(0, 2, 3, 4, 1).contiguous().requires_grad_(True)

    def net_input(self, v, d):
        spec = torch.view_as_complex(v) * self.scale8
        t = torch.fft.irfft2(spec, s=(self.size, self.size), norm="backward")
        if self.color_mode == "conv":
            t = F.conv2d(t, self.color)
        elif self.color_mode == "bcast":
            t = (t.unsqueeze(1) * self.color_mat.view(1, 3, 3, 1, 1)).sum(2)
        else:
            b = t.shape[0]
            t = torch.matmul(self.color_mat, t.view(b, 3, -1)).view_as(t)
        z = torch.tanh(t)
        b = v.shape[0]
        theta_p, out = affine(self.size, d, True)
        theta_i, _ = affine(self.size, d, False)
        grid = torch.affine_grid_generator(theta_i.to(self.device)[None], [1, 3, out, out], True)
        grid_p = torch.affine_grid_generator(theta_p.to(self.device)[None], [1, 1, out, out], True)
        ones = torch.ones(1, 1, self.size + 2 * PAD, self.size + 2 * PAD, device=self.device)
        mask = torch.grid_sampler_2d(ones, grid_p, 0, 0, True) - 1.0
        if self.sampler == "native":
            x = torch.grid_sampler_2d(z, grid.expand(b, out, out, 2), 0, 0, True)
        else:
            x = torch.grid_sampler(z, grid.expand(b, out, out, 2), 0, 0, True)
        x = x + mask
        if self.net.s2d:
            return space_to_depth_input(x, self.net.kind)
        if self.net.channels_last:
            x = x.permute(0, 2, 3, 1).to(self.net.kind).permute(0, 3, 1, 2)
        else:
            x = x.to(self.net.kind)
        if self.net.pad_conv1:
            x = F.pad(x, (0, 0, 0, 0, 0, self.net.pad_conv1 - 3))
        return x


class TfAdam:
    """TensorFlow's Adam in separate libtorch ops (the engine's up to the second session)."""

    def __init__(self, var, lr=0.05):
        self.m, self.v, self.t, self.lr = torch.zeros_like(var), torch.zeros_like(var), 0, lr

    @torch.no_grad()
    def step(self, var):
        self.t += 1
        g = var.grad
        lr_t = self.lr * math.sqrt(1 - 0.999 ** self.t) / (1 - 0.9 ** self.t)
        self.m.mul_(0.9).add_(g * 0.1)
        self.v.mul_(0.999).add_(g * g * 0.001)
        var.sub_(self.m / (self.v.sqrt() + 1e-8) * lr_t)
        g.zero_()


class FewKernelAdam(TfAdam):
    """The same update in few in-place kernels (the engine's Adam since the third session does the same
    with lerp for both moments)."""

    @torch.no_grad()
    def step(self, var):
        self.t += 1
        g = var.grad
        lr_t = self.lr * math.sqrt(1 - 0.999 ** self.t) / (1 - 0.9 ** self.t)
        self.m.lerp_(g, 0.1)
        self.v.mul_(0.999).addcmul_(g, g, value=0.001)
        denom = self.v.sqrt().add_(1e-8)
        var.addcdiv_(self.m, denom, value=-lr_t)
        g.zero_()


class FusedAdam(TfAdam):
    """torch._fused_adam_ with ε rescaled each step so that it lands where TensorFlow adds it."""

    def __init__(self, var, lr=0.05):
        super().__init__(var, lr)
        self.steps = torch.zeros((), device=var.device)

    @torch.no_grad()
    def step(self, var):
        self.t += 1
        self.steps += 1
        eps = 1e-8 / math.sqrt(1 - 0.999 ** self.t)
        torch._fused_adam_([var], [var.grad], [self.m], [self.v], [], [self.steps], lr=self.lr,
                           beta1=0.9, beta2=0.999, weight_decay=0.0, eps=eps, amsgrad=False,
                           maximize=False)
        var.grad.zero_()


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def objective(acts, channels):
    b, _, h, w = acts.shape
    idx = channels.view(b, 1, 1, 1).expand(b, 1, h, w)
    return acts.gather(1, idx).mean(dim=(1, 2, 3))


def run_variant(param, adam_cls, init, target, channels, draws, timed):
    v = param.var(init)
    adam = adam_cls(v)

    def update(d):
        x = param.net_input(v, d)
        loss = -objective(param.net.forward(x, target), channels).sum()
        loss.backward()
        adam.step(v)

    for i in range(11):  # every transform output size once: cuDNN autotuning
        update(((4, 4), i, 0, (2, 2)))
    for d in draws[:5]:
        update(d)
    sync()
    start = time.perf_counter()
    for d in draws[:timed]:
        update(d)
    sync()
    return (time.perf_counter() - start) / timed * 1e3, v, adam


def profile_table(param, adam_cls, init, target, channels, draws, rows=30):
    v = param.var(init)
    adam = adam_cls(v)
    for d in draws[:16]:
        x = param.net_input(v, d)
        (-objective(param.net.forward(x, target), channels).sum()).backward()
        adam.step(v)
    sync()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA,
                                            torch.profiler.ProfilerActivity.CPU]) as prof:
        for d in draws[16:26]:
            x = param.net_input(v, d)
            (-objective(param.net.forward(x, target), channels).sum()).backward()
            adam.step(v)
        sync()
    kernels = []
    for e in prof.key_averages():
        t = getattr(e, "self_device_time_total", None)
        if t is None:
            t = getattr(e, "self_cuda_time_total", 0)
        if t and t > 0:
            kernels.append((e.key, t / 10 / 1e3, e.count / 10))
    kernels.sort(key=lambda k: -k[1])
    total = sum(k[1] for k in kernels if not k[0].startswith("aten::") and not k[0].startswith("autograd"))
    return {"gpu_ms_per_update_kernels": total,
            "top": [{"name": n[:120], "ms_per_update": round(t, 4), "calls_per_update": c}
                    for n, t, c in kernels[:rows]]}


def timed(fn, reps=20):
    """Mean ms of fn() over reps calls after 3 warm-up calls."""
    for _ in range(3):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return round((time.perf_counter() - start) / reps * 1e3, 4)


def space_to_depth_weights(w):
    """conv1's [O, C, 11, 11] stride-4 kernel as the [O, 16C, 3, 3] stride-1 kernel over 4x4 blocks."""
    o, c, k, _ = w.shape
    w = F.pad(w, (0, 12 - k, 0, 12 - k)).view(o, c, 3, 4, 3, 4)
    return w.permute(0, 1, 3, 5, 2, 4).reshape(o, c * 16, 3, 3)


def space_to_depth_input(x, kind):
    """[B, C, n, n] → [B, 16C, R/4, R/4] channels-last in `kind`, R = 4·⌊(n−11)/4⌋ + 12 (one copy;
    n + 1 = R, for n ≡ 3 mod 4, first appends a zero row and column)."""
    b, c, n, _ = x.shape
    r = 4 * ((n - 11) // 4) + 12
    q = r // 4
    if r > n:
        x = F.pad(x, (0, r - n, 0, r - n))
    dest = torch.empty(b, q, q, c, 4, 4, dtype=kind, device=x.device)
    # dest[b, i, j, c, dy, dx] = x[b, c, 4i + dy, 4j + dx]
    dest.permute(0, 3, 1, 4, 2, 5).copy_(x[:, :, :r, :r].view(b, c, q, 4, q, 4))
    return dest.view(b, q, q, c * 16).permute(0, 3, 1, 2)


def micro(dev, kind, b):
    """Component timings (fwd + bwd) at batch b, 236 px network input."""
    res = {}
    net = Net(dev, kind)
    n = 236
    x = torch.randn(b, 3, n, n, device=dev)
    # network layers one by one: forward and data-gradient
    h = x.to(kind).contiguous(memory_format=torch.channels_last)
    for i in range(5):
        k, s, same, pool = LAYERS[i]
        hin = h.detach().requires_grad_(True)
        w = net.wk[i]
        out = F.conv2d(hin, w, None, s, k // 2 if same else 0)
        g = torch.randn_like(out)
        res[f"{NAMES[i]}_fwd"] = timed(lambda: F.conv2d(hin, w, None, s, k // 2 if same else 0))
        res[f"{NAMES[i]}_fwd_bwd"] = timed(
            lambda: torch.autograd.grad(F.conv2d(hin, w, None, s, k // 2 if same else 0), hin, g))
        h = F.relu(out.detach() + net.bk[i].view(1, -1, 1, 1))
        if pool:
            hp = h.detach().requires_grad_(True)
            po = F.max_pool2d(hp, 3, 2)
            gp = torch.randn_like(po)
            res[f"{NAMES[i]}_pool_fwd_bwd"] = timed(lambda: torch.autograd.grad(F.max_pool2d(hp, 3, 2), hp, gp))
            hn = hp.detach().contiguous()
            hn.requires_grad_(True)
            res[f"{NAMES[i]}_pool_nchw_fwd_bwd"] = timed(lambda: torch.autograd.grad(F.max_pool2d(hn, 3, 2), hn, gp.contiguous()))
            h = po.detach()
    # conv1 by space-to-depth, checked against the direct convolution
    w1 = net.w[0].to(kind)
    w1s = space_to_depth_weights(w1).contiguous(memory_format=torch.channels_last)
    for nn in (236, 237, 238, 239):
        xs = torch.randn(4, 3, nn, nn, device=dev)
        direct = F.conv2d(xs.to(kind).contiguous(memory_format=torch.channels_last), net.wk[0], None, 4)
        s2d = F.conv2d(space_to_depth_input(xs, kind), w1s, None, 1)
        res[f"s2d_check_{nn}"] = [list(direct.shape) == list(s2d.shape),
                                  (direct.float() - s2d.float()).abs().max().item() if direct.shape == s2d.shape else -1,
                                  direct.float().abs().max().item()]
    xf = x.detach().requires_grad_(True)
    g1 = torch.randn(b, 64, (n - 11) // 4 + 1, (n - 11) // 4 + 1, device=dev, dtype=kind)
    res["conv1_input_cast_direct_fwd_bwd"] = timed(lambda: torch.autograd.grad(
        F.conv2d(xf.to(kind).contiguous(memory_format=torch.channels_last), net.wk[0], None, 4), xf, g1))
    res["conv1_input_cast_s2d_fwd_bwd"] = timed(lambda: torch.autograd.grad(
        F.conv2d(space_to_depth_input(xf, kind), w1s, None, 1), xf, g1))
    # colour mixing of [b, 3, 224, 224] fp32, forward + backward
    t = torch.randn(b, 3, 224, 224, device=dev, requires_grad=True)
    gt = torch.randn_like(t)
    cm = color_matrix().to(dev)
    res["colour_conv_fwd_bwd"] = timed(lambda: torch.autograd.grad(F.conv2d(t, cm.view(3, 3, 1, 1)), t, gt))
    res["colour_bcast_fwd_bwd"] = timed(lambda: torch.autograd.grad(
        (t.unsqueeze(1) * cm.view(1, 3, 3, 1, 1)).sum(2), t, gt))
    tc = torch.randn(3, b * 224 * 224, device=dev, requires_grad=True)
    gc = torch.randn_like(tc)
    res["colour_channel_major_mm_fwd_bwd"] = timed(lambda: torch.autograd.grad(cm @ tc, tc, gc))
    res["colour_cols_fwd_bwd"] = timed(lambda: torch.autograd.grad(torch.stack(
        [t[:, 0] * cm[c, 0] + t[:, 1] * cm[c, 1] + t[:, 2] * cm[c, 2] for c in range(3)], 1), t, gt))
    res["tanh_fwd_bwd"] = timed(lambda: torch.autograd.grad(torch.tanh(t), t, gt))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layer", default="conv5")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--precision", default="bf16", choices=["tf32", "bf16", "fp32"])
    ap.add_argument("--timed", type=int, default=30)
    ap.add_argument("--variants", default="all")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--micro", action="store_true", help="component timings only")
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.backends.cudnn.benchmark = True
    tf32 = a.precision != "fp32"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    kind = torch.bfloat16 if a.precision == "bf16" else torch.float32
    target = NAMES.index(a.layer)
    b, size = a.batch, a.size
    torch.manual_seed(0)
    init = (torch.randn(b, 2, 3, size, size // 2 + 1) * 0.01).to(dev)
    channels = (torch.arange(b) % WIDTHS[target]).to(dev)
    rng = random.Random(1)
    draws = [draw(rng) for _ in range(200)]
    out = {"device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu", "torch": torch.__version__, "layer": a.layer,
           "batch": b, "size": size, "precision": a.precision, "variants": {}}

    if a.micro:
        out["micro"] = micro(dev, kind, b)
        print(json.dumps(out, indent=1))
        return
    net = Net(dev, kind)
    base = Baseline(size, dev, net)
    # equivalence of the restructured update with the baseline: network input and gradient
    checks = {}
    for name, p in [("restructured", Restructured(size, dev, net)),
                    ("native_sampler", Restructured(size, dev, net, "native")),
                    ("matmul_colour", Restructured(size, dev, net, "native", "matmul"))]:
        diffs, gdiffs = [], []
        for d in draws[:6]:
            vb, vr = base.var(init[:8]), p.var(init[:8])
            xb, xr = base.net_input(vb, d).float(), p.net_input(vr, d).float()
            w = torch.randn_like(xb)
            (xb * w).sum().backward()
            (xr * w).sum().backward()
            diffs.append((xb - xr).abs().max().item())
            gb = vb.grad.permute(0, 2, 3, 4, 1)
            gdiffs.append(((gb - vr.grad).norm() / gb.norm()).item())
        checks[name] = {"max_abs_input_diff": max(diffs), "max_rel_grad_diff": max(gdiffs)}
    out["equivalence"] = checks

    variants = {
        "baseline": (lambda: base, TfAdam),
        "few_kernel_adam": (lambda: base, FewKernelAdam),
        "fused_adam": (lambda: base, FusedAdam),
        "restructured": (lambda: Restructured(size, dev, net), FewKernelAdam),
        "restructured_native": (lambda: Restructured(size, dev, net, "native"), FewKernelAdam),
        "restructured_native_matmul": (lambda: Restructured(size, dev, net, "native", "matmul"), FewKernelAdam),
        "restructured_native_fused": (lambda: Restructured(size, dev, net, "native"), FusedAdam),
        "restructured_native_bcast": (lambda: Restructured(size, dev, net, "native", "bcast"), FewKernelAdam),
        "restructured_native_s2d": (lambda: Restructured(size, dev, Net(dev, kind).space_to_depth(), "native"), FewKernelAdam),
        "restructured_native_bcast_s2d": (lambda: Restructured(size, dev, Net(dev, kind).space_to_depth(), "native", "bcast"), FewKernelAdam),
        "restructured_native_bcast_s2d_fused": (lambda: Restructured(size, dev, Net(dev, kind).space_to_depth(), "native", "bcast"), FusedAdam),
        "restructured_native_conv1pad4": (lambda: Restructured(size, dev, Net(dev, kind, True, 4), "native"), FewKernelAdam),
        "restructured_native_conv1pad8": (lambda: Restructured(size, dev, Net(dev, kind, True, 8), "native"), FewKernelAdam),
    }
    chosen = list(variants) if a.variants == "all" else a.variants.split(",")
    for name in chosen:
        mk, adam_cls = variants[name]
        try:
            ms, _, _ = run_variant(mk(), adam_cls, init, target, channels, draws, a.timed)
            out["variants"][name] = {"ms_per_update": round(ms, 3),
                                     "img_per_s": round(b / (ms * 513 / 1e3), 2)}
        except Exception as e:  # record and go on: one failing variant must not hide the others
            out["variants"][name] = {"error": str(e)[:400]}
        torch.cuda.empty_cache()
    if a.profile:
        out["profile_baseline"] = profile_table(base, TfAdam, init, target, channels, draws)
        out["profile_restructured"] = profile_table(Restructured(size, dev, net, "native"), FewKernelAdam,
                                                    init, target, channels, draws)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
