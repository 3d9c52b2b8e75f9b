"""Ground truth for exported models: torchvision's resnet18 whose first four conv1 filters are
oriented Gabor filters (wave vector at 0°, 45°, 90° and 135°; 0° varies along x), the others zero,
batch norm the identity. Rendered after its ReLU (the ``relu`` node), each of those channels must
show a grating of its filter's orientation, as lucid-sweep's synthetic alexnet_v2 demo does. (The
spatial mean of a zero-mean filter's linear response is about 0 for any image, so the tap is the
rectified one.)
"""

from __future__ import annotations

import math

import torch
import torchvision

ORIENTATIONS = (0, 45, 90, 135)


def gabor(degrees: float, size: int = 7, period: float = 3.5, sigma: float = 2.0) -> torch.Tensor:
    """A zero-mean, unit-norm `size`×`size` Gabor whose wave vector points at `degrees`."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    theta = math.radians(degrees)
    wave = torch.cos(2 * math.pi * (x * math.cos(theta) + y * math.sin(theta)) / period)
    g = wave * torch.exp(-(x**2 + y**2) / (2 * sigma**2))
    g = g - g.mean()
    return (g / g.norm()).float()


def resnet18_gabor() -> torch.nn.Module:
    model = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        model.conv1.weight.zero_()
        for channel, degrees in enumerate(ORIENTATIONS):
            for colour in range(3):
                model.conv1.weight[channel, colour] = gabor(degrees) / 3
    return model.eval()
