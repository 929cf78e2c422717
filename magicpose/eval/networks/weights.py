"""Reading published weight files into the in-repo feature networks, strictly.

Every evaluation network is a compact module whose parameter names match the published file, so loading is
a plain `load_state_dict` after a key check that is stricter than torch's own: it names the file, lists the
missing, unexpected and wrongly shaped keys, and refuses before copying anything. Files are read with
`weights_only=True` (no pickled code runs) or as safetensors.

Two tolerances, both documented in docs/evaluation.md:

* `num_batches_tracked` buffers may be present or absent (files converted before torch 0.4.1 lack them;
  they never affect an eval-mode forward);
* `optional` keys may be absent; when present their shapes are checked and the values are not used (the
  classifier of torchvision's VGG-16 file, which LPIPS does not need).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from magicpose.errors import UserError

_SHOW = 4  # keys listed per problem in an error message
_BN_COUNTER = "num_batches_tracked"


@dataclass(frozen=True)
class WeightFile:
    """A published weight file: the name expected under `--weights-dir`, and what is known about it."""

    key: str  # short name used in the metrics JSON ("inception", "vgg16", ...)
    filename: str
    source: str  # where it comes from (one line)
    sha256: str | None = None  # full digest when known from the references or measured on the real file
    sha256_prefix: str | None = None  # torch-hub style file names carry the first 8 hex digits of the sha256

    def check_digest(self, digest: str) -> bool | None:
        """True / False when the digest can be compared with what is known, None when nothing is known."""
        if self.sha256:
            return digest == self.sha256
        if self.sha256_prefix:
            return digest.startswith(self.sha256_prefix)
        return None


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (weight files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a `.safetensors` / `.pt` / `.pth` file, unwrapped from `{"state_dict": ...}`.

    Training checkpoints saved from `nn.DataParallel` (Hara et al.'s 3D ResNets) prefix every key with
    `module.`; the prefix is dropped when every key has it.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such weight file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: object = load_file(str(path), device="cpu")
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and safetensors errors have many types; all mean "unreadable"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: cannot read as a weight file ({first})") from exc
    if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping):
        raise UserError(f"{path}: holds a {type(raw).__name__}, not a state dict")
    state = {str(k): v for k, v in raw.items()}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise UserError(f"{path}: entries that are not tensors: {_preview(not_tensors)}")
    return state


def _preview(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > _SHOW else shown


def check_keys(
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Size],
    path: str | Path,
    layout: str,
    optional: Mapping[str, tuple[int, ...]] | None = None,
) -> None:
    """Raise a one-line `UserError` naming `path` unless `state` has exactly the `expected` keys and shapes.

    `layout` names what the file should be ("pytorch-fid InceptionV3"), for the message.
    """
    optional = dict(optional or {})
    wanted = {k: tuple(v) for k, v in expected.items() if not k.endswith(_BN_COUNTER)}
    given = {k: tuple(v.shape) for k, v in state.items() if not k.endswith(_BN_COUNTER)}
    missing = sorted(set(wanted) - set(given))
    unexpected = sorted(set(given) - set(wanted) - set(optional))
    shapes = {**optional, **wanted}
    wrong = sorted(k for k in set(given) & set(shapes) if given[k] != tuple(shapes[k]))
    problems = []
    if missing:
        problems.append(f"missing keys {_preview(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_preview(unexpected)}")
    if wrong:
        detail = [f"{k} {list(given[k])} (expected {list(shapes[k])})" for k in wrong]
        problems.append(f"wrong shapes {_preview(detail)}")
    if problems:
        raise UserError(f"{path}: does not match the {layout} layout: " + "; ".join(problems))


def load_into(
    module: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    path: str | Path,
    layout: str,
    optional: Mapping[str, tuple[int, ...]] | None = None,
    only: str = "",
) -> None:
    """Check `state` against the module's keys that start with `only` (all by default), then copy it in.

    Keys are compared as they are: a file holding part of a module (LPIPS' backbone or heads) uses the
    module's own names for that part.
    """
    own = {k: v.shape for k, v in module.state_dict().items() if k.startswith(only)}
    check_keys(state, own, path, layout, optional)
    kept = {k: v for k, v in state.items() if k in own}
    # Counters the file lacks keep the module's value; strict=False only ever skips those (checked above).
    result = module.load_state_dict(kept, strict=False)
    leftover = [k for k in result.missing_keys if k.startswith(only) and not k.endswith(_BN_COUNTER)]
    if leftover or result.unexpected_keys:  # cannot happen after check_keys; a guard against a logic slip
        raise RuntimeError(f"{path}: load left {leftover or result.unexpected_keys}")


def save_state_dict(module: torch.nn.Module, path: str | Path, only: str = "") -> None:
    """Write the module's tensors whose names start with `only` in the published layout (tests, tools)."""
    state = {k: v.detach().clone() for k, v in module.state_dict().items() if k.startswith(only)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
