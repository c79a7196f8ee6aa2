"""What does computing DiffLoss on a sub-crop cost in quality? Three arms from one base, measured side by side.

    python bench/subcrop_quality.py --base runs/zoo/quick/noise/base/model \
        --calibration runs/zoo/quick/noise/calibration.json --datasets ../shared/datasets \
        [--task noise] [--crop 96] [--prior-crop 48] [--prior-samples 2] [--steps 300] [--t-weight sigma2] \
        [--out runs/subcrop] \
        [--json bench/results/subcrop-quality.json]

Why: ``DiffLossConfig.prior_crop`` and ``prior_samples`` make a DiffLoss step several times cheaper (at half the
side the prior sees a quarter of the pixels; on a quarter of the batch, a quarter of the images), but they also
give the prior less to see per step. The arms share everything but the loss: the same base weights, data, seed,
crop, steps and learning rate:
- ``l2``: fidelity only;
- ``diffloss``: fidelity + DiffLoss on the whole crop of every batch item;
- ``diffloss-sub``: the same on one random ``--prior-crop`` square of each batch;
- ``diffloss-sub-few``: that square of only ``--prior-samples`` random batch items (the cheapest setting).
Each is evaluated on synthetic degradations of ``clean/val`` (fixed seeds); the JSON holds means, per-image wins
against the L2 arm, and the training time per step. Runs resume (``diffloss.train``), so a stopped study continues.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.timing import write_json  # noqa: E402
from diffloss import train  # noqa: E402
from diffloss.evaluate import EvalSource, evaluate, wins as evaluate_wins  # noqa: E402
from diffloss.loss import DiffLossConfig  # noqa: E402

ARMS = ("l2", "diffloss", "diffloss-sub", "diffloss-sub-few")


def arm_config(arm: str, args: argparse.Namespace, calibration: dict) -> train.RestorerTrainConfig:
    """One arm's training run: only ``diffloss``, ``prior_crop`` and ``prior_samples`` differ between arms."""
    loss = DiffLossConfig(gamma=calibration["gamma"], lam=calibration["lam"], track_when_off=False,
                          t_weight=args.t_weight,
                          prior_crop=args.prior_crop if arm.startswith("diffloss-sub") else None,
                          prior_samples=args.prior_samples if arm == "diffloss-sub-few" else None)
    out = Path(args.out) / arm
    loop = train.LoopConfig(out=str(out), steps=args.steps, batch_size=args.batch, lr=args.lr,
                            warmup=min(200, args.steps // 10 + 1), seed=args.seed, log_every=25,
                            save_every=max(50, args.steps // 10), device="auto",
                            command="python " + " ".join(sys.argv))
    return train.RestorerTrainConfig(task=args.task, clean=[str(Path(args.datasets) / "clean" / "train")],
                                     crop=args.crop, init=args.base, prior=args.prior, diffloss=arm != "l2",
                                     loss=loss, loop=loop)


def seconds_per_step(run_dir: Path) -> float | None:
    """Training wall time over steps, from the finished model's card."""
    card_path = run_dir / "model" / "card.json"
    if not card_path.is_file():
        return None
    card = json.loads(card_path.read_text())
    return float(card["wall_time_s"]) / max(1, int(card["steps"]))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="the L2 base restorer folder all arms start from")
    p.add_argument("--calibration", required=True, help="calibration.json with gamma and lam (diffloss.zoo)")
    p.add_argument("--datasets", required=True)
    p.add_argument("--prior", default=str(REPO / "pretrained" / "prior"))
    p.add_argument("--task", default="noise")
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--prior-crop", type=int, default=48)
    p.add_argument("--prior-samples", type=int, default=2)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--seed", type=int, default=1, help="the arms' shared seed (batches, t, eps)")
    p.add_argument("--t-weight", default="uniform", help="the weight of each t (DiffLossConfig.t_weight; the "
                   "family's prior arms: sigma2)")
    p.add_argument("--val-images", type=int, default=24)
    p.add_argument("--out", default="runs/subcrop")
    p.add_argument("--json", default=str(REPO / "bench" / "results" / "subcrop-quality.json"))
    args = p.parse_args(argv)
    calibration = json.loads(Path(args.calibration).read_text())

    for arm in ARMS:
        started = time.perf_counter()
        for event in train.train_restorer(arm_config(arm, args, calibration)):
            if event.kind in ("checkpoint", "stopped", "done"):
                print(f"[{arm}] {event.kind} at step {event.step}/{event.total_steps} {event.message}".rstrip(),
                      flush=True)
        print(f"[{arm}] {time.perf_counter() - started:.0f} s", flush=True)

    source = EvalSource("synthetic", Path(args.datasets) / "clean" / "val", task=args.task, limit=args.val_images)
    report = evaluate({arm: Path(args.out) / arm / "model" for arm in ARMS}, source, lpips=False, reference="l2")
    l2_images = report.row("l2").images
    arms = {}
    for arm in ARMS:
        row = report.row(arm)
        wins = {key: evaluate_wins(report, key, arm, "l2")[0] for key in ("psnr", "ssim", "niqe")}
        arms[arm] = {"means": row.means(), "wins_vs_l2": wins, "train_s_per_step": seconds_per_step(Path(args.out) / arm)}
    result = {
        "task": args.task, "crop": args.crop, "prior_crop": args.prior_crop, "prior_samples": args.prior_samples,
        "steps": args.steps, "t_weight": args.t_weight, "seed": args.seed,
        "batch": args.batch, "lr": args.lr, "calibration": {k: calibration[k] for k in ("gamma", "lam")},
        "base": args.base, "prior": args.prior, "validation": source.describe(), "images": len(l2_images),
        "input_means": report.rows[0].means(), "arms": arms,
        "command": "python bench/subcrop_quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    print(f"{'arm':<18}{'PSNR':>8}{'SSIM':>8}{'NIQE':>8}{'vs L2':>8}  wins vs L2 (psnr/ssim/niqe)  s/step")
    for arm, r in arms.items():
        m, w = r["means"], r["wins_vs_l2"]
        columns = (("psnr", 2), ("ssim", 4), ("niqe", 2), ("psnr_vs_reference", 1))
        cells = "".join(f"{'n/a' if m.get(k) is None else f'{m[k]:.{d}f}':>8}" for k, d in columns)
        print(f"{arm:<18}{cells}  {w['psnr']}/{w['ssim']}/{w['niqe']} of {len(l2_images)}   "
              f"{r['train_s_per_step'] or float('nan'):.2f}")
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
