"""Resolving the relative paths written in configs, naming output files after prompts, and writing folders whole."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from magicpose.errors import UserError

# The repository root when running from a checkout (configs/ lives beside the package).
REPO_ROOT = Path(__file__).resolve().parents[1]


def resolve_path(path: str | Path) -> Path:
    """A config path: absolute as given; relative to the working directory if it exists there, else to the repo.

    Configs name repo-relative paths (`configs/models/tiny`, `pretrained_weights/...`), so they work from any
    working directory inside a checkout, while a user's own relative paths still mean what they say.
    """
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path
    in_repo = REPO_ROOT / path
    return in_repo if in_repo.exists() else path


def first_existing(value: str | Path | list | tuple | None, what: str) -> Path | None:
    """A config path, or a list of alternatives of which the first that exists wins (None: not set).

    Lists let one config serve users with different downloads, e.g. a diffusers folder or else the original's
    single file (`[pretrained_weights/stable-diffusion-v1-5/unet, pretrained_weights/control_sd15_ini.ckpt]`).
    When nothing exists, the error names every alternative and the config key (`what`).
    """
    if value is None or value == "":
        return None
    candidates = [value] if isinstance(value, (str, Path)) else [v for v in value if v]
    if not candidates:
        return None
    resolved = [resolve_path(c) for c in candidates]
    for path in resolved:
        if path.exists():
            return path
    if len(resolved) == 1:
        return resolved[0]  # the caller's own "no such folder" error names it
    raise UserError(f"{what}: none of these exists: {', '.join(str(p) for p in resolved)} (where the weights go: "
                    "pretrained_weights/README.md)")


def prompt_file_stem(index: int, prompt: str, max_chars: int = 40) -> str:
    """`NN_slug` for the file of the video of one prompt among several, e.g. `01_iron_man_on_the_beach`: the index
    keeps names unique and in prompt order; the slug is lower-case ASCII letters, digits and `_` only."""
    slug = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:max_chars].rstrip("_")
    return f"{index:02d}_{slug or 'prompt'}"


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """Write a folder whole or not at all: the block writes into `OUT.partial` (emptied first), which replaces `out`
    only when the block finishes; if it raises (or is interrupted), the partial folder is removed and an earlier `out`
    is left as it was."""
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
