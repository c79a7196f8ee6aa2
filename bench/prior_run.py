"""The long prior run's state, kept between sessions: export its EMA weights, measure them beside the shipped prior.

``python -m bench.prior_run --run /work/runs/prior-long --to bench/results/prior-run --history "..."``

- exports the run's last checkpoint (EMA weights) in float16 into ``--to`` with the run's card (the next session
  goes on with ``python -m diffloss.train prior --init bench/results/prior-run ...``);
- measures the card's numbers (``diffloss.prior_check``: eps MSE at ``CARD_TIMESTEPS`` on 74 crops of clean/val,
  the shipped card's measure) for it and for the shipped prior, and the ratio the issue's goal is stated in;
- measures the band curve (``diffloss.prior_band``) of both on the training photos the run held out, writes the new
  prior's band beside its weights and draws ``curve.png``.

Nothing here installs anything in pretrained/: ``diffloss.zoo.install_prior`` does, with the family rebuilt.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch
from PIL import Image

from diffloss import checkpoint, prior_band, prior_check, viz
from diffloss.data import load_clean_images
from diffloss.paths import PRETRAINED, datasets_folder
from diffloss.prior import DiffusionPrior
from diffloss.run_folder import export_checkpoint

GOAL = "at most 0.8x the shipped prior's at t = 100, 200, 400"


def measure(prior: DiffusionPrior, val_crops: torch.Tensor, held_crops: torch.Tensor, curve_step: int) -> dict:
    curve_ts = prior_band.curve_timesteps(prior.num_timesteps, curve_step)
    return {"val": prior_check.noise_prediction_error(prior, val_crops, prior_check.CARD_TIMESTEPS),
            "holdout": prior_check.noise_prediction_error(prior, held_crops, prior_check.CARD_TIMESTEPS),
            "curve": prior_check.band_curve(prior, held_crops, curve_ts)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="the prior's run folder")
    p.add_argument("--to", required=True, help="where the exported prior goes (replaced)")
    p.add_argument("--shipped", default=str(PRETRAINED / "prior"))
    p.add_argument("--datasets", default=str(datasets_folder()))
    p.add_argument("--history", default="", help="how the run came to be, for the card")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--curve-step", type=int, default=prior_band.CURVE_STEP, help="the band curve's spacing in t")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    dest = Path(args.to)
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_checkpoint(args.run, Path(tmp) / "prior")
        card = json.loads((exported / checkpoint.CARD_FILE).read_text())
        DiffusionPrior.from_pretrained(exported).save_pretrained(exported, dtype=torch.float16)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(exported, dest)
    new, shipped = DiffusionPrior.from_pretrained(dest), DiffusionPrior.from_pretrained(args.shipped)
    root = Path(args.datasets)
    val_crops = prior_check.validation_crops(load_clean_images(root / "clean" / "val"), crop=64, per_image=2)
    held_crops, data = prior_check.held_out_crops(root / "clean" / "train", int(card["config"]["holdout_every"]))
    ours, theirs = (measure(prior, val_crops, held_crops, args.curve_step) for prior in (new, shipped))
    band = prior_band.band_or_reason(ours["curve"])
    if isinstance(band, prior_band.Band):
        prior_band.write_band(dest, band, ours["curve"], data)
    Image.fromarray(viz.prior_curve_figure({"shipped prior": theirs["curve"], "this run": ours["curve"]},
                                           _ends(band))).save(dest / "curve.png")
    card["evaluation"] = {
        "data": f"clean/val ({len(val_crops)} crops of 64 px, the shipped card's measure) and {data}",
        "eps_mse": {"val": ours["val"], "holdout": ours["holdout"]},
        "shipped_prior_eps_mse": {"val": theirs["val"], "holdout": theirs["holdout"]},
        "ratio_val": {t: ours["val"][t] / theirs["val"][t] for t in ours["val"]},
        "goal": GOAL}
    card["band"] = {"this_run": _recorded(band), "rule": prior_band.RULE, "data": data,
                    "shipped_prior_would_get": _recorded(prior_band.band_or_reason(theirs["curve"]))}
    card.update(storage="float16", history=args.history or card.get("history", ""),
                what="NOT a shipped prior: the long run of issue #26 as far as it has gone, kept so the next session "
                     "can go on from it (python -m diffloss.train prior --init bench/results/prior-run ...; the "
                     "optimiser's state is not kept). It goes into pretrained/prior only together with a family "
                     "rebuilt through it (python -m diffloss.zoo install-prior).")
    checkpoint.atomic_write_json(dest / checkpoint.CARD_FILE, card)
    print(json.dumps({"step": card["steps"], "ratio_val": card["evaluation"]["ratio_val"],
                      "val": ours["val"], "band": _recorded(band)}, indent=1))


def _ends(band: "prior_band.Band | str") -> list[int] | None:
    """[t_min, t_max] of a band, None for the reason there is none."""
    return [band.t_min, band.t_max] if isinstance(band, prior_band.Band) else None


def _recorded(band: "prior_band.Band | str") -> list[int] | str:
    """What the card records: [t_min, t_max], or the reason there is no band."""
    return _ends(band) or str(band)


if __name__ == "__main__":
    main()
