"""Independent pieces of CPU work run side by side in threads: how small passes fill two small cores.

Why: a pass over one small image leaves oneDNN's threads idle part of the time on a 2-core CPU; two independent
passes side by side fill them. This module is a wrapper the app puts *around* the library's plain functions (the
two restorers of a comparison, the halves of an L(t) plot); no maths module imports it. Only the timing changes:
each piece computes exactly what it would alone, threads or not (tests compare bit for bit). Off on CUDA (one stream serialises
the work anyway) and under CPU autocast (its state does not cross threads). ``bench/overlap.py`` times each
wrapper against the plain call; its results are in ``bench/results/`` (overlap-*.json).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from diffloss import inspection
from diffloss.prior import DiffusionPrior

ENABLED = True  # execution only, so not part of any config or run setting (old runs stay resumable)


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    """Side threads for the process (four: concurrent requests of the app seldom wait for one)."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="side-by-side")


def worth_it(device: torch.device) -> bool:
    """Side by side only where it pays and is safe: on a CPU, outside autocast."""
    return ENABLED and device.type == "cpu" and not torch.is_autocast_enabled("cpu")


def run(device: torch.device, main: Callable[[], Any], *beside: Callable[[], Any]) -> tuple:
    """``main()`` on this thread and each of ``beside`` in a side thread (when ``worth_it``; else one after another
    here): ``(main's result, *beside's results)``. Side threads get this thread's grad mode. Side work must never
    wait for other side work (that could deadlock a full pool); an error in any piece is raised here.
    """
    if not beside or not worth_it(device):
        return (main(), *(fn() for fn in beside))
    grad = torch.is_grad_enabled()

    def with_grad_mode(fn: Callable[[], Any]) -> Callable[[], Any]:
        def call() -> Any:
            with torch.set_grad_enabled(grad):
                return fn()
        return call

    pending = [_pool().submit(with_grad_mode(fn)) for fn in beside]
    first = main()
    return (first, *(p.result() for p in pending))


def loss_curves(
    prior: DiffusionPrior, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]],
    timesteps: Sequence[int] | None = None, seeds: Sequence[int] = (0, 1, 2), batch_size: int = 8, parts: int = 2,
) -> inspection.LossCurves:
    """``inspection.loss_curves`` with its timesteps split into ``parts`` consecutive groups measured side by side
    and joined (``inspection.join_curves``): the same curves, since each (t, seed) is measured on its own (equal to
    float rounding, not bit for bit: the prior's batches differ)."""
    steps = inspection.default_timesteps(prior.num_timesteps) if timesteps is None else [int(v) for v in timesteps]
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    size, extra = divmod(len(steps), parts)
    groups, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        if end > start:
            groups.append(steps[start:end])
        start = end
    if not groups:  # no timesteps: let the library give its own message
        return inspection.loss_curves(prior, pairs, steps, seeds, batch_size)
    pieces = [lambda g=g: inspection.loss_curves(prior, pairs, g, seeds, batch_size) for g in groups]
    return inspection.join_curves(run(prior.device, *pieces))
