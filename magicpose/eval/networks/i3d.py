"""I3D (Inflated Inception-V1, Kinetics-400) for FVD, with the parameter names of `i3d_pretrained_400.pt`.

The file is the one VideoGPT / TATS / MCVD / DisCo use: the `InceptionI3d(400, in_channels=3)` layout of
the widely used PyTorch port of DeepMind's I3D. Keys: `Conv3d_1a_7x7.conv3d.weight`, `....bn.running_mean`,
`Mixed_3b.b0.conv3d.weight`, `Mixed_3b.b1a...`, `b1b`, `b2a`, `b2b`, `b3b` (b3a is a parameter-free max
pool), and `logits.conv3d.weight` / `.bias` (400 classes, no batch norm).

Every convolution and max pool pads like TensorFlow's 'SAME': the padding is computed from the input size
at run time, the extra pixel going to the end. Batch norm eps 1e-3.

Input `n 3 t 224 224` in [-1, 1] (t = 16 in the DisCo protocol). Output `n 400`: the class logits
averaged over time (the FVD feature of these implementations; not softmax, not the 1024-d pool).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LAYOUT = "I3D InceptionI3d(400) (i3d_pretrained_400.pt)"
FEATURES = 400
INPUT_SIZE = 224

# name: (input channels, [b0, b1a, b1b, b2a, b2b, b3b] output channels)
_MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def _same_pad(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...], value: float = 0.0):
    """Pad `n c t h w` so that a valid conv/pool gives ceil(size / stride) outputs (TF 'SAME')."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


class Unit3D(nn.Module):
    """'SAME'-padded Conv3d -> optional batch norm -> optional ReLU."""

    def __init__(
        self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), bn: bool = True, relu: bool = True,
        bias: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=0.001, momentum=0.01) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


def _max_pool(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    # Zero padding, as the port does (inputs are post-ReLU, so zeros never win over real values).
    return F.max_pool3d(_same_pad(x, kernel, stride), kernel, stride)


class Mixed(nn.Module):
    """Inception module: 1x1 | 1x1 -> 3x3x3 | 1x1 -> 3x3x3 | max pool -> 1x1, concatenated."""

    def __init__(self, cin: int, out: tuple[int, ...]) -> None:
        super().__init__()
        self.b0 = Unit3D(cin, out[0])
        self.b1a = Unit3D(cin, out[1])
        self.b1b = Unit3D(out[1], out[2], (3, 3, 3))
        self.b2a = Unit3D(cin, out[3])
        self.b2b = Unit3D(out[3], out[4], (3, 3, 3))
        self.b3b = Unit3D(cin, out[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = _max_pool(x, (3, 3, 3), (1, 1, 1))
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(pooled)], 1)


class InceptionI3d(nn.Module):
    """`n 3 t h w` in [-1, 1] -> `n 400` time-averaged logits."""

    def __init__(self, num_classes: int = 400, in_channels: int = 3) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        for name, (cin, out) in _MIXED.items():
            self.add_module(name, Mixed(cin, out))
        self.logits = Unit3D(1024, num_classes, bn=False, relu=False, bias=True)
        self.eval()

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.Conv3d_1a_7x7(video)
        x = _max_pool(x, (1, 3, 3), (1, 2, 2))
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = _max_pool(x, (1, 3, 3), (1, 2, 2))
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = _max_pool(x, (3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = getattr(self, name)(x)
        x = _max_pool(x, (2, 2, 2), (2, 2, 2))
        x = self.Mixed_5c(self.Mixed_5b(x))
        # The port's AvgPool3d([2, 7, 7], stride 1): at 16 x 224 x 224 the map is 2 x 7 x 7 -> one step.
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)
        x = self.logits(x)  # dropout before it is identity in eval mode
        return x.squeeze(4).squeeze(3).mean(2)
