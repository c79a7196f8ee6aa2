"""Independent pieces of CPU work run side by side in threads: how one image's passes fill two small cores.

Why: a pass over one image (the prior's two forwards in DiffLoss and Inspect, L_nat's backward beside L_sem's,
the L(t) chunks, the two restorers of a comparison) leaves oneDNN's threads idle part of the time on a 2-core
CPU; two independent passes side by side fill them. Only the timing changes: each piece computes exactly what it
would alone (tests compare bit for bit). Off on CUDA (one stream serialises the work anyway) and under CPU
autocast (its state does not cross threads). ``bench/overlap.py`` times the work with ``ENABLED`` on and off.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

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
