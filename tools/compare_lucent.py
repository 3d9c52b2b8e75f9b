#!/usr/bin/env python3
"""Compare lucent (torch-lucent 0.1.8) with our engine (`lucid-worker render`) on one alexnet_v2 model.

Both engines render the same layer and channels from the same weights. Every saved final image (a PNG,
untransformed, at the render size) is then scored by ONE common PyTorch forward pass: the channel
objective = mean over H, W of the layer's pre-bias conv output. The script prints, per channel, the
activation each engine reached (plus our sidecar's `objective_end`), and a summary with the mean
activation of each engine and the wall time per image of each.

Usage (from the repository root; see tools/README.md for the environment):
    PY=/root/.cache/lucid-sweep/compare-venv/bin/python
    $PY tools/compare_lucent.py --self-check
    $PY tools/compare_lucent.py --checkpoint fixtures/alexnet_small/safetensors/training_seed_01.safetensors \
        --layer conv5 --channels 0-7 --steps 128 --size 224 --device cpu --out out/compare --json out/compare.json

Notes on the two engines' settings:
  * lucent: `render.render_vis(model, objectives.channel(layer, c), param_f=lambda: param.image(size),
    transforms=transform.standard_transforms, thresholds=(steps,), preprocess=False, ...)`, one channel
    per call. `preprocess=False` because the model below does tf-slim's own input scaling
    `(x - 0.5) * 2` on a [0, 1] image; lucent's default `preprocess=True` would add ImageNet
    mean/std normalisation in front of it, which our engine does not do. lucent makes `steps` Adam
    updates.
  * ours: `lucid-worker render ... --steps N --batch B` makes `steps + 1` Adam updates (lucid's
    render_vis with thresholds=(N,)); the update counts of both are reported.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from collections import OrderedDict

import numpy as np

# (name, kernel, stride, padding, relu, max-pool after) -- tf-slim alexnet_v2, pre-bias conv exposed by name.
LAYERS = [
    ("conv1", 11, 4, 0, True, True),  # VALID
    ("conv2", 5, 1, 2, True, True),  # SAME
    ("conv3", 3, 1, 1, True, False),  # SAME
    ("conv4", 3, 1, 1, True, False),  # SAME
    ("conv5", 3, 1, 1, True, True),  # SAME
    ("fc6", 5, 1, 0, True, False),  # VALID
    ("fc7", 1, 1, 0, True, False),
    ("fc8", 1, 1, 0, False, False),
]
LAYER_NAMES = [layer[0] for layer in LAYERS]
SCOPE = "alexnet_v2"


# --------------------------------------------------------------------------------------------------
# torch / lucent imports (lazy, so `--help` works without them)
# --------------------------------------------------------------------------------------------------


def _import_torch():
    import torch  # noqa: F401

    return torch


def _import_lucent():
    """Imports lucent and returns (render, param, transform, objectives, versions)."""
    try:
        import IPython.display  # noqa: F401  (lucent imports it for notebook display only)
    except ImportError:
        # GPU hosts may lack IPython; lucent only needs it to show images in notebooks, which this
        # script never does, so a stub module is enough.
        import types

        ipython = types.ModuleType("IPython")
        display = types.ModuleType("IPython.display")
        display.display = lambda *a, **k: None
        display.HTML = lambda *a, **k: None
        ipython.display = display
        sys.modules["IPython"] = ipython
        sys.modules["IPython.display"] = display
    import kornia
    import lucent
    from lucent.optvis import objectives, param, render, transform

    versions = {
        "lucent": getattr(lucent, "__version__", None) or _dist_version("torch-lucent"),
        "kornia": kornia.__version__,
    }
    return render, param, transform, objectives, versions


def _dist_version(name):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # pragma: no cover - informational only
        return None


# --------------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------------


def build_model(weights_path: str):
    """alexnet_v2 as a torch module whose submodules `conv1` ... `fc8` output the pre-bias conv.

    Each layer's conv is an `nn.Conv2d(bias=False)` submodule named after the layer, so lucent's
    `objectives.channel("<layer>", c)` (which hooks submodule outputs by name) sees the same tensor as
    our engine's objective. Biases are buffers (not submodules), added after the hooked conv.
    """
    torch = _import_torch()
    from torch import nn
    import torch.nn.functional as F
    from safetensors.numpy import load_file

    tensors = load_file(weights_path)

    class AlexNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            for name, k, s, pad, _relu, _pool in LAYERS:
                w = tensors[f"{SCOPE}/{name}/weights"]  # HWIO
                b = tensors[f"{SCOPE}/{name}/biases"]
                if w.shape[0] != k or w.shape[1] != k:
                    raise ValueError(f"{name}: kernel {w.shape[:2]}, expected {k}x{k}")
                conv = nn.Conv2d(w.shape[2], w.shape[3], k, stride=s, padding=pad, bias=False)
                with torch.no_grad():
                    conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))))
                conv.weight.requires_grad_(False)
                self.add_module(name, conv)
                self.register_buffer(f"{name}_bias", torch.from_numpy(b.copy()))

        def forward(self, x):
            net = (x - 0.5) * 2.0
            for name, _k, _s, _pad, relu, pool in LAYERS:
                net = getattr(self, name)(net) + getattr(self, f"{name}_bias").view(1, -1, 1, 1)
                if relu:
                    net = F.relu(net)
                if pool:
                    net = F.max_pool2d(net, kernel_size=3, stride=2)
            return net

    return AlexNetV2().eval()


def layer_outputs(model, x, layers=None):
    """Runs one forward pass and returns {layer: pre-bias conv output} for the requested layers."""
    torch = _import_torch()
    layers = layers or LAYER_NAMES
    captured = {}
    handles = [
        getattr(model, name).register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach())
        )
        for name in layers
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return captured


def self_check(checkpoint: str, reference: str, tol: float = 1e-4) -> bool:
    """Compares the module's pre-bias outputs with the TF reference (NHWC) arrays."""
    torch = _import_torch()
    model = build_model(checkpoint)
    ref = np.load(reference)
    x = torch.from_numpy(np.ascontiguousarray(ref["input"].transpose(0, 3, 1, 2)))
    outs = layer_outputs(model, x)
    ok = True
    print(f"self-check: {checkpoint} vs {reference} (input {tuple(ref['input'].shape)} NHWC)")
    for name in LAYER_NAMES:
        want = ref[name]
        got = outs[name].numpy().transpose(0, 2, 3, 1)
        if got.shape != want.shape:
            print(f"  {name:5s} shape {got.shape} != reference {want.shape}  FAIL")
            ok = False
            continue
        scale = max(float(np.abs(want).max()), 1e-12)
        rel = float(np.abs(got - want).max()) / scale
        good = rel <= tol
        ok &= good
        print(f"  {name:5s} {str(want.shape):18s} max|diff|/max|ref| = {rel:.2e}  {'ok' if good else 'FAIL'}")
    print("self-check " + ("passed" if ok else "FAILED"))
    return ok


# --------------------------------------------------------------------------------------------------
# images and the common evaluation
# --------------------------------------------------------------------------------------------------


def save_png(image_hwc: np.ndarray, path: str) -> None:
    from PIL import Image

    arr = np.clip(np.rint(np.asarray(image_hwc, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr, mode="RGB").save(path)


def load_png(path: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0


def evaluate_pngs(model, layer: str, items):
    """items: [(channel, png path)] -> {channel: activation}. One forward pass per image on CPU, float32."""
    torch = _import_torch()
    result = {}
    for channel, path in items:
        if not path or not os.path.exists(path):
            continue
        img = load_png(path)
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
        out = layer_outputs(model, x, [layer])[layer]
        result[channel] = float(out[0, channel].mean())
    return result


# --------------------------------------------------------------------------------------------------
# the engines
# --------------------------------------------------------------------------------------------------


def parse_channels(spec: str):
    channels = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            channels.extend(range(int(lo), int(hi) + 1))
        else:
            channels.append(int(part))
    if not channels:
        raise argparse.ArgumentTypeError(f"no channels in {spec!r}")
    return channels


def run_lucent(model, args, channels, out_dir, seed_name):
    """lucent's usual one-channel-per-call render. Returns (per-channel info, versions, updates)."""
    torch = _import_torch()
    render, param, transform, objectives, versions = _import_lucent()
    import lucent.optvis.param.spatial as lucent_spatial

    dev = torch.device("cuda:0" if args.device == "cuda" else "cpu")
    # lucent places its tensors on module-level devices picked at import ("cuda:0" if available):
    # lucent.optvis.param.spatial.device (the image parameter) and lucent.optvis.transform.device (the
    # jitter / rotation matrices); color._linear_decorrelate_color asks torch.cuda.is_available() at
    # every call. Point them all at the requested device.
    lucent_spatial.device = dev
    transform.device = dev
    real_is_available = torch.cuda.is_available
    if dev.type == "cpu":
        torch.cuda.is_available = lambda: False
    base = model.to(dev)
    size = args.size

    def one(channel, steps):
        # A fresh copy per call: render_vis registers forward hooks on every submodule and never
        # removes them, so reusing one model would pile up hooks across channels.
        m = copy.deepcopy(base)
        torch.manual_seed(args.seed * 100003 + channel)
        np.random.seed(args.seed * 100003 + channel)
        t0 = time.perf_counter()
        images = render.render_vis(
            m,
            objectives.channel(args.layer, channel),
            param_f=lambda: param.image(size),
            transforms=transform.standard_transforms,
            thresholds=(steps,),
            preprocess=False,
            show_image=False,
            progress=False,
            fixed_image_size=None,
        )
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return images[-1][0], time.perf_counter() - t0

    info = {}
    try:
        if args.warmup:
            one(channels[0], 2)  # untimed: CUDA context, cuDNN plans, allocator
        for channel in channels:
            image, seconds = one(channel, args.steps)
            path = os.path.join(out_dir, seed_name, args.layer, f"{channel:04d}.png")
            save_png(image, path)
            info[channel] = {"png": path, "seconds": seconds}
            print(f"  lucent {args.layer}:{channel} {seconds:.2f} s", file=sys.stderr, flush=True)
    finally:
        torch.cuda.is_available = real_is_available
    with open(os.path.join(out_dir, seed_name, args.layer, "timings.json"), "w") as f:
        json.dump({str(c): v["seconds"] for c, v in info.items()}, f, indent=1)
    return info, versions, args.steps


def run_ours(args, channels, out_dir, seed_name):
    """One `lucid-worker render` process for all channels. Returns (per-channel info, wall, cmd)."""
    cmd = [
        args.worker,
        "render",
        "--checkpoint",
        args.checkpoint,
        "--layer",
        args.layer,
        "--channels",
        ",".join(str(c) for c in channels),
        "--steps",
        str(args.steps),
        "--size",
        str(args.size),
        "--batch",
        str(args.ours_batch or len(channels)),
        "--run-seed",
        str(args.seed),
        "--device",
        args.device,
        "--out",
        out_dir,
    ]
    print("  " + " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - t0
    sys.stderr.write(proc.stdout)
    if proc.returncode != 0:
        raise SystemExit(f"lucid-worker failed with exit code {proc.returncode}")
    info = {}
    for channel in channels:
        # `render` writes a run like `local`: <out>/<run>/<model>/<layer>/<channel>.{png,json}
        stem = os.path.join(out_dir, "render", seed_name, args.layer, f"{channel:04d}")
        with open(stem + ".json") as f:
            sidecar = json.load(f)
        info[channel] = {"png": stem + ".png", "sidecar": sidecar}
    return info, wall, cmd


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _fmt(v, spec="{:+.5f}", width=10):
    return (spec.format(v) if v is not None else "-").rjust(width)


def main(argv=None):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--checkpoint",
        default=os.path.join(root, "fixtures/alexnet_small/safetensors/training_seed_01.safetensors"),
        help="a .safetensors file (tensor names alexnet_v2/<layer>/{weights,biases}, weights HWIO)",
    )
    p.add_argument("--layer", default="conv5", choices=LAYER_NAMES)
    p.add_argument("--channels", default="0-7", help="e.g. 0-7 or 0,3,5-6")
    p.add_argument("--steps", type=int, default=512, help="lucent thresholds=(steps,); ours --steps")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--worker", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "release/lucid-worker"))
    p.add_argument("--ours-batch", type=int, default=0, help="lucid-worker --batch (0: all channels in one batch)")
    p.add_argument("--seed", type=int, default=0, help="run seed (ours --seed; seeds lucent's RNGs too)")
    p.add_argument("--out", default=os.path.join(root, "out/compare"), help="output folder for both engines' images")
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--skip-lucent", action="store_true")
    p.add_argument("--skip-ours", action="store_true")
    p.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="skip lucent's untimed 2-update warm-up render before the timed channels",
    )
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads for this process (0: torch default)")
    p.add_argument(
        "--self-check",
        action="store_true",
        help="only check the PyTorch module against the TF reference outputs and exit",
    )
    p.add_argument(
        "--reference",
        default=os.path.join(root, "fixtures/alexnet_small/reference/training_seed_01_224.npz"),
        help="reference npz for --self-check (keys input, conv1..fc8; NHWC, pre-bias)",
    )
    args = p.parse_args(argv)

    torch = _import_torch()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.self_check:
        return 0 if self_check(args.checkpoint, args.reference) else 1

    if not args.checkpoint.endswith(".safetensors"):
        p.error("--checkpoint must be a .safetensors file")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch.cuda.is_available() is False")
    channels = parse_channels(args.channels)
    # lucid-worker names a seed after its `training_seed_NN` folder when it has one, else the file stem
    parent = os.path.basename(os.path.dirname(os.path.abspath(args.checkpoint)))
    stem = os.path.splitext(os.path.basename(args.checkpoint))[0]
    seed_name = parent if parent.startswith("training_seed_") else stem
    lucent_dir = os.path.join(args.out, "lucent")
    ours_dir = os.path.join(args.out, "ours")

    eval_model = build_model(args.checkpoint)  # CPU, float32; the common yardstick
    widths = {name: getattr(eval_model, name).out_channels for name in LAYER_NAMES}
    bad = [c for c in channels if c >= widths[args.layer]]
    if bad:
        p.error(f"{args.layer} has {widths[args.layer]} channels; out of range: {bad}")

    started = _dt.datetime.now().astimezone()
    load_start = os.getloadavg()
    lucent_info, lucent_versions, lucent_updates = {}, {}, None
    ours_info, ours_wall, ours_cmd = {}, None, None

    # Ours first: a separate process, so the two never share the CPU.
    if not args.skip_ours:
        print(f"ours: {args.layer} channels {args.channels}, {args.steps} steps, {args.device}", file=sys.stderr)
        ours_info, ours_wall, ours_cmd = run_ours(args, channels, ours_dir, seed_name)
    if not args.skip_lucent:
        print(f"lucent: {args.layer} channels {args.channels}, {args.steps} steps, {args.device}", file=sys.stderr)
        lucent_info, lucent_versions, lucent_updates = run_lucent(
            build_model(args.checkpoint), args, channels, lucent_dir, seed_name
        )

    act_lucent = evaluate_pngs(eval_model, args.layer, [(c, lucent_info.get(c, {}).get("png")) for c in channels])
    act_ours = evaluate_pngs(eval_model, args.layer, [(c, ours_info.get(c, {}).get("png")) for c in channels])

    rows = []
    for c in channels:
        sidecar = ours_info.get(c, {}).get("sidecar") or {}
        rows.append(
            {
                "channel": c,
                "lucent_activation": act_lucent.get(c),
                "ours_activation": act_ours.get(c),
                "ours_objective_end": sidecar.get("objective_end"),
                "ours_objective_start": sidecar.get("objective_start"),
                "lucent_seconds": lucent_info.get(c, {}).get("seconds"),
                "ours_seconds_per_image_sidecar": sidecar.get("render_seconds"),
                "lucent_png": lucent_info.get(c, {}).get("png"),
                "ours_png": ours_info.get(c, {}).get("png"),
            }
        )

    n = len(channels)
    ours_sidecar_spi = _mean([r["ours_seconds_per_image_sidecar"] for r in rows])
    ours_updates = _mean([(ours_info.get(c, {}).get("sidecar") or {}).get("updates") for c in channels])
    lucent_spi = _mean([r["lucent_seconds"] for r in rows])
    ours_spi = ours_wall / n if ours_wall is not None else None
    both = [r for r in rows if r["lucent_activation"] is not None and r["ours_activation"] is not None]
    summary = {
        "layer": args.layer,
        "channels": channels,
        "steps": args.steps,
        "size": args.size,
        "device": args.device,
        "device_name": torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "checkpoint": args.checkpoint,
        "updates_lucent": lucent_updates,
        "updates_ours": int(ours_updates) if ours_updates is not None else None,
        "mean_activation_lucent": _mean([r["lucent_activation"] for r in rows]),
        "mean_activation_ours": _mean([r["ours_activation"] for r in rows]),
        "channels_ours_higher": sum(r["ours_activation"] > r["lucent_activation"] for r in both) if both else None,
        "channels_compared": len(both),
        "seconds_per_image_lucent": lucent_spi,
        "seconds_per_image_ours_process": ours_spi,
        "seconds_per_image_ours_sidecar": ours_sidecar_spi,
        "ours_process_wall_seconds": ours_wall,
        "time_ratio_lucent_over_ours": (lucent_spi / ours_spi) if lucent_spi and ours_spi else None,
        "lucent_warmup": bool(args.warmup) if not args.skip_lucent else None,
        "ours_batch": args.ours_batch,
        "torch_version": torch.__version__,
        **{f"{k}_version": v for k, v in lucent_versions.items()},
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "loadavg_1min_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
        "date": started.isoformat(timespec="seconds"),
        "worker": args.worker,
        "ours_command": ours_cmd,
        "command": [sys.executable] + sys.argv,
    }

    # ---- table
    print()
    print(
        f"{args.layer}, {args.size} px, steps {args.steps} (updates: lucent {summary['updates_lucent']}, "
        f"ours {summary['updates_ours']}), device {args.device}"
    )
    print("activation = mean over H,W of the pre-bias conv output, one common forward pass on each saved PNG")
    header = f"{'channel':>7} {'lucent':>10} {'ours':>10} {'ours-luc':>10} {'ours obj_end':>13} {'lucent s':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        diff = (
            r["ours_activation"] - r["lucent_activation"]
            if r["ours_activation"] is not None and r["lucent_activation"] is not None
            else None
        )
        print(
            f"{r['channel']:>7} {_fmt(r['lucent_activation'])} {_fmt(r['ours_activation'])} {_fmt(diff)} "
            f"{_fmt(r['ours_objective_end'], width=13)} {_fmt(r['lucent_seconds'], '{:.2f}', 9)}"
        )
    print("-" * len(header))
    print(
        f"{'mean':>7} {_fmt(summary['mean_activation_lucent'])} {_fmt(summary['mean_activation_ours'])}"
        + (
            f" {_fmt(summary['mean_activation_ours'] - summary['mean_activation_lucent'])}"
            if both
            else ""
        )
    )
    if both:
        print(f"ours higher on {summary['channels_ours_higher']} of {len(both)} channels")
    print()
    print("seconds per image:")
    print(f"  lucent (mean per-channel render_vis wall time)     {_fmt(lucent_spi, '{:.3f}', 8)}")
    print(f"  ours   (lucid-worker process wall / {n} channels)   {_fmt(ours_spi, '{:.3f}', 8)}")
    print(f"  ours   (sidecar seconds_per_image)                 {_fmt(ours_sidecar_spi, '{:.3f}', 8)}")
    ratio = summary["time_ratio_lucent_over_ours"]
    print(f"  ratio lucent / ours (process)                      {_fmt(ratio, '{:.2f}', 8)}")
    print(
        f"device {args.device} ({summary['device_name']}), torch {torch.__version__}, "
        f"{summary['torch_threads']} threads, "
        + ", ".join(f"{k} {v}" for k, v in lucent_versions.items())
        + f", {summary['date']}"
    )
    print(f"1-min load average at start / end: {summary['loadavg_1min_start_end']} on {os.cpu_count()} CPUs")

    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "channels": rows}, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
