"""Text as a visitor may see it: the server folders a hosted studio names, and messages without server paths.

Separate from ``studio.hosting`` (the hosted mode's rules, which the model registry reads) because it needs the
registry to know where runs are: keeping it here keeps the imports one way (public -> models -> hosting).
"""

from __future__ import annotations

from pathlib import Path

from studio.hosting import is_hosted, public_text
from studio.models import REPO, get_registry


def server_roots() -> dict[Path, str]:
    """The server folders a visitor may see named, and how: the repo relative to itself, the runs as ``runs/``."""
    return {REPO: "", get_registry().runs: "runs/"}


def public_message(text: str) -> str:
    """``text`` as a visitor may see it: unchanged on one's own machine, without server paths when hosted."""
    return public_text(text, server_roots()) if is_hosted() else text
