"""Checks of what a visitor types or uploads, each with a message that says what is allowed.

Why one module: a number box accepts NaN, inf and 2**70 over the HTTP API, and a file name can be 255 bytes long;
left to the library these became an OverflowError from torch's seeding, a file system "name too long" or a run
that silently trains nothing. Each check raises ValueError with a human message (the tabs turn it into gr.Error).
"""

from __future__ import annotations

import math
import re

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a 64-bit signed int
MAX_STEM = 80  # characters of an uploaded file's name kept in the files made from it (a name is <= 255 bytes)
NAME_BYTES = 255  # the longest file name the common file systems accept


def finite_number(value: object, what: str) -> float:
    """``value`` as a float; ValueError when it is missing, not a number, NaN or infinite."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, got {number}")
    return number


def whole_number(value: object, what: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high]; ValueError saying the range otherwise (NaN and inf included)."""
    number = finite_number(value, what)
    if number != int(number):
        raise ValueError(f"{what} must be a whole number, got {number:g}")
    if number < low or (high is not None and number > high):
        upper = f" and at most {high}" if high is not None else ""
        raise ValueError(f"{what} must be at least {low}{upper}, got {int(number)}")
    return int(number)


def optional_whole_number(value: object, what: str, low: int) -> int | None:
    """An empty box is None (the default it names, such as the prior's band); anything else as ``whole_number``."""
    return None if value is None or (isinstance(value, str) and not value.strip()) else whole_number(value, what, low)


def seed(value: object, what: str = "Seed") -> int:
    return whole_number(value, what, 0, MAX_SEED)


def learning_rate(value: object) -> float:
    lr = finite_number(value, "Learning rate")
    if lr <= 0:
        raise ValueError(f"Learning rate must be above 0, got {lr:g} (1e-3 is a good start)")
    return lr


def run_name(name: str) -> str:
    """A run's folder name as typed or sent: one path component, never '.', '..' or a path, at most 255 bytes."""
    if name in (".", "..") or "/" in name or "\\" in name or "\0" in name or not name.strip():
        raise ValueError(f"No Train run named {name[:80]!r}: a run name is a name from the list, never a path")
    if len(name.encode()) > NAME_BYTES:
        raise ValueError(f"a run name has at most {NAME_BYTES} bytes; this one has {len(name.encode())}")
    return name


def file_stem(stem: str, limit: int = MAX_STEM) -> str:
    """An uploaded file's stem made safe to put into a file name: odd characters replaced, at most ``limit``
    characters (a 255-character upload name plus a prefix would be over the file system's limit)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.")
    return cleaned[:limit].rstrip("-.")


def train_numbers(steps: object, batch: object, crop: object, lr: object, gamma: object, lam: object,
                  t_min: object, t_max: object, seed_value: object, prior_crop: object,
                  prior_samples: object = 0) -> dict[str, float | int]:
    """The Train tab's number boxes checked, by their names in the page; ValueError for the first bad one."""
    return {
        "steps": whole_number(steps, "steps", 1), "batch": whole_number(batch, "batch", 1),
        "crop": whole_number(crop, "crop", 1), "lr": learning_rate(lr),
        "gamma": finite_number(gamma, "gamma"), "lam": finite_number(lam, "lambda"),
        "t_min": optional_whole_number(t_min, "t min", 0), "t_max": optional_whole_number(t_max, "t max", 0),
        "seed": seed(seed_value), "prior_crop": whole_number(prior_crop or 0, "Prior sub-crop px", 0),
        "prior_samples": whole_number(prior_samples or 0, "Prior on photos per batch", 0),
    }
