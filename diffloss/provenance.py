"""Cards that name the data, not the machine: the paths in a model card, written so any reader can follow them.

A card (``card.json`` beside the weights) says how they were made: the command, the data, every setting. Written
as the training machine saw them, its paths name that machine's folders (``/home/x/datasets/clean/train``): a
reader learns where someone kept things, not which data was used. A portable card names

- data by its path inside the benchmark datasets folder (``clean/train``); the card's ``datasets_root`` says which
  folder that is. In a command the folder is written ``$DIFFLOSS_DATASETS``, so the command runs as printed once
  that variable points at a copy of the datasets (``diffloss.paths.datasets_folder`` reads the same variable);
- run folders under ``runs/`` (the runs folder), shipped weights under ``pretrained/``, the repository's own
  files relative to it;
- anything else by its name alone (the rule of ``diffloss.paths.shown_path``, which this module applies).

Used where cards are written for others to read: the zoo's installed ``pretrained/`` cards (the whole card), and
the training CLI's finished and exported models (their command and data; the ``config`` keeps the run's exact
settings on its machine). The Train tab's cards stay as they are on the machine; its downloads already pass
through ``diffloss.paths.public_json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from diffloss.checkpoint import CARD_FILE, atomic_write_json
from diffloss.paths import _ABS_PATH, PRETRAINED, REPO, datasets_folder, public_text, runs_folder

DATASETS_VARIABLE = "$DIFFLOSS_DATASETS"
DATASETS_ROOT = ("the benchmark datasets folder: $DIFFLOSS_DATASETS, else ../shared/datasets beside the repository "
                 "(README, Set-up); the data paths in this card are relative to it, and its commands write it "
                 "as $DIFFLOSS_DATASETS")
COMMAND_KEYS = ("command",)  # strings that are command lines, wherever they sit in a card (card and config.loop)


def default_roots() -> dict[Path, str]:
    """Folders other than the datasets and how a portable card writes them: the runs folder as ``runs/``,
    shipped weights as ``pretrained/``, the rest of the repository relative to it."""
    return {REPO: "", runs_folder(): "runs/", PRETRAINED: "pretrained/"}


def portable_card(card: dict[str, Any], datasets: Path | None = None, roots: Mapping[Path, str] | None = None,
                  fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """``card`` with every absolute path rewritten: under ``datasets`` relative to it (in command lines as
    ``$DIFFLOSS_DATASETS/...``), under one of ``roots`` with its prefix, anything else by its name; plus
    ``datasets_root`` saying what the data paths are relative to. Numbers and other text are unchanged.
    ``fields``: rewrite only these top-level entries (None: the whole card)."""
    datasets = Path(datasets) if datasets is not None else datasets_folder()
    others = dict(default_roots() if roots is None else roots)
    data_roots = {**others, datasets: ""}
    command_roots = {**others, datasets: DATASETS_VARIABLE + "/"}

    def rewrite(value: Any, key: str | None = None) -> Any:
        if isinstance(value, str):
            return public_text(value, command_roots if key in COMMAND_KEYS else data_roots)
        if isinstance(value, dict):
            return {k: rewrite(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [rewrite(v, key) for v in value]
        return value

    out = {k: rewrite(v, k) if fields is None or k in fields else v for k, v in card.items()}
    out["datasets_root"] = DATASETS_ROOT
    return out


RUN_CARD_FIELDS = ("command", "data")  # what a run's own card says to readers; its "config" stays as the run saw it


def make_card_portable(model_dir: str | Path, fields: tuple[str, ...] | None = RUN_CARD_FIELDS) -> Path | None:
    """Rewrite ``model_dir/card.json`` in place (atomically) with :func:`portable_card` and this machine's
    folders; by default its command and data only: the ``config`` keeps the exact settings of the run on this
    machine, as its checkpoint does. None when there is no card."""
    path = Path(model_dir) / CARD_FILE
    if not path.is_file():
        return None
    atomic_write_json(path, portable_card(json.loads(path.read_text()), fields=fields))
    return path


def absolute_paths(value: Any) -> list[str]:
    """Every absolute path in a card's strings: what a portable card must not hold."""
    if isinstance(value, str):
        return _ABS_PATH.findall(value)
    if isinstance(value, dict):
        return [p for v in value.values() for p in absolute_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in absolute_paths(v)]
    return []
