"""What one Train run is asked for, as one object: the Train form's boxes by name, and what the handler yields.

Why: the handler took twenty positional parameters (issue #27), so a caller could swap gamma and lambda without
a sign. The page passes the boxes by name (``inputs_kwargs``), tests build the settings they need by name.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class TrainSettings:
    """The Train form, checked later by ``studio.inputs.train_numbers`` (numbers arrive as floats or text)."""

    task: str = "noise"
    steps: float = 100
    batch: float = 4
    crop: float = 64
    lr: float = 1e-3
    gamma: float = 0.05
    lam: float = 0.1
    t_min: float | None = None  # None: the prior's band (diffloss.prior_band)
    t_max: float | None = None
    seed: float = 0
    prior_source: str | None = None
    clean_folder: str | None = None
    prior_crop: float = 0
    start: str | None = None  # a restorer label to fine-tune from, or restorers.FRESH_START / empty
    photos: list[str] | None = None  # uploaded clean photos (used instead of clean_folder)
    detach_prior: bool = False  # the released code's no_grad mistake, on purpose
    # Added last (2026-12), so a caller that passes the form by position keeps every earlier field in its place.
    t_weight: str = "uniform"  # the weight of each t (DiffLossConfig.t_weight; empty: uniform, the paper's)
    gradient: str = "full"  # "sds": the Jacobian-free gradient (DiffLossConfig.gradient; empty: full)
    prior_samples: float = 0  # the prior terms on this many photos of each batch (0: all; DiffLossConfig.prior_samples)
    width: int | None = None  # not on the form: a fresh restorer's width (None: the default)
    name: str | None = None  # not on the form: the run's name (None: from the task and the time)


FORM_FIELDS = tuple(f.name for f in fields(TrainSettings) if f.name not in ("width", "name"))


class TrainView(NamedTuple):
    """One update of the Train tab while a run goes, in the order of the tab's outputs: status, curves, the zip
    once done, and the live gap between the arms (``studio.train_gap``)."""

    status: str
    curves: np.ndarray
    archive: str | None
    gap_curve: np.ndarray
    gap_picture: np.ndarray
    gap_note: str
