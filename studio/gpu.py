"""GPU work on Hugging Face Spaces: ``spaces.GPU`` where the ``spaces`` package exists, plain functions elsewhere.

On a ZeroGPU Space a GPU is attached only while a function decorated with ``spaces.GPU`` runs, for at most its
``duration`` in seconds, so every handler that touches a model is wrapped with an explicit duration. Anything
that must outlive the call (trained weights) is written to disk from CPU copies (``diffloss.checkpoint`` moves
tensors to the CPU before saving). Without the package (local runs, CPU Spaces) the functions run unchanged.
"""

from __future__ import annotations

import importlib
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)

# Seconds of GPU per call; generous for a 2048 px Compare, a full Inspect, and the capped Train run.
DURATIONS = {"compare": 60, "inspect": 60, "curves": 120, "purify": 60, "calibrate": 60, "evaluate": 120, "train": 600}


def spaces_module():
    """The ``spaces`` package when installed (Hugging Face Spaces), else None."""
    try:
        return importlib.import_module("spaces")
    except ImportError:
        return None


def on_gpu(kind: str) -> Callable[[F], F]:
    """Decorator factory: ``@on_gpu("compare")`` -> ``spaces.GPU(duration=DURATIONS["compare"])`` or identity."""
    duration = DURATIONS[kind]
    spaces = spaces_module()
    if spaces is None:
        return lambda fn: fn
    return lambda fn: spaces.GPU(duration=duration)(fn)
