"""``lucid-export list`` and ``lucid-export export``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from .export import IMAGENET_MEAN, IMAGENET_STD, export, layer_names
from .models import ExportError, build_model, load_weights


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lucid-export", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("list", "export"):
        s = sub.add_parser(name)
        s.add_argument("--model", required=True, help="torchvision:NAME or package.module:function")
        s.add_argument("--weights", type=Path, help=".safetensors or a torch.save state dict")
        s.add_argument("--seed", type=int, default=0, help="torch seed for random weights")
    e = sub.choices["export"]
    e.add_argument("--layers", required=True, help="comma-separated FX node names (see `list`)")
    e.add_argument("--out", type=Path, required=True, help="folder for the modules and descriptor.json")
    e.add_argument("--name", help="the network's name (default: the model's name)")
    e.add_argument("--channels", type=int, default=3, help="input channels (1 for greyscale)")
    e.add_argument("--range", type=_floats, default=[0.0, 1.0], help="input value range, lo,hi")
    e.add_argument("--mean", type=_floats, help="per-channel mean (torchvision models: ImageNet's)")
    e.add_argument("--std", type=_floats, help="per-channel std (torchvision models: ImageNet's)")
    photos = sub.add_parser("probe-photos", help="write scikit-image's CC0 / public-domain photographs")
    photos.add_argument("--out", type=Path, required=True, help="the folder to write them into")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "probe-photos":
        return _probe_photos(args.out)
    try:
        torch.manual_seed(args.seed)
        model = build_model(args.model)
        if args.weights is not None:
            load_weights(model, args.weights)
        if args.command == "list":
            print("\n".join(layer_names(model)))
            return 0
        torchvision_model = args.model.startswith("torchvision:")
        descriptor = export(
            model,
            [layer for layer in args.layers.split(",") if layer],
            args.out,
            name=args.name or args.model.split(":", 1)[1],
            source=args.model,
            channels=args.channels,
            value_range=(args.range[0], args.range[1]),
            mean=args.mean or (IMAGENET_MEAN if torchvision_model else None),
            std=args.std or (IMAGENET_STD if torchvision_model else None),
        )
    except ExportError as e:
        print(f"lucid-export: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(args.out), "layers": [l["name"] for l in descriptor["layers"]]}))
    return 0


def _probe_photos(out: Path) -> int:
    from .probe_photos import LicenceError, write

    try:
        records = write(out)
    except LicenceError as e:
        print(f"lucid-export: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(out), "files": [r["file"] for r in records]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
