"""Exports PyTorch models for lucid-sweep (issue 14).

A model is built from a torchvision name (``torchvision:resnet18``) or the user's own
``package.module:function``, its weights read as safetensors or with ``torch.load(weights_only=True)``
(exporting never unpickles arbitrary objects), and written as one TorchScript module per layer to
visualize (the layer's FX node name, e.g. ``layer3.1.conv2``), each computing only the nodes that
layer needs, plus ``descriptor.json``: layers, channel counts, smallest input side per layer, input
range and normalisation. The lucid-sweep coordinator plans from the descriptor without libtorch; the
worker runs the modules through tch's ``CModule``.
"""

from .export import DESCRIPTOR, SCHEMA_VERSION, export, layer_names
from .models import build_model, load_weights

__all__ = ["DESCRIPTOR", "SCHEMA_VERSION", "build_model", "export", "layer_names", "load_weights"]
