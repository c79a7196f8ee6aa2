"""Choose gamma and lambda from measured gradients instead of guessing.

A DiffLoss weight only means something relative to the gradient scale of the prior it multiplies: the released
weights (1e-3, 1e-6) gave the prior ~0.06 % of the loss with our small prior and changed nothing. Calibration
measures, on validation images restored by a restorer, the norm of each unweighted term's gradient on the
restored image, then solves for the weights that give L_nat and L_sem the requested shares of the gradient
(the arithmetic is ``diffloss.loss.weights_for_shares``).

    python -m diffloss.calibrate --prior pretrained/prior --restorer runs/noise-l2/model \
        --clean ../shared/datasets/clean/val --task noise --nat-share 0.2 --sem-share 0.1
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from diffloss import degrade
from diffloss.images import centre_crop, list_images, load_image
from diffloss.loss import DiffLoss, DiffLossConfig, weights_for_shares
from diffloss.nets import Restorer, load_restorer
from diffloss.prior import DiffusionPrior


@dataclass(frozen=True)
class Calibration:
    """Unit-weight gradient norms (means over images) and the weights that give the target shares."""

    norms: dict[str, float]
    nat_share: float
    sem_share: float
    gamma: float
    lam: float
    images: int
    t_range: tuple[int, int]


def measure_norms(prior: DiffusionPrior, restorer: Restorer, task: str, images: list[torch.Tensor],
                  crop: int = 128, seed: int = 0, config: DiffLossConfig | None = None) -> dict[str, float]:
    """Mean gradient norm of fidelity, L_nat and L_sem (each at weight 1) on restored centre crops.

    The dose of ``config`` (t band, weight of each t, gradient form, per-sample normalisation) is kept: it is what
    the weights will multiply. Its cap is not: a cap acts on the weighted sum, after calibration.
    """
    spec = degrade.get_task(task)
    cfg = config or DiffLossConfig()
    loss = DiffLoss(prior, replace(cfg, gamma=1.0, lam=1.0, grad_cap=None, detach_prior=False, prior_crop=None,
                                   prior_samples=None, report_grad_share=True, track_when_off=True))
    sums = {"fidelity": 0.0, "nat": 0.0, "sem": 0.0}
    for i, img in enumerate(images):
        clean = degrade.crop_to_multiple(centre_crop(img, crop), spec.size_multiple)
        pair = degrade.make_pair(task, clean, seed + i)
        with torch.no_grad():
            restored = restorer(pair.net_input.to(prior.device)).clamp(0, 1)
        restored.requires_grad_(True)
        terms = loss(restored, clean[None].to(prior.device), torch.Generator().manual_seed(seed + i))
        for name, value in terms.grad_norms.items():
            sums[name] += value
    return {k: v / len(images) for k, v in sums.items()}


def calibrate(prior: DiffusionPrior, restorer: Restorer, task: str, images: list[torch.Tensor],
              nat_share: float = 0.2, sem_share: float = 0.1, crop: int = 128, seed: int = 0,
              config: DiffLossConfig | None = None) -> Calibration:
    if config is not None and config.gradient == "sds" and sem_share > 0:
        raise ValueError("the Jacobian-free gradient sends nothing through L_sem: give it no share (sem share 0)")
    norms = measure_norms(prior, restorer, task, images, crop, seed, config)
    gamma, lam = weights_for_shares(norms, nat_share, sem_share)
    lo_hi = DiffLoss(prior, config or DiffLossConfig()).t_range
    return Calibration(norms, nat_share, sem_share, gamma, lam, len(images), lo_hi)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffloss.calibrate", description=__doc__.split("\n\n")[0])
    p.add_argument("--prior", required=True)
    p.add_argument("--restorer", required=True, help="a restorer folder (typically the L2 base)")
    p.add_argument("--clean", required=True, help="validation photos (never the training folder)")
    p.add_argument("--task", required=True)
    p.add_argument("--nat-share", type=float, default=0.2)
    p.add_argument("--sem-share", type=float, default=0.1)
    p.add_argument("--limit", type=int, default=16)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--band", choices=["prior", "all"], default="prior",
                   help="where t is drawn: the prior's stored band (the whole schedule without one) or all of it")
    p.add_argument("--t-min", type=int, default=None, help="first timestep (default: the band's)")
    p.add_argument("--t-max", type=int, default=None, help="last timestep (default: the band's)")
    p.add_argument("--t-weight", choices=["uniform", "sigma2", "x0"], default="uniform")
    p.add_argument("--gradient", choices=["full", "sds"], default="full")
    p.add_argument("--per-sample-norm", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the result as JSON here")
    args = p.parse_args(argv)
    prior = DiffusionPrior.from_pretrained(args.prior)
    restorer = load_restorer(args.restorer)
    images = [load_image(path) for path in list_images(args.clean)[: args.limit]]
    cfg = DiffLossConfig(band=args.band, t_min=args.t_min, t_max=args.t_max, t_weight=args.t_weight,
                         gradient=args.gradient, per_sample_norm=args.per_sample_norm)
    result = calibrate(prior, restorer, args.task, images, args.nat_share, args.sem_share, args.crop, args.seed, cfg)
    text = json.dumps({**asdict(result), "prior": args.prior, "restorer": args.restorer, "clean": args.clean,
                       "task": args.task}, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
