"""Resolving the relative paths written in configs."""

from __future__ import annotations

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
