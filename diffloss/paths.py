"""Where things live: the repository, its shipped weights, the runs folder and the layout of one run folder.

Why one module: a folder name written at two places drifts (a run written as ``model/`` and looked for as
``final/``). Every other module asks here. Environment overrides, so a hosted Space or a second clone can point
elsewhere without code changes:

- ``DIFFLOSS_RUNS``: where training runs are written and found (default ``runs/`` in the repository).
- ``DIFFLOSS_DATASETS``: the benchmark datasets (default ``../shared/datasets`` beside the repository).

A run folder (``python -m diffloss.train ... --out RUN``, or one arm of a Train-tab pair, ``RUN/<arm>``) holds::

    RUN/checkpoint/last.safetensors   the latest training state (resume from it)
    RUN/log.csv                       every logged step
    RUN/model/                        the finished model (EMA weights + card)
    RUN/export/                       a partial model exported from the checkpoint
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = REPO / "pretrained"
SHIPPED_PRIOR = PRETRAINED / "prior"
EXAMPLES = REPO / "examples"
BENCH_RESULTS = REPO / "bench" / "results"

ARMS = ("l2", "diffloss")  # the two arms of every comparison: fidelity only, and fidelity + DiffLoss
TASK_ORDER = ("lowlight", "rain", "haze", "noise", "sr4", "inpaint")  # the order tables and menus list tasks in

MODEL_DIR = "model"
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "last.safetensors"
LOG_FILE = "log.csv"
EXPORT_DIR = "export"
PARTIAL = "partial"  # marks a stopped arm's model exported from its checkpoint, wherever it is listed
PHOTOS_DIR = "photos"  # a Train-tab pair's uploaded photos, kept with the run that trained on them


def runs_folder() -> Path:
    """Where training runs are written and found: ``$DIFFLOSS_RUNS``, else ``runs/`` in the repository. On a
    hosted Space, point it at persistent storage (e.g. ``/data/runs``) so trained pairs outlive a restart."""
    return Path(os.environ.get("DIFFLOSS_RUNS", REPO / "runs"))


def datasets_folder() -> Path:
    """The benchmark datasets: ``$DIFFLOSS_DATASETS``, else ``../shared/datasets`` beside the repo (may not exist)."""
    return Path(os.environ.get("DIFFLOSS_DATASETS", REPO.parent / "shared" / "datasets"))


@dataclass(frozen=True)
class RunFolder:
    """The files of one training run (see the module docstring for the layout)."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def checkpoint(self) -> Path:
        return self.root / CHECKPOINT_DIR / CHECKPOINT_FILE

    @property
    def log(self) -> Path:
        return self.root / LOG_FILE

    @property
    def model(self) -> Path:
        return self.root / MODEL_DIR

    @property
    def export(self) -> Path:
        return self.root / EXPORT_DIR
