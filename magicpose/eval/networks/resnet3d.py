"""3D ResNet-50 (Hara et al., Kinetics-400) for FID-VID, with the parameter names of `resnet-50-kinetics.pth`.

The layout of the original 3D-ResNets-PyTorch release: `conv1.weight` (7x7x7, stride 1,2,2), `bn1.*`,
`layer1.0.conv1.weight` ... bottlenecks [3, 4, 6, 3] with 3x3x3 middle convolutions, projection shortcuts
(shortcut type B: `layerN.0.downsample.0.weight` / `downsample.1.*`), `fc.weight` (400 x 2048), `fc.bias`.
The published file is a training checkpoint `{"epoch", "arch", "state_dict", "optimizer"}` whose keys carry
a `module.` prefix (DataParallel); `read_state_dict` unwraps both.

Built as `resnet50(num_classes=400, shortcut_type="B", sample_size=112, sample_duration=16, last_fc=False)`:
the final average pool covers (ceil(16/16), ceil(112/32), ceil(112/32)) = (1, 4, 4) and the output is the
pooled 2048-d vector; `fc` is loaded (the key check is exact) and not applied.

Input `n 3 16 112 112`, 0-255 RGB minus the per-channel mean `MEAN` (no std). Output `n 2048`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LAYOUT = "3D ResNet-50 Kinetics (resnet-50-kinetics.pth)"
FEATURES = 2048
SAMPLE_SIZE = 112
SAMPLE_DURATION = 16
MEAN = (114.7748, 107.7354, 99.4750)  # RGB, 0-255 scale (the release's ActivityNet mean)
_LAYERS = (3, 4, 6, 3)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


def _layer(cin: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or cin != planes * 4:  # shortcut type B: a strided 1x1x1 projection
        downsample = nn.Sequential(nn.Conv3d(cin, planes * 4, 1, stride=stride, bias=False), nn.BatchNorm3d(planes * 4))
    layers = [Bottleneck(cin, planes, stride, downsample)]
    layers += [Bottleneck(planes * 4, planes, 1, None) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet3D50(nn.Module):
    """`n 3 16 112 112` (mean-subtracted 0-255 RGB) -> `n 2048` pooled features."""

    def __init__(self, num_classes: int = 400, sample_size: int = SAMPLE_SIZE, sample_duration: int = SAMPLE_DURATION):
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, 7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        cin = 64
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), _LAYERS)):
            self.add_module(f"layer{index + 1}", _layer(cin, planes, blocks, 1 if index == 0 else 2))
            cin = planes * 4
        self.pool = (math.ceil(sample_duration / 16), math.ceil(sample_size / 32), math.ceil(sample_size / 32))
        self.fc = nn.Linear(2048, num_classes)  # in the file; not applied (last_fc=False)
        self.eval()

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(video)))
        x = F.max_pool3d(x, 3, stride=2, padding=1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = F.avg_pool3d(x, self.pool, stride=1)
        return x.flatten(1)
