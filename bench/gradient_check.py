"""Does DiffLoss reach the restorer? Gradient norms on a restorer's parameters, term by term.

    python bench/gradient_check.py [--prior pretrained/prior] [--image PATH] [--task noise]

For L_nat alone and L_sem alone, with the gradient path intact and with ``detach_prior`` (the released code's
``torch.no_grad()``), prints the norm of d(term)/d(restorer parameters), plus each term's share of the gradient
on the restored image at the given weights. Without ``--prior`` a randomly initialised "small" prior is used:
gradient *flow* does not depend on the prior being trained, only its direction does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import write_json  # noqa: E402
from diffloss import degrade  # noqa: E402
from diffloss.images import load_image  # noqa: E402
from diffloss.loss import DiffLoss, DiffLossConfig  # noqa: E402
from diffloss.nets import Restorer, RestorerConfig  # noqa: E402
from diffloss.prior import PRIOR_PRESETS, DiffusionPrior  # noqa: E402


def param_grad_norm(model: torch.nn.Module) -> float:
    return float(sum(p.grad.float().norm() ** 2 for p in model.parameters() if p.grad is not None) ** 0.5)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prior", default=None, help="prior folder or hub id (default: random 'small' prior)")
    p.add_argument("--image", default=None, help="a clean photo (default: a smooth random image)")
    p.add_argument("--task", default="noise")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--gamma", type=float, default=DiffLossConfig().gamma)
    p.add_argument("--lam", type=float, default=DiffLossConfig().lam)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the numbers here")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    prior = DiffusionPrior.from_pretrained(args.prior) if args.prior else PRIOR_PRESETS["small"].build()
    if args.image:
        clean = load_image(args.image)[None]
        clean = clean[..., : args.size, : args.size]
    else:
        clean = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8), size=(args.size, args.size), mode="bicubic").clamp(0, 1)
    task = degrade.get_task(args.task)
    clean = degrade.crop_to_multiple(clean, task.size_multiple)
    pair = degrade.make_pair(args.task, clean, args.seed)
    net = Restorer(RestorerConfig(task=args.task, in_channels=task.in_channels))
    # One optimiser step on fidelity so the zero-initialised output layer passes gradients everywhere.
    opt = torch.optim.SGD(net.parameters(), lr=1e-2)
    torch.nn.functional.mse_loss(net(pair.net_input), clean).backward()
    opt.step()

    rows = {}
    for detach in (False, True):
        for term in ("nat", "sem"):
            net.zero_grad()
            cfg = DiffLossConfig(gamma=args.gamma, lam=args.lam, detach_prior=detach, report_grad_share=False)
            terms = DiffLoss(prior, cfg)(net(pair.net_input), clean, torch.Generator().manual_seed(args.seed))
            value = getattr(terms, term)
            if value.requires_grad:
                value.backward()
            rows[f"{term}{' (detach_prior)' if detach else ''}"] = {"value": float(value.detach()), "grad_norm": param_grad_norm(net)}
    terms = DiffLoss(prior, DiffLossConfig(gamma=args.gamma, lam=args.lam))(net(pair.net_input), clean, torch.Generator().manual_seed(args.seed))
    result = {"prior": args.prior or "random small prior", "task": args.task, "gamma": args.gamma, "lam": args.lam,
              "terms": rows, "grad_share": terms.grad_share}
    print(f"prior: {result['prior']}  task: {args.task}  image: {tuple(clean.shape[-2:])}")
    print(f"{'term':<22}{'value':>12}{'|grad| on restorer params':>30}")
    for name, row in rows.items():
        print(f"{name:<22}{row['value']:>12.5g}{row['grad_norm']:>30.5g}")
    shares = ", ".join(f"{k} {v:.1%}" for k, v in terms.grad_share.items())
    print(f"gradient share on the restored image at gamma={args.gamma}, lambda={args.lam}: {shares}")
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
