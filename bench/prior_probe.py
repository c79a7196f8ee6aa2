"""Prior probes: which way of training the diffusion prior buys the best denoiser per CPU-hour?

``python -m bench.prior_probe --clean ../shared/datasets/clean/train --runs /work/runs/prior-probes --minutes 12``
trains each probe (``PROBES``) for the same CPU budget through the project's own prior training
(``diffloss.train.train_prior``), and at every checkpoint measures the EMA weights' noise-prediction error on
crops of photos the probe does not train on (every 10th training photo, ``holdout_every``; never clean/val, which
the studio reports on). Each line of ``RUNS/curve.jsonl`` is one measurement: probe, step, training CPU seconds
(the process's CPU time minus the measurements', so another job on the machine does not bend the curve), and eps
MSE / one-step x0 PSNR per t. ``--report`` turns the curve into the markdown table of bench/results.

A probe's run folder is an ordinary training run: the long run continues the best one with
``python -m diffloss.train resume RUNS/NAME --time-limit MIN``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from diffloss import checkpoint, schedule
from diffloss.paths import RunFolder
from diffloss.prior import DiffusionPrior
from diffloss.prior_check import noise_prediction_error, validation_crops
from diffloss.data import holdout_split, load_clean_images
from diffloss.train import train_prior
from diffloss.train_config import LoopConfig, PriorTrainConfig

TIMESTEPS = (50, 100, 200, 400)
HOLDOUT_EVERY = 10

# Every probe continues the shipped prior (same architecture, so the loss's cost is unchanged: the Train tab's
# CPU default is at its 3x budget with this width) and differs from the control in one or two settings.
PROBES: dict[str, dict] = {
    "control": {},  # more steps of the recipe the shipped prior was trained with
    "band": {"t_min": 30, "t_max": 800},
    "band-aug": {"t_min": 30, "t_max": 800, "augment": True},
    "band-aug-minsnr": {"t_min": 30, "t_max": 800, "augment": True, "weighting": "min-snr"},
    # 32 px crops: four times the crops per CPU-second (the Train tab's CPU default reads the prior on 32 px)
    "band-aug-crop32": {"t_min": 30, "t_max": 800, "augment": True, "crop": 32},
}


def probe_config(name: str, clean: list[str], runs: Path, init: str, minutes: float, steps: int) -> PriorTrainConfig:
    loop = LoopConfig(out=str(runs / name), steps=steps, batch_size=16, lr=1e-4, warmup=50, ema_decay=0.999,
                      log_every=20, save_every=100, time_limit_min=minutes, threads=1,
                      command=f"python -m bench.prior_probe (probe {name})")
    return replace(PriorTrainConfig(clean=clean, crop=64, init=init, holdout_every=HOLDOUT_EVERY, loop=loop),
                   **PROBES[name])


def held_out_photos(cfg: PriorTrainConfig) -> list[torch.Tensor]:
    """The photos the probe's training leaves out (the same split ``PriorJob`` makes)."""
    photos = [img for folder in cfg.clean for img in load_clean_images(folder, max_side=cfg.max_side)]
    return holdout_split(photos, cfg.holdout_every)[1]


def ema_prior(run: Path, init: str) -> DiffusionPrior:
    """The EMA weights of a run's last checkpoint, as a prior (the weights an export would ship)."""
    prior = DiffusionPrior.from_pretrained(init)
    tensors = checkpoint.load_tensors(RunFolder(run).checkpoint)
    prior.unet.load_state_dict({k[4:]: v.float() for k, v in tensors.items() if k.startswith("ema.")})
    return prior


def measure(prior: DiffusionPrior, crops: torch.Tensor) -> dict[str, dict[int, float]]:
    eps = noise_prediction_error(prior, crops, TIMESTEPS)
    a = prior.alphas_cumprod
    return {"eps_mse": eps, "x0_psnr": {t: schedule.x0_psnr_from_eps_mse(v, float(a[t])) for t, v in eps.items()}}


def run_probe(cfg: PriorTrainConfig, name: str, crops: torch.Tensor, curve: Path) -> None:
    eval_cpu = 0.0
    start = time.process_time()

    def record(step: int, prior: DiffusionPrior) -> None:
        nonlocal eval_cpu
        tick = time.process_time()
        row = {"probe": name, "step": step, "train_cpu_s": round(tick - start - eval_cpu, 1),
               **measure(prior, crops), "settings": PROBES[name]}
        eval_cpu += time.process_time() - tick
        with curve.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps({k: row[k] for k in ("probe", "step", "train_cpu_s", "eps_mse")}), flush=True)

    run = Path(cfg.loop.out)
    if not RunFolder(run).checkpoint.is_file():
        record(0, DiffusionPrior.from_pretrained(cfg.init))
    for event in train_prior(cfg):
        if event.kind in ("checkpoint", "stopped", "done"):
            record(event.step, ema_prior(run, cfg.init))


def report(curve: Path) -> str:
    """Markdown: per probe, the measurement at the largest CPU time, with eps MSE relative to the start."""
    rows = [json.loads(line) for line in curve.read_text().splitlines() if line.strip()]
    start = {r["probe"]: r for r in rows if r["step"] == 0}
    lines = ["| probe | steps | train CPU min | " + " | ".join(f"eps MSE t={t}" for t in TIMESTEPS)
             + " | " + " | ".join(f"x0 PSNR t={t}" for t in TIMESTEPS) + " |",
             "|---" * (3 + 2 * len(TIMESTEPS)) + "|"]
    for name in dict.fromkeys(r["probe"] for r in rows):
        mine = [r for r in rows if r["probe"] == name]
        for r in (start.get(name), max(mine, key=lambda r: r["train_cpu_s"])):
            if r is None:
                continue
            eps = " | ".join(f"{r['eps_mse'][str(t)]:.4f}" for t in TIMESTEPS)
            psnr = " | ".join(f"{r['x0_psnr'][str(t)]:.2f}" for t in TIMESTEPS)
            lines.append(f"| {name} | {r['step']} | {r['train_cpu_s'] / 60:.1f} | {eps} | {psnr} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clean", nargs="+", default=[])
    p.add_argument("--runs", required=True, help="folder for the probes' run folders and curve.jsonl")
    p.add_argument("--init", default="pretrained/prior")
    p.add_argument("--minutes", type=float, default=12.0, help="wall-clock minutes per probe")
    p.add_argument("--steps", type=int, default=20000, help="the runs' nominal length (sets the cosine schedule)")
    p.add_argument("--only", nargs="+", default=list(PROBES))
    p.add_argument("--report", action="store_true", help="print the table of RUNS/curve.jsonl and stop")
    args = p.parse_args(argv)
    runs = Path(args.runs)
    curve = runs / "curve.jsonl"
    if args.report:
        print(report(curve))
        return
    torch.set_num_threads(1)
    runs.mkdir(parents=True, exist_ok=True)
    for name in args.only:
        cfg = probe_config(name, args.clean, runs, args.init, args.minutes, args.steps)
        held = held_out_photos(cfg)
        run_probe(cfg, name, validation_crops(held, 64, per_image=4, seed=0), curve)


if __name__ == "__main__":
    main()
