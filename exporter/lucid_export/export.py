"""One TorchScript module per layer, and the descriptor lucid-sweep plans from."""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path

import torch
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from .models import ExportError

SCHEMA_VERSION = 1
DESCRIPTOR = "descriptor.json"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
# the largest input side searched for a layer's smallest input
MAX_SIDE = 1024


def layer_names(model: torch.nn.Module) -> list[str]:
    """The FX node names one may visualize (eval mode), input to output, without the input itself."""
    _, names = get_graph_node_names(model)
    return [n for n in names if n != "x"]


def _check_layers(model: torch.nn.Module, layers: list[str]) -> None:
    """A layer is an FX node name or a module path (``layer3``: the last node of that module)."""
    valid = layer_names(model)
    for layer in layers:
        if layer not in valid and not any(n.startswith(layer + ".") for n in valid):
            close = difflib.get_close_matches(layer, valid, n=5, cutoff=0.0)
            raise ExportError(f"the model has no layer {layer!r}; closest: {', '.join(close)}")


def _without_inplace(module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Every inplace op of the traced graph made out of place: a convolution followed by an inplace
    ReLU would otherwise hand out its rectified output (captum #156), so a tapped convolution is really
    pre-activation."""
    for m in module.modules():
        if isinstance(getattr(m, "inplace", None), bool):
            m.inplace = False
    for node in module.graph.nodes:
        if node.kwargs.get("inplace") is True:
            node.kwargs = {**node.kwargs, "inplace": False}
    module.recompile()
    return module


def _output(module: torch.nn.Module, layer: str, side: int, channels: int) -> torch.Tensor | None:
    with torch.no_grad():
        try:
            out = module(torch.zeros(1, channels, side, side))[layer]
        except RuntimeError:
            return None
    return out if out.numel() > 0 else None


def min_input_side(module: torch.nn.Module, layer: str, channels: int) -> int:
    """The smallest square input for which `layer` has an output: doubling, then bisection (a layer
    that has an output at some size has one at every larger size)."""
    high = 1
    while _output(module, layer, high, channels) is None:
        high *= 2
        if high > MAX_SIDE:
            raise ExportError(f"layer {layer!r} has no output for any input up to {MAX_SIDE} px")
    low = high // 2  # fails (or is 0)
    while high - low > 1:
        mid = (low + high) // 2
        if _output(module, layer, mid, channels) is None:
            low = mid
        else:
            high = mid
    return high


def export(
    model: torch.nn.Module,
    layers: list[str],
    out_dir: Path,
    *,
    name: str,
    source: str,
    channels: int = 3,
    value_range: tuple[float, float] = (0.0, 1.0),
    mean: list[float] | None = None,
    std: list[float] | None = None,
    probe_side: int = 224,
) -> dict:
    """Writes `<layer>.pt` for each of `layers` and `descriptor.json` into `out_dir`; returns the
    descriptor. Each module maps a `[B, C, H, W]` batch to `{layer: value}` and computes only the
    nodes that layer depends on (torchvision's feature extractor drops the rest)."""
    if not layers:
        raise ExportError("no layers to export")
    _check_layers(model, layers)
    model = model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for layer in layers:
        extractor = _without_inplace(create_feature_extractor(model, return_nodes={layer: layer}))
        scripted = torch.jit.script(extractor)
        file = f"{layer}.pt"
        scripted.save(str(out_dir / file))
        probe = _output(extractor, layer, probe_side, channels)
        if probe is None or probe.dim() not in (2, 4):
            raise ExportError(f"layer {layer!r} gives no [B, C] or [B, C, H, W] output at {probe_side} px")
        entries.append(
            {
                "name": layer,
                "module": file,
                "channels": int(probe.shape[1]),
                "min_input_side": min_input_side(extractor, layer, channels),
                "sha256": hashlib.sha256((out_dir / file).read_bytes()).hexdigest(),
            }
        )
    descriptor = {
        "schema_version": SCHEMA_VERSION,
        "kind": "torchscript",
        "name": name,
        "source": source,
        "input": {
            "channels": channels,
            "range": list(value_range),
            **({"mean": mean} if mean is not None else {}),
            **({"std": std} if std is not None else {}),
        },
        "layers": entries,
    }
    (out_dir / DESCRIPTOR).write_text(json.dumps(descriptor, indent=2) + "\n")
    return descriptor
