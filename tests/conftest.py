"""Shared test fixtures. Tests that need ../shared/datasets skip with a reason when it is absent (a user's clone)."""

from __future__ import annotations

import os
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a 2-core machine shared with another process, spinning
# threads made every torch call 10-20x slower. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    """Root of the benchmark images (where the app looks too); skip the test when this clone has none."""
    from studio.models import datasets_folder

    root = datasets_folder()
    if not root.is_dir():
        pytest.skip(f"benchmark data not found at {root} (set DIFFLOSS_DATASETS to use another folder)")
    return root


@pytest.fixture
def hosted(monkeypatch):
    """The studio as on a public Space (SPACE_ID set)."""
    from studio import hosting

    monkeypatch.setenv(hosting.PUBLIC_ENV, "0")
    monkeypatch.setenv("SPACE_ID", "someone/diffloss-studio")


@pytest.fixture
def local(monkeypatch):
    """The studio on one's own machine (no SPACE_ID; the public flag recorded, so a test turning it on is undone)."""
    from studio import hosting

    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setenv(hosting.PUBLIC_ENV, "0")
