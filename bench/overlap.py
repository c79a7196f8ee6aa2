"""Does running the prior's work side by side pay on a CPU? The same work, with and without it.

    python bench/overlap.py [--repeats 5] [--threads 2] [--json bench/results/overlap-cpu.json]

``diffloss.side_by_side.ENABLED`` (on by default) runs DiffLoss's no-grad forward of the ground truth beside the
restored image's forward, L_nat's backward beside L_sem's when each term's gradient is measured, the images of an
L(t) chunk and the two arms of a comparison side by side. The numbers are identical (tests/test_loss.py); only the time may differ, and by how much depends on how well one pass alone
keeps the cores busy: most at one image per pass (Inspect), less at a full batch. Each case is timed with the
flag on and off, interleaved (``bench.timing.median_times``), with the shipped prior and restorer (random ones of the
same architecture in a clone without ``pretrained/``); ``thread_scaling`` says what the VM's threads gave:
- ``pair_256``: both forwards for one 256x256 image at t = T/5, as the Inspect view runs them;
- ``pair_256_with_gradients``: that and each term's gradient on the image (L_nat's backward beside L_sem's):
  all the prior work of one Inspect;
- ``curves_64``: the L(t) plot's prior work (3 images, 8 timesteps x 3 seeds, 64 px: the CPU default);
- ``arms_512``: the two shipped restorers of a task on one 512x512 image, as Compare runs them;
- ``step_full``: the P1 training step (batch 16, 128 px crops, prior on the whole crop);
- ``step_crop64_samples4``: the P1 step with the prior on one 64 px square of 4 batch items.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import run, timing  # noqa: E402
from diffloss import loss as loss_module  # noqa: E402
from diffloss import side_by_side  # noqa: E402
from diffloss.machine import thread_scaling  # noqa: E402


def with_overlap(fn, on: bool):
    """``fn`` run with the module's overlap flag set to ``on`` (restored afterwards)."""
    def call() -> None:
        saved = side_by_side.ENABLED
        side_by_side.ENABLED = on
        try:
            fn()
        finally:
            side_by_side.ENABLED = saved
    return call


def pair_forward(prior, side: int):
    """Both prior forwards for one image pair, the restored one with its graph (what Inspect runs first)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(1, 3, side, side, generator=g), torch.rand(1, 3, side, side, generator=g)
    eps, t = torch.randn(1, 3, side, side, generator=g), torch.tensor([prior.num_timesteps // 5])

    def call() -> None:
        with torch.enable_grad():
            loss_module.prior_outputs(prior, a.clone().requires_grad_(True), b, t, eps)
    return call


def pair_gradients(prior, side: int):
    """Inspect's whole prior work for one image pair: both forwards and each term's gradient on the image."""
    from diffloss.inspection import term_gradients
    from diffloss.loss import DiffLossConfig

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, side, side, generator=g), torch.rand(3, side, side, generator=g)
    return lambda: term_gradients(prior, a, b, DiffLossConfig(), seed=0, t=prior.num_timesteps // 5)


def curves(prior, side: int):
    """The L(t) plot's prior work: restored/degraded/ground truth, 8 timesteps x 3 seeds, batches of 8."""
    from diffloss.inspection import default_timesteps, loss_curves

    g = torch.Generator().manual_seed(0)
    gt, a, b = (torch.rand(3, side, side, generator=g) for _ in range(3))
    steps = default_timesteps(prior.num_timesteps, 8)
    return lambda: loss_curves(prior, {"restored": (a, gt), "degraded": (b, gt)}, timesteps=steps, seeds=(0, 1, 2))


def arms(restorer, side: int):
    """Two restorers on one image, as Compare runs its L2 and DiffLoss arms (the same weights twice: same cost)."""
    from diffloss import nets

    x = torch.rand(restorer.config.in_channels, side, side, generator=torch.Generator().manual_seed(0))
    restore = lambda: nets.restore(restorer, x)  # noqa: E731
    return lambda: side_by_side.run(torch.device("cpu"), restore, restore)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    bench_args = ["--device", "cpu", "--threads", str(args.threads), "--repeats", str(args.repeats)]
    settings = run.settings_from_args(run.build_parser().parse_args(bench_args + (["--quick"] if args.quick else [])))
    ctx = run.make_context(settings)
    s = settings
    batch = run.make_batch(s.task, s.batch, s.crop)
    cases = {
        "pair_256": pair_forward(ctx.prior, 32 if s.quick else 256),
        "pair_256_with_gradients": pair_gradients(ctx.prior, 32 if s.quick else 256),
        "curves_64": curves(ctx.prior, 16 if s.quick else 64),
        "arms_512": arms(ctx.restorer, 32 if s.quick else 512),
        "step_full": run.restorer_step(ctx, ctx.prior, run.diffloss_config(ctx), batch),
        f"step_crop{s.prior_crop}_samples{s.prior_samples}": run.restorer_step(
            ctx, ctx.prior, run.diffloss_config(ctx, prior_crop=s.prior_crop, prior_samples=s.prior_samples), batch),
    }
    scaling = thread_scaling(s.threads)
    results = {}
    for name, fn in cases.items():
        times = timing.median_times({"overlap": with_overlap(fn, True), "sequential": with_overlap(fn, False)},
                                 s.repeats, ctx.device)
        results[name] = {**times, "speedup": times["sequential"] / times["overlap"]}
        print(f"{name:<26} sequential {times['sequential']:6.3f} s   overlap {times['overlap']:6.3f} s   "
              f"x{results[name]['speedup']:.2f}", flush=True)
    out = {
        "device": run.device_name(ctx.device), "threads": s.threads, "thread_scaling": scaling, "torch": torch.__version__,
        "git": run.git_commit(), "settings": {"batch": s.batch, "crop": s.crop, "prior_crop": s.prior_crop,
                                              "prior_samples": s.prior_samples, "repeats": s.repeats},
        "prior": ctx.prior_label, "restorer": ctx.restorer_label, "cases": results, "notes": ctx.notes,
    }
    if args.json:
        timing.write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
