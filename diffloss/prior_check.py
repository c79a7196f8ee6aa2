"""Is the prior any good? Held-out noise-prediction error and a sample sheet a person can look at.

A prior that has learnt nothing still gives DiffLoss a gradient, but a meaningless one; these two checks go into
every shipped prior's card so a user can judge it: the epsilon-prediction MSE on crops of validation photos at a
few timesteps (1.0 would be "predicts zero"), and a picture of unconditional samples and one-step x0 estimates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from diffloss import schedule, viz
from diffloss.data import random_crop_flip
from diffloss.prior import DiffusionPrior


# The timesteps a prior's card quotes its held-out error at: the band a DiffLoss dose uses (issue #26 asks for
# 50/100/200/400) and 500, which earlier cards quoted.
CARD_TIMESTEPS = (50, 100, 200, 400, 500)


def validation_crops(images: Sequence[torch.Tensor], crop: int, per_image: int = 4, seed: int = 0) -> torch.Tensor:
    """Fixed random crops (no flips) of validation photos: the same crops every time the check runs."""
    g = torch.Generator().manual_seed(seed)
    crops = [random_crop_flip(img, crop, g, flip=False) for img in images for _ in range(per_image)]
    return torch.stack(crops)


BAND_CROP, BAND_CROPS_PER_PHOTO = 64, 4  # the crops the band is read on


def held_out_crops(clean_train: Path, every: int) -> tuple[torch.Tensor, str]:
    """The crops a prior's band is measured on (every ``every``-th training photo, held out of its run by
    ``holdout_every``) and what to call them on a card: one choice, shared by install-prior and bench/prior_run."""
    from diffloss.data import holdout_split, load_clean_images

    held = holdout_split(load_clean_images(clean_train), every)[1]
    crops = validation_crops(held, crop=BAND_CROP, per_image=BAND_CROPS_PER_PHOTO)
    return crops, (f"clean/train, every {every}th photo (held out of the prior's training): {len(crops)} crops of "
                   f"{BAND_CROP} px")


def on_schedule(prior: DiffusionPrior, timesteps: Sequence[int]) -> list[int]:
    """Timesteps quoted for a 1000-step schedule, mapped onto this prior's schedule length."""
    return [min(prior.num_timesteps - 1, round(t * prior.num_timesteps / 1000)) for t in timesteps]


@torch.no_grad()
def noise_prediction_error(prior: DiffusionPrior, crops: torch.Tensor, timesteps: Sequence[int] = (50, 200, 500),
                           seed: int = 0, batch_size: int = 32, on_1000_steps: bool = True) -> dict[int, float]:
    """Mean squared error of eps_hat against the true eps at each t (lower is better; ~1.0 means untrained).

    ``on_1000_steps``: the timesteps are quoted for a 1000-step schedule and mapped onto the prior's; False: they
    are the prior's own."""
    out: dict[int, float] = {}
    for t in (on_schedule(prior, timesteps) if on_1000_steps else timesteps):
        g = torch.Generator().manual_seed(seed + int(t))
        total, count = 0.0, 0
        for start in range(0, len(crops), batch_size):
            x = crops[start:start + batch_size].to(prior.device)
            eps = torch.randn(x.shape, generator=g).to(x.device)
            pred = prior.predict(prior.add_noise(x, int(t), eps), int(t)).eps
            total += float((pred.float() - eps).pow(2).mean()) * len(x)
            count += len(x)
        out[int(t)] = total / count
    return out


def band_curve(prior: DiffusionPrior, crops: torch.Tensor, timesteps: Sequence[int], seed: int = 0,
               batch_size: int = 32) -> dict[int, dict[str, float]]:
    """The curve a prior's band is read from (``diffloss.prior_band``): held-out eps MSE at each of the prior's own
    timesteps and the PSNR of the one-step x0 estimate it implies (before clamping; the probes quote the same
    number: ``schedule.x0_psnr_from_eps_mse``)."""
    eps = noise_prediction_error(prior, crops, timesteps, seed=seed, batch_size=batch_size, on_1000_steps=False)
    a = prior.alphas_cumprod
    return {t: {"eps_mse": v, "x0_psnr": schedule.x0_psnr_from_eps_mse(v, float(a[t]))} for t, v in eps.items()}


@torch.no_grad()
def sample_sheet(prior: DiffusionPrior, crops: torch.Tensor, timesteps: Sequence[int] = (100, 300, 600),
                 n_samples: int = 8, sample_steps: int = 50, seed: int = 0) -> np.ndarray:
    """Row 1: unconditional samples. Then, per validation crop: the clean crop and, for each t, the noised crop
    and the prior's one-step x0 estimate from it."""
    g = torch.Generator().manual_seed(seed)
    size = crops.shape[-1]
    samples = prior.sample(n_samples, size, size, sample_steps, generator=g).cpu()
    images, labels = [viz.to_image(s) for s in samples], [f"sample {i + 1}" for i in range(n_samples)]
    columns = 1 + 2 * len(timesteps)
    images += [np.full_like(images[0], 255)] * (columns - n_samples % columns if n_samples % columns else 0)
    labels += [""] * (len(images) - len(labels))
    for crop in crops:
        images.append(viz.to_image(crop))
        labels.append("clean")
        for t in on_schedule(prior, timesteps):
            eps = torch.randn((1, *crop.shape), generator=g)
            view = prior.view(crop[None].to(prior.device), int(t), eps.to(prior.device))
            images += [viz.to_image(view.x_t[0].cpu()), viz.to_image(view.x0_hat[0].cpu())]
            labels += [f"x_t, t={t}", f"x0 estimate, t={t}"]
    return viz.grid(images, labels, columns=columns)
