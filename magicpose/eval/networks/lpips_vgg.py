"""LPIPS (VGG-16, version 0.1), written compactly with the published parameter names.

Two files make one network:

* the backbone: torchvision's ImageNet VGG-16, `vgg16-397923af.pth`, keys `features.N.weight` / `.bias` for
  the 13 convolutions (N = 0, 2, 5, ..., 28); its `classifier.*` keys are optional and unused;
* the linear heads: the `lpips` package's `weights/v0.1/vgg.pth`, keys `lin0.model.1.weight` ... `lin4...`
  (1 x C x 1 x 1 each; `model.0` is a Dropout, identity in eval mode).

Distance of a pair (`n 3 h w` each): the inputs are shifted and scaled per channel (lpips' ScalingLayer,
which assumes [-1, 1] inputs); VGG activations after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 are
unit-normalised over channels (eps 1e-10), their squared difference is weighted by the head and averaged over
space; the five layers are summed. `normalize=True` maps [0, 1] inputs to [-1, 1] first (lpips' flag, the
one DisCo forgot). Output `n`.
"""

from __future__ import annotations

import torch
from torch import nn

LAYOUT_VGG = "torchvision VGG-16 (vgg16-397923af)"
LAYOUT_LIN = "lpips v0.1 VGG linear heads (weights/v0.1/vgg.pth)"
# (out channels per conv, or "M" for a 2x2 max pool), torchvision's configuration "D", up to relu5_3.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAPS = (3, 8, 15, 22, 29)  # feature indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
# torchvision's classifier: present in its file, shape-checked, never used.
VGG_CLASSIFIER = {
    "classifier.0.weight": (4096, 25088), "classifier.0.bias": (4096,),
    "classifier.3.weight": (4096, 4096), "classifier.3.bias": (4096,),
    "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,),
}  # fmt: skip


def _vgg_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG16:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU()]
            channels = int(item)
    return nn.Sequential(*layers)


class _Head(nn.Module):
    """lpips' NetLinLayer: Dropout then a 1x1 conv to one channel (no bias); the names give `model.1`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _unit(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (torch.sqrt((x**2).sum(1, keepdim=True)) + eps)


class LPIPSVGG(nn.Module):
    """`forward(a, b, normalize)`: `n 3 h w` x2 -> `n` distances (lower is more similar)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = _vgg_features()
        for i, c in enumerate(CHANNELS):
            self.add_module(f"lin{i}", _Head(c))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five relu activations of the (already scaled) input."""
        out = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _TAPS:
                out.append(x)
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        if normalize:
            a, b = 2 * a - 1, 2 * b - 1
        fa = self.taps((a - self.shift) / self.scale)
        fb = self.taps((b - self.shift) / self.scale)
        total = 0
        for i, (x, y) in enumerate(zip(fa, fb)):
            diff = (_unit(x) - _unit(y)) ** 2
            total = total + getattr(self, f"lin{i}")(diff).mean((2, 3), keepdim=True)
        return total.flatten()
