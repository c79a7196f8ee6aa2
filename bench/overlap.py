"""Does the app's side-by-side wrapper pay on a CPU? Each wrapped call timed against the plain library call.

    nice python bench/overlap.py [--repeats 7] [--threads 2] [--json bench/results/overlap-wrappers-cpu.json]

``diffloss.side_by_side`` is a wrapper the app puts around the library's plain functions; no maths module uses
threads. Each case is timed both ways in interleaved rounds (``bench.timing.interleaved_times``), with the shipped
prior and restorer (random ones of the same architecture in a clone without ``pretrained/``); ``speedup`` is the
median over rounds of plain / wrapped, so a background process that speeds up or slows down between rounds does
not skew it. ``thread_scaling`` says what the VM's threads gave at the start.
- ``curves_64``: the Inspect tab's L(t) plot (restored/degraded/ground truth, 8 timesteps x 3 seeds, 64 px: the
  CPU default): ``inspection.loss_curves`` against ``side_by_side.loss_curves`` (its timesteps in two halves);
- ``arms_512``: the two shipped restorers of a task on one 512x512 image, one after the other against
  ``side_by_side.run`` (Compare's two arms).

The training step and the Inspect pair have no wrapper: their independent passes (the two prior forwards, L_nat's
backward beside L_sem's) are inside ``DiffLoss``, which runs them one after another. What running them side by
side inside the loss gave is in ``bench/results/overlap-cpu.json`` (measured before the maths became plain).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import run, timing  # noqa: E402
from diffloss import inspection, nets, side_by_side  # noqa: E402
from diffloss.machine import thread_scaling  # noqa: E402

CPU = torch.device("cpu")


def curves(prior, side: int) -> dict:
    """The L(t) plot's prior work (restored/degraded/ground truth, 8 timesteps x 3 seeds, batches of 8), both ways."""
    g = torch.Generator().manual_seed(0)
    gt, a, b = (torch.rand(3, side, side, generator=g) for _ in range(3))
    pairs = {"restored": (a, gt), "degraded": (b, gt)}
    steps = inspection.default_timesteps(prior.num_timesteps, 8)
    return {
        "plain": lambda: inspection.loss_curves(prior, pairs, timesteps=steps, seeds=(0, 1, 2)),
        "side_by_side": lambda: side_by_side.loss_curves(prior, pairs, timesteps=steps, seeds=(0, 1, 2)),
    }


def arms(restorer, side: int) -> dict:
    """Two restorers on one image, as Compare runs its L2 and DiffLoss arms (the same weights twice: same cost)."""
    x = torch.rand(restorer.config.in_channels, side, side, generator=torch.Generator().manual_seed(0))
    restore = lambda: nets.restore(restorer, x)  # noqa: E731
    return {"plain": lambda: (restore(), restore()), "side_by_side": lambda: side_by_side.run(CPU, restore, restore)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    bench_args = ["--device", "cpu", "--threads", str(args.threads), "--repeats", str(args.repeats)]
    settings = run.settings_from_args(run.build_parser().parse_args(bench_args + (["--quick"] if args.quick else [])))
    ctx = run.make_context(settings)
    s = settings
    cases = {
        "curves_64": curves(ctx.prior, 16 if s.quick else 64),
        "arms_512": arms(ctx.restorer, 32 if s.quick else 512),
    }
    scaling = thread_scaling(s.threads)
    results = {}
    for name, fns in cases.items():
        times = timing.interleaved_times(fns, s.repeats, ctx.device)
        plain, wrapped = statistics.median(times["plain"]), statistics.median(times["side_by_side"])
        results[name] = {"plain": plain, "side_by_side": wrapped,
                         "speedup": timing.median_ratio(times["plain"], times["side_by_side"]), "rounds": times}
        print(f"{name:<12} plain {plain:6.3f} s   side by side {wrapped:6.3f} s   "
              f"x{results[name]['speedup']:.2f} (median of per-round ratios)", flush=True)
    out = {
        "device": run.device_name(ctx.device), "threads": s.threads, "thread_scaling": scaling,
        "torch": torch.__version__, "git": run.git_commit(), "settings": {"repeats": s.repeats},
        "prior": ctx.prior_label, "restorer": ctx.restorer_label, "cases": results, "notes": ctx.notes,
    }
    if args.json:
        timing.write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
