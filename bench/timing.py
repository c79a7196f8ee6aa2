"""How every bench script times work and writes its result: interleaved medians, one JSON format."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch


def synchronize(device: torch.device) -> None:
    """CUDA runs asynchronously: without a sync the timer reads when work was queued, not when it finished."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(fns: dict[str, Callable[[], object]], repeats: int,
                      device: torch.device) -> dict[str, list[float]]:
    """Seconds of each call of each function, timed in rounds (one call of each per round) after one untimed
    warm-up each.

    Why interleaved: load from other processes drifts over minutes; alternating the arms spreads it over all of
    them, so their ratio stays fair even when the absolute numbers do not. The warm-up pays for lazy
    initialisation, allocator growth and kernel selection, which a training run pays once.
    """
    for fn in fns.values():
        fn()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def median_times(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call of each function, timed interleaved (``interleaved_times``)."""
    return {name: statistics.median(values) for name, values in interleaved_times(fns, repeats, device).items()}


def median_ratio(slow: list[float], fast: list[float]) -> float:
    """The median over rounds of ``slow / fast``: a speed-up that a load change between rounds does not skew."""
    return statistics.median(s / f for s, f in zip(slow, fast, strict=True))


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write a result file as every bench script does: its folder made, indented, a final newline."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path
