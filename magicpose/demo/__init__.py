"""The web demo (`magicpose demo`): a Gradio page for both systems.

- `uploads`: what a person uploads, checked (one-line errors that name the file), poses from a video, a zip or
  images, raw videos through pose extraction;
- `sessions`: a loaded model, one request at a time, running the command-line code path with the page's settings;
- `app`: the page itself, the only module that imports gradio (an optional extra: `pip install 'magicpose[demo]'`).
"""

from __future__ import annotations

import importlib.util

from magicpose.errors import UserError

INSTALL_HINT = "pip install 'magicpose[demo]'"


def require_gradio() -> None:
    """A one-line `UserError` when gradio (the `demo` extra) is not installed."""
    if importlib.util.find_spec("gradio") is None:
        raise UserError(f"the web demo needs gradio, which is not installed: {INSTALL_HINT}")
