"""Building the user's model and loading its weights safely."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch


class ExportError(Exception):
    """A model, weights file or layer name that cannot be exported; the message names it."""


def build_model(spec: str) -> torch.nn.Module:
    """``torchvision:NAME`` (random weights) or ``package.module:function`` returning an ``nn.Module``."""
    if ":" not in spec:
        raise ExportError(f"model {spec!r} must be torchvision:NAME or package.module:function")
    source, name = spec.split(":", 1)
    if source == "torchvision":
        import torchvision

        try:
            builder = torchvision.models.get_model_builder(name)
        except ValueError as e:
            raise ExportError(f"torchvision has no model {name!r}: {e}") from e
        kwargs = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
        model = builder(weights=None, **kwargs)
    else:
        try:
            module = importlib.import_module(source)
        except ImportError as e:
            raise ExportError(f"cannot import {source!r} for model {spec!r}: {e}") from e
        builder = getattr(module, name, None)
        if builder is None:
            raise ExportError(f"module {source!r} has no {name!r}")
        model = builder()
    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"{spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Loads a state dict from ``.safetensors`` or a ``torch.save`` file, the latter with
    ``weights_only=True`` so that no pickled object is ever constructed."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises UnpicklingError, RuntimeError, … depending on the file
            raise ExportError(f"{path} is not a weights-only state dict: {e}") from e
    if not isinstance(state, dict):
        raise ExportError(f"{path} holds a {type(state).__name__}, not a state dict")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ExportError(
            f"{path} does not fit the model: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
