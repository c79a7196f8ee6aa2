"""Which machine a number came from: one description for model cards and benchmark results alike.

Why a module: a training card and a benchmark JSON written on the same computer must name it the same way, or
nobody can tell whether two figures are comparable. On a shared VM the name is not enough either, so
``thread_scaling`` measures how much a second thread really adds at the moment a benchmark runs.
"""

from __future__ import annotations

import contextlib
import platform
import subprocess
import time
from pathlib import Path

import torch


def cpu_name() -> str:
    """The CPU model, which ``platform.processor()`` often leaves empty on Linux."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.strip().startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def device_description(device: torch.device) -> str:
    """What a card records: ``cuda: <GPU>`` or ``cpu: <model>, N threads``."""
    if device.type == "cuda":
        return f"cuda: {device_name(device)}"
    return f"cpu: {cpu_name()}, {torch.get_num_threads()} threads"


def thread_scaling(threads: int | None = None, size: int = 512, seconds: float = 0.3) -> dict[str, float]:
    """Matrix-multiply GFLOP/s on one thread and on ``threads``: what the extra cores give right now.

    On a shared VM another tenant can take a core away for minutes; a benchmark run then looks slow for reasons
    of its own. With this beside the results, such a run shows itself (``speedup`` near 1 on two cores).
    """
    threads = threads or torch.get_num_threads()
    saved = torch.get_num_threads()
    a, b = torch.randn(size, size), torch.randn(size, size)

    def gflops(n: int) -> float:
        torch.set_num_threads(n)
        a @ b  # warm-up
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            count += 1
        return 2 * size**3 * count / (time.perf_counter() - start) / 1e9

    try:
        one, many = gflops(1), gflops(threads)
    finally:
        torch.set_num_threads(saved)
    return {"threads": threads, "gflops_1_thread": round(one, 1), f"gflops_{threads}_threads": round(many, 1),
            "speedup": round(many / one, 2)}
