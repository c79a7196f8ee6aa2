"""bf16 autocast against float32 for one restorer training step on a CPU (results: bench/results/bf16-cpu.md).

    python bench/precision_speed.py [--threads N] [--repeats N]

Why: bf16 pays on a CPU with AMX and costs an order of magnitude without it; this says which one a machine is.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffloss.loss import DiffLoss, DiffLossConfig  # noqa: E402
from diffloss.nets import load_restorer  # noqa: E402
from diffloss.paths import PRETRAINED  # noqa: E402
from diffloss.prior import DiffusionPrior  # noqa: E402
from diffloss.train import autocast_for  # noqa: E402

CASES = (("restorer, fidelity only, 96 px", 96, 0.0), ("DiffLoss (whole crop), 64 px", 64, 0.05))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=4)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    prior = DiffusionPrior.from_pretrained(PRETRAINED / "prior")
    net = load_restorer(PRETRAINED / "restorers" / "noise" / "l2").float().train()
    opt = torch.optim.AdamW(net.parameters(), 1e-4)
    print(f"cpu capability: {torch.backends.cpu.get_cpu_capability()}, {args.threads} thread(s)")
    for name, crop, gamma in CASES:
        loss = DiffLoss(prior, DiffLossConfig(gamma=gamma, track_when_off=False, report_grad_share=False))
        times = {}
        for precision in ("fp32", "bf16"):
            def step() -> None:
                x = torch.rand(8, 3, crop, crop)
                with autocast_for(torch.device("cpu"), precision):
                    terms = loss(net(x).float(), x, generator=torch.Generator().manual_seed(0))
                opt.zero_grad()
                terms.backward()
                opt.step()

            step()  # warm-up
            start = time.perf_counter()
            for _ in range(args.repeats):
                step()
            times[precision] = (time.perf_counter() - start) / args.repeats
        print(f"{name}: fp32 {times['fp32']:.3f} s, bf16 {times['bf16']:.3f} s, bf16/fp32 {times['bf16'] / times['fp32']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
