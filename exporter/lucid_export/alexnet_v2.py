"""tf-slim ``alexnet_v2`` in PyTorch, for exporting the ecoset checkpoints' architecture (and for the
test that the native path and an export agree). Each convolution is bias-free with its bias added
after it, so its FX node (``conv1`` … ``fc8``) is the pre-bias output lucid visualizes; TF SAME
padding is reproduced exactly (pad 2 for 5x5, 1 for 3x3, both stride 1). The input is what the ecoset
graph's first layer sees, [−1, 1]: export it with ``--range=-1,1``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
KERNELS = (11, 5, 3, 3, 3, 5, 1, 1)
PADDING = (0, 2, 1, 1, 1, 0, 0, 0)
STRIDES = (4, 1, 1, 1, 1, 1, 1, 1)
POOL_AFTER = {"conv1", "conv2", "conv5"}
ECOSET_WIDTHS = (64, 192, 384, 384, 256, 4096, 4096, 565)


class AlexNetV2(nn.Module):
    def __init__(self, widths=ECOSET_WIDTHS):
        super().__init__()
        cin = 3
        for name, k, p, s, w in zip(LAYERS, KERNELS, PADDING, STRIDES, widths):
            setattr(self, name, nn.Conv2d(cin, w, k, stride=s, padding=p, bias=False))
            setattr(self, f"{name}_bias", nn.Parameter(torch.zeros(w)))
            cin = w

    def forward(self, x):
        h = x
        for name in LAYERS:
            h = getattr(self, name)(h) + getattr(self, f"{name}_bias").view(1, -1, 1, 1)
            if name != "fc8":
                h = torch.relu(h)
            if name in POOL_AFTER:
                h = nn.functional.max_pool2d(h, 3, 2)
        return h


def state_dict_from_tf(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The PyTorch state dict of an ``alexnet_v2`` checkpoint's variables (HWIO → OIHW)."""
    state = {}
    for name in LAYERS:
        state[f"{name}.weight"] = tensors[f"alexnet_v2/{name}/weights"].permute(3, 2, 0, 1).contiguous()
        state[f"{name}_bias"] = tensors[f"alexnet_v2/{name}/biases"]
    return state


def build() -> AlexNetV2:
    """An ecoset-width ``alexnet_v2`` (load the weights with ``--weights``)."""
    return AlexNetV2()


def build_small() -> AlexNetV2:
    """The widths of lucid-sweep's test fixtures (fixtures/alexnet_small)."""
    return AlexNetV2((16, 24, 32, 32, 24, 64, 48, 10))


def convert(safetensors_in: Path, safetensors_out: Path) -> None:
    """Rewrites an ``alexnet_v2`` safetensors file with PyTorch names and layout."""
    from safetensors.torch import load_file, save_file

    save_file(state_dict_from_tf(load_file(str(safetensors_in))), str(safetensors_out))
