"""How long the default restorer takes on one image: the CPU budget is 0.25 s for 512x512 on 2 threads.

Not a test (timings depend on the machine and its load); run it after changing the architecture:
    python bench/restorer_speed.py --size 512 --repeats 10 --threads 2 --json out.json
    python bench/restorer_speed.py --task sr4      # a task's own layout (diffloss.nets.TASK_LAYOUTS)
On a machine shared with other busy processes, OpenMP's default spin-waiting makes 2 threads several times
slower than 1; run with OMP_WAIT_POLICY=PASSIVE there (the line says when it is set).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import write_json  # noqa: E402
from diffloss.nets import Restorer, RestorerConfig, count_parameters  # noqa: E402
from diffloss.train_config import new_restorer_config  # noqa: E402


def time_restorer(config: RestorerConfig, size: int, repeats: int, warmup: int = 2) -> list[float]:
    """Seconds per forward pass of one ``size`` x ``size`` image, after ``warmup`` untimed passes."""
    model = Restorer(config).eval()
    x = torch.rand(1, config.in_channels, size, size)
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--in-channels", type=int, default=3, help="4 times the inpaint restorer")
    parser.add_argument("--task", default=None, help="time this task's restorer (its layout and input channels)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    config = new_restorer_config(args.task) if args.task else RestorerConfig(in_channels=args.in_channels)
    times = time_restorer(config, args.size, args.repeats)
    result = {
        "arch": "nafnet",
        "config": config.to_dict(),
        "params": count_parameters(Restorer(config)),
        "size": args.size,
        "threads": args.threads,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "times_s": times,
        "torch": torch.__version__.split("+")[0],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    print(
        f"restorer nafnet {config.task if args.task else 'default'} width={config.width} "
        f"params={result['params'] / 1e6:.2f}M "
        f"{args.size}x{args.size}: median {result['median_s']:.3f} s (min {result['min_s']:.3f} s) "
        f"on {args.threads} threads, torch {result['torch']}"
        + (f", OMP_WAIT_POLICY={result['omp_wait_policy']}" if result["omp_wait_policy"] else "")
    )
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
