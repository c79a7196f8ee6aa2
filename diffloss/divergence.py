"""Whether saved weights are still those of a trained net, or of one that blew up.

Why: the training loop stops on a NaN loss, but weights can run off to 1e30 with a finite loss first, and the
checkpoint saved just before holds them. Resuming from it only wastes a visitor's time, so such a checkpoint is
not offered. A restorer's weights are O(1); 1e6 is far beyond anything training produces.
"""

from __future__ import annotations

from pathlib import Path

import torch

MAX_ABS_WEIGHT = 1e6
WEIGHT_PREFIXES = ("model.", "ema.")  # a run checkpoint's net and its average; the optimiser's moments may be large


def diverged_reason(tensors: dict[str, torch.Tensor], limit: float = MAX_ABS_WEIGHT,
                    prefixes: tuple[str, ...] = WEIGHT_PREFIXES) -> str | None:
    """None when every floating weight under ``prefixes`` is finite and at most ``limit`` in size; else a sentence
    naming the first tensor that is not."""
    for name, tensor in tensors.items():
        if not name.startswith(prefixes) or not tensor.is_floating_point() or not tensor.numel():
            continue
        values = tensor.detach().float()
        if not bool(torch.isfinite(values).all()):
            return f"{name} holds non-finite weights (NaN or inf)"
        largest = float(values.abs().max())
        if largest > limit:
            return f"{name} holds a weight of size {largest:.3g}, beyond {limit:g}: the run diverged"
    return None


def checkpoint_diverged(path: str | Path) -> str | None:
    """``diverged_reason`` of a run checkpoint file (CheckpointError when it cannot be read)."""
    from diffloss.checkpoint import load_tensors

    return diverged_reason(load_tensors(path))
