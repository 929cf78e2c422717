"""Feature networks of the evaluation protocol and the published files they load (no downloads, ever).

| key        | file under --weights-dir                | network                       | metric   |
|------------|-----------------------------------------|-------------------------------|----------|
| inception  | pt_inception-2015-12-05-6726825d.pth    | `FIDInceptionV3` (pool3)      | FID      |
| vgg16      | vgg16-397923af.pth                      | `LPIPSVGG` backbone           | LPIPS    |
| lpips_vgg  | lpips_vgg_v0.1.pth                      | `LPIPSVGG` linear heads       | LPIPS    |
| i3d        | i3d_pretrained_400.pt                   | `InceptionI3d` (400 logits)   | FVD      |
| resnet3d   | resnet-50-kinetics.pth                  | `ResNet3D50` (2048 pool)      | FID-VID  |

Where each file comes from and what its sha256 is (where known): docs/evaluation.md.
"""

from __future__ import annotations

from pathlib import Path

import torch

from magicpose.eval.networks.i3d import InceptionI3d
from magicpose.eval.networks.inception import FIDInceptionV3
from magicpose.eval.networks.lpips_vgg import LPIPSVGG, VGG_CLASSIFIER
from magicpose.eval.networks.resnet3d import ResNet3D50
from magicpose.eval.networks.weights import WeightFile, load_into, read_state_dict, save_state_dict

WEIGHT_FILES: dict[str, WeightFile] = {
    "inception": WeightFile(
        "inception", "pt_inception-2015-12-05-6726825d.pth",
        "pytorch-fid release asset fid_weights/pt_inception-2015-12-05-6726825d.pth (TF FID Inception, ported)",
        sha256_prefix="6726825d",
    ),
    "vgg16": WeightFile(
        "vgg16", "vgg16-397923af.pth",
        "torchvision ImageNet VGG-16 (download.pytorch.org/models/vgg16-397923af.pth)",
        sha256_prefix="397923af",
    ),
    "lpips_vgg": WeightFile(
        "lpips_vgg", "lpips_vgg_v0.1.pth",
        "lpips 0.1.4 wheel on PyPI, file lpips/weights/v0.1/vgg.pth (BSD-2-Clause)",
        sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    ),
    "i3d": WeightFile(
        "i3d", "i3d_pretrained_400.pt",
        "VideoGPT / MCVD / DisCo eval_fvd/i3d_pretrained_400.pt (Kinetics-400 I3D, PyTorch port)",
    ),
    "resnet3d": WeightFile(
        "resnet3d", "resnet-50-kinetics.pth",
        "Hara et al. 3D-ResNets-PyTorch release, resnet-50-kinetics.pth (Kinetics-400, shortcut B)",
    ),
}  # fmt: skip

# Which files each metric needs; metrics not listed need none.
METRIC_WEIGHTS: dict[str, tuple[str, ...]] = {
    "fid": ("inception",),
    "lpips": ("vgg16", "lpips_vgg"),
    "fvd": ("i3d",),
    "fid_vid": ("resnet3d",),
}


def load_inception(path: str | Path) -> FIDInceptionV3:
    from magicpose.eval.networks.inception import LAYOUT

    net = FIDInceptionV3()
    load_into(net, read_state_dict(path), path, LAYOUT)
    return net


def load_lpips(vgg_path: str | Path, lin_path: str | Path) -> LPIPSVGG:
    from magicpose.eval.networks.lpips_vgg import LAYOUT_LIN, LAYOUT_VGG

    net = LPIPSVGG()
    load_into(net, read_state_dict(vgg_path), vgg_path, LAYOUT_VGG, optional=VGG_CLASSIFIER, only="features.")
    load_into(net, read_state_dict(lin_path), lin_path, LAYOUT_LIN, only="lin")
    return net


def load_i3d(path: str | Path) -> InceptionI3d:
    from magicpose.eval.networks.i3d import LAYOUT

    net = InceptionI3d(400, in_channels=3)
    load_into(net, read_state_dict(path), path, LAYOUT)
    return net


def load_resnet3d(path: str | Path) -> ResNet3D50:
    from magicpose.eval.networks.resnet3d import LAYOUT

    net = ResNet3D50()
    load_into(net, read_state_dict(path), path, LAYOUT)
    return net


def informative_init_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights whose features still depend on the input (tests without the real files).

    PyTorch's default conv init shrinks activations layer after layer, so a deep random network maps every
    input to nearly the same feature and every Fréchet distance to ~0. He-normal weights keep the scale
    through ReLUs; batch norms become identities; LPIPS heads are made non-negative like trained ones.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, sub in module.named_modules():
            if isinstance(sub, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)):
                fan_in = sub.weight[0].numel()
                sub.weight.copy_(torch.randn(sub.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if name.startswith("lin"):
                    sub.weight.abs_()
                if sub.bias is not None:
                    sub.bias.zero_()
            elif isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
                sub.reset_parameters()  # weight 1, bias 0, running mean 0, running variance 1
    return module


def save_random_weights(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write random networks (`informative_init_`) in the published layouts under their expected names.

    For tests and for trying the command without the real files. The 3D ResNet file is wrapped like the
    real checkpoint (`{"state_dict": {"module.<key>": ...}}`), so the unwrapping is exercised too.
    Returns key -> path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {key: folder / spec.filename for key, spec in WEIGHT_FILES.items()}
    save_state_dict(informative_init_(FIDInceptionV3(), seed), paths["inception"])
    lpips = informative_init_(LPIPSVGG(), seed)
    save_state_dict(lpips, paths["vgg16"], only="features.")
    save_state_dict(lpips, paths["lpips_vgg"], only="lin")
    save_state_dict(informative_init_(InceptionI3d(), seed), paths["i3d"])
    state = {f"module.{k}": v for k, v in informative_init_(ResNet3D50(), seed).state_dict().items()}
    torch.save({"epoch": 1, "arch": "resnet-50", "state_dict": state}, paths["resnet3d"])
    return paths


__all__ = [
    "METRIC_WEIGHTS", "WEIGHT_FILES", "FIDInceptionV3", "InceptionI3d", "LPIPSVGG", "ResNet3D50",
    "informative_init_", "load_i3d", "load_inception", "load_lpips", "load_resnet3d", "save_random_weights",
]  # fmt: skip
