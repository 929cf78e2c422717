"""Resolving the relative paths written in configs, and naming output files after prompts."""

from __future__ import annotations

import re
from pathlib import Path

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


def prompt_file_stem(index: int, prompt: str, max_chars: int = 40) -> str:
    """`NN_slug` for the file of the video of one prompt among several, e.g. `01_iron_man_on_the_beach`: the index
    keeps names unique and in prompt order; the slug is lower-case ASCII letters, digits and `_` only."""
    slug = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:max_chars].rstrip("_")
    return f"{index:02d}_{slug or 'prompt'}"
