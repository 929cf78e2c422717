"""iResNet face-identity network (insightface `arcface_torch`) for Face-Cos, with the published parameter names.

The backbones of insightface's `recognition/arcface_torch` model zoo (`ms1mv3_arcface_r50_fp16/backbone.pth`,
`ms1mv3_arcface_r100_fp16/backbone.pth`, `glint360k_cosface_r100_fp16_0.1/backbone.pth`, ...) are plain state
dicts of this layout (re-implemented here from the published key layout and forward pass):

    conv1.weight (64 3 3 3), bn1.*, prelu.weight (64)
    layerN.J.{bn1, conv1, bn2, prelu, conv2, bn3}   "improved" residual blocks: BN -> conv3x3 -> BN -> PReLU
    layerN.0.downsample.{0.weight, 1.*}             -> conv3x3 (stride 2 in the first block) -> BN, no activation
                                                    after the sum; a 1x1 strided projection + BN as shortcut
    bn2.*, fc.weight (512 x 512*7*7), fc.bias, features.* (BatchNorm1d(512))

Depth is the number of blocks per stage: 18 (2, 2, 2, 2), 34 (3, 4, 6, 3), 50 (3, 4, 14, 3), 100 (3, 13, 30, 3),
200 (6, 26, 60, 6); `infer_depth` reads it from the keys. The "fp16" in the zoo's folder names is the training
precision; half-precision files are accepted anyway (cast to float32 before loading).

Input `n 3 112 112` RGB scaled as `(x / 255 - 0.5) / 0.5`, i.e. [-1, 1] (arcface_torch's `inference.py`).
Output `n 512` identity embeddings (not normalised; `embed_faces` L2-normalises them for the cosine).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from magicpose.errors import UserError
from magicpose.eval.networks.weights import WeightFile, load_into, read_state_dict

LAYOUT = "insightface arcface_torch iResNet"
INPUT_SIZE = 112
EMBEDDING = 512
DEPTHS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 200: (6, 26, 60, 6),
}  # fmt: skip
_WIDTHS = (64, 128, 256, 512)

FACE_FILE = WeightFile(
    "arcface", "arcface_r100.pth",
    "insightface arcface_torch model zoo: an iResNet backbone.pth (e.g. ms1mv3_arcface_r100_fp16 or "
    "glint360k_cosface_r100_fp16_0.1), renamed; any depth in DEPTHS is accepted",
)  # fmt: skip


class IBasicBlock(nn.Module):
    """BN -> conv3x3 -> BN -> PReLU -> conv3x3 (strided) -> BN, plus the (projected) input; no final activation."""

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes, eps=1e-5)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """`n 3 112 112` ([-1, 1] RGB) -> `n 512` face-identity embeddings (arcface_torch's iResNet, eval mode)."""

    def __init__(self, depth: int = 100, features: int = EMBEDDING) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"iResNet depth must be one of {sorted(DEPTHS)}, got {depth}")
        self.depth = depth
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        cin = 64
        for index, (planes, blocks) in enumerate(zip(_WIDTHS, DEPTHS[depth])):
            # Every stage halves the resolution in its first block: 112 -> 56 -> 28 -> 14 -> 7.
            stage = [IBasicBlock(cin, planes, 2)] + [IBasicBlock(planes, planes, 1) for _ in range(blocks - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
            cin = planes
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.fc = nn.Linear(512 * 7 * 7, features)  # (dropout before it is 0 at inference: not modelled)
        self.features = nn.BatchNorm1d(features, eps=1e-5)
        self.eval()

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(faces)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(self.bn2(x).flatten(1)))


def infer_depth(state: dict[str, torch.Tensor], path: str | Path) -> int:
    """The iResNet depth whose blocks per stage match the file's `layerN.J.*` keys; a `UserError` otherwise."""
    counts = []
    for stage in range(1, 5):
        prefix = f"layer{stage}."
        blocks = {k[len(prefix) :].split(".", 1)[0] for k in state if k.startswith(prefix)}
        counts.append(max((int(b) + 1 for b in blocks if b.isdigit()), default=0))
    for depth, layers in DEPTHS.items():
        if tuple(counts) == layers:
            return depth
    known = ", ".join(f"r{d} {list(v)}" for d, v in DEPTHS.items())
    raise UserError(f"{path}: blocks per stage {counts} match no {LAYOUT} ({known})")


def load_arcface(path: str | Path, depth: int | None = None) -> IResNet:
    """The iResNet of a published `backbone.pth` (depth from its keys unless given), float32, eval mode."""
    state = read_state_dict(path)
    # fp16 files load into the float32 module: the cosine is computed in float32 on every device.
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    depth = depth or infer_depth(state, path)
    if depth not in DEPTHS:
        raise UserError(f"{path}: iResNet depth {depth} is not one of {sorted(DEPTHS)}")
    net = IResNet(depth)
    load_into(net, state, path, f"{LAYOUT}-{depth}")
    return net.eval()


def save_random_arcface(path: str | Path, depth: int = 18, seed: int = 0, half: bool = True) -> Path:
    """Write a random iResNet in the published layout (tests, trying the command): numbers are meaningless.

    Depth 18 and half precision by default keep the file small (about 50 MB); the loader treats every depth
    and precision alike.
    """
    from magicpose.eval.networks import informative_init_

    net = informative_init_(IResNet(depth), seed)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().clone() for k, v in net.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def face_inputs(faces: np.ndarray) -> torch.Tensor:
    """`n 112 112 3` uint8 RGB -> `n 3 112 112` float in [-1, 1], arcface_torch's `(x / 255 - 0.5) / 0.5`."""
    x = torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2).float()
    return (x / 255.0 - 0.5) / 0.5


@torch.no_grad()
def embed_faces(net: IResNet, faces: np.ndarray, batch: int, device: torch.device) -> np.ndarray:
    """L2-normalised `n 512` float64 embeddings of aligned `n 112 112 3` uint8 face crops."""
    out = []
    for start in range(0, len(faces), batch):
        x = face_inputs(faces[start : start + batch]).to(device)
        out.append(torch.nn.functional.normalize(net(x).float(), dim=1).cpu().double().numpy())
    return np.concatenate(out) if out else np.zeros((0, EMBEDDING))
