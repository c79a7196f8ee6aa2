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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

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


# An absolute posix path not glued to a word, a number or a URL ("https://", "1/2", "L2/DiffLoss" are not paths).
_ABS_PATH = re.compile(r"(?<![\w.:/~-])/[^\s`'\"()\[\]{},;:*?<>|]+")


def shown_path(path: str | Path, roots: Mapping[Path, str] | None = None) -> str:
    """A path as a reader may see it: under one of ``roots`` (folder -> prefix; the repository as "" by default)
    as prefix + relative path, else its name alone. A relative path or a hub id is shown as given.

    Why: the machine that trained a weight or serves the app is not the reader's, and its folders are nobody's
    business; one rule for pages, cards, downloads and the report.
    """
    if not Path(path).is_absolute():
        return str(path)
    roots = {REPO: ""} if roots is None else roots
    target = Path(os.path.abspath(path))
    for root, prefix in sorted(((Path(os.path.abspath(r)), p) for r, p in roots.items()),
                               key=lambda item: len(str(item[0])), reverse=True):  # the deepest root first
        if target == root:
            return prefix.rstrip("/") or "."
        if root in target.parents:
            return prefix + target.relative_to(root).as_posix()
    return target.name or "."


def public_text(text: str, roots: Mapping[Path, str] | None = None) -> str:
    """``text`` with every absolute path in it rewritten by ``shown_path``."""
    return _ABS_PATH.sub(lambda match: shown_path(match.group(0), roots), text)


def public_json(value: Any, roots: Mapping[Path, str] | None = None) -> Any:
    """A JSON value (a card) with every string passed through ``public_text``: what a download may hold."""
    if isinstance(value, str):
        return public_text(value, roots)
    if isinstance(value, dict):
        return {k: public_json(v, roots) for k, v in value.items()}
    if isinstance(value, list):
        return [public_json(v, roots) for v in value]
    return value


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
