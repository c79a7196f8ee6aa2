"""NIQE, the no-reference "naturalness" score of Mittal, Soundararajan & Bovik 2013, with our own pristine model.

Why our own: no installable package ships NIQE's pristine model offline beside numpy 2 and without torchvision,
so we fit it ourselves on the clean training photos (``python -m diffloss.niqe fit``). Scores are therefore
comparable with each other, not with numbers printed in papers (those use the authors' MATLAB model).

The method, in the paper's terms:
1. grey image = BT.601 Y in [0,255]; MSCN coefficients ``(I - mu) / (sigma + 1)`` with a 7x7 Gaussian window,
   sigma 7/6, replicate padding;
2. non-overlapping 96x96 patches, at two scales (the second a bicubic x0.5 of the first, 48x48 patches);
3. per patch and scale, 18 features: the GGD fit of the MSCN values (shape, variance) and, for each of the four
   neighbour products (horizontal, vertical, two diagonals), the AGGD fit (shape, mean, left variance, right
   variance) -> 36 features per patch;
4. pristine model = mean and covariance of the features of the *sharp* patches of clean photos (patch sharpness =
   mean local sigma, kept when above 0.75 of the sharpest patch of its image);
5. score of an image = ``sqrt((mu1-mu2)^T pinv((S1+S2)/2) (mu1-mu2))`` between the pristine model and the mean and
   covariance of all the image's patches. Lower is more natural.

Differences from the authors' MATLAB release, chosen on purpose: features are variances as in the paper (the
release stores AGGD scale parameters), and neighbour products use true neighbours inside each patch instead of a
circular shift that wraps around the patch edge.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from diffloss.checkpoint import atomic_write, atomic_write_json
from diffloss.images import as_hwc, list_images, load_image, rgb_to_y
from diffloss.paths import PRETRAINED

PATCH_SIZE = 96
SHARPNESS_FRACTION = 0.75
N_FEATURES = 36
MODEL_FILE = "niqe_pristine.npz"
CARD_FILE = "card.json"
DEFAULT_MODEL_DIR = PRETRAINED / "niqe"


class NIQEUndefined(ValueError):
    """NIQE has no value for this image: too small for two patches per side, or without texture to measure."""


@dataclass
class NIQEModel:
    """Multivariate Gaussian of the 36 NIQE features over pristine patches."""

    mu: np.ndarray  # (36,)
    cov: np.ndarray  # (36, 36)
    patch_size: int = PATCH_SIZE
    notes: str = ""
    sharpness_fraction: float = SHARPNESS_FRACTION
    n_patches: int = 0
    n_images: int = 0

    def save(self, folder: str | Path, card: dict | None = None) -> Path:
        """Write ``niqe_pristine.npz`` (and ``card.json`` when given) atomically; returns the npz path."""
        path = Path(folder) / MODEL_FILE

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:  # a handle, so numpy does not append ".npz" to the temp name
                np.savez(
                    handle,
                    mu=np.asarray(self.mu, np.float64),
                    cov=np.asarray(self.cov, np.float64),
                    patch_size=np.int64(self.patch_size),
                    notes=np.str_(self.notes),
                    sharpness_fraction=np.float64(self.sharpness_fraction),
                    n_patches=np.int64(self.n_patches),
                    n_images=np.int64(self.n_images),
                )

        atomic_write(path, write)
        if card is not None:
            atomic_write_json(Path(folder) / CARD_FILE, card)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "NIQEModel":
        """Read a model written by :meth:`save`; the error says how to rebuild it when the file is missing."""
        path = Path(folder) / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"NIQE pristine model not found at {path}; rebuild it with "
                f"`python -m diffloss.niqe fit --clean <folder of clean photos> --out {Path(folder)}`"
            )
        with np.load(path, allow_pickle=False) as data:
            mu, cov = data["mu"], data["cov"]
            if mu.shape != (N_FEATURES,) or cov.shape != (N_FEATURES, N_FEATURES):
                raise ValueError(f"{path} holds mu {mu.shape} / cov {cov.shape}, expected (36,) / (36, 36)")
            return cls(
                mu=mu,
                cov=cov,
                patch_size=int(data["patch_size"]),
                notes=str(data["notes"]),
                sharpness_fraction=float(data["sharpness_fraction"]),
                n_patches=int(data["n_patches"]),
                n_images=int(data["n_images"]),
            )


# ---------------------------------------------------------------- features


def _gaussian_window(size: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    w = np.outer(g, g)
    return w / w.sum()


_WINDOW = _gaussian_window()
_SHAPES = np.arange(0.2, 10.0, 0.001)


@functools.cache
def _rho() -> np.ndarray:
    """rho(a) = Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) on ``_SHAPES``: it grows monotonically with the shape a, so
    a moment ratio is inverted by a sorted look-up on this grid (the nearest grid value, as in the reference
    moment matching). Computed on first use: importing scipy would slow the app's start-up, and NIQE is not
    needed until a first Compare."""
    from scipy.special import gamma

    return gamma(2 / _SHAPES) ** 2 / (gamma(1 / _SHAPES) * gamma(3 / _SHAPES))


def grey255(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """BT.601 Y of an RGB image in [0,1], scaled to [0,255] (the range NIQE's ``+1`` stabiliser assumes)."""
    return rgb_to_y(as_hwc(img)) * 255.0


def mscn(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean-subtracted contrast-normalised coefficients and the local deviation ``sigma`` (patch sharpness)."""
    from scipy.ndimage import correlate  # on first use, like _rho

    mu = correlate(grey, _WINDOW, mode="nearest")
    sigma = np.sqrt(np.abs(correlate(grey * grey, _WINDOW, mode="nearest") - mu * mu))
    return (grey - mu) / (sigma + 1.0), sigma


def _shape_from_ratio(ratio: np.ndarray) -> np.ndarray:
    """Grid shape whose rho is nearest to ``ratio`` (NaN stays NaN)."""
    rho = _rho()
    idx = np.clip(np.searchsorted(rho, ratio), 1, len(rho) - 1)
    left_closer = np.abs(ratio - rho[idx - 1]) <= np.abs(rho[idx] - ratio)
    shape = _SHAPES[np.where(left_closer, idx - 1, idx)]
    return np.where(np.isfinite(ratio), shape, np.nan)


def ggd_features(x: np.ndarray) -> np.ndarray:
    """(shape, variance) of a zero-mean generalised Gaussian, fitted by moments to each row of ``x``: (P, 2)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.mean(x * x, axis=1)
        ratio = np.mean(np.abs(x), axis=1) ** 2 / var
    return np.stack([_shape_from_ratio(ratio), var], axis=1)


def aggd_features(x: np.ndarray) -> np.ndarray:
    """(shape, mean, left variance, right variance) of an asymmetric GGD per row of ``x`` (Lasmar et al.): (P, 4)."""
    from scipy.special import gamma

    neg, pos = x < 0, x > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        var_l = np.sum(np.where(neg, x * x, 0.0), axis=1) / np.sum(neg, axis=1)
        var_r = np.sum(np.where(pos, x * x, 0.0), axis=1) / np.sum(pos, axis=1)
        g = np.sqrt(var_l / var_r)
        r_hat = np.mean(np.abs(x), axis=1) ** 2 / np.mean(x * x, axis=1)
        ratio = r_hat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
        shape = _shape_from_ratio(ratio)
        scale = np.sqrt(gamma(1 / shape) / gamma(3 / shape))
        mean = (np.sqrt(var_r) - np.sqrt(var_l)) * scale * gamma(2 / shape) / gamma(1 / shape)
    return np.stack([shape, mean, var_l, var_r], axis=1)


def _patches(a: np.ndarray, p: int) -> np.ndarray:
    """Non-overlapping ``p x p`` patches of an array whose sides are multiples of ``p``: (P, p, p), row-major."""
    h, w = a.shape
    return a.reshape(h // p, p, w // p, p).swapaxes(1, 2).reshape(-1, p, p)


def scale_features(coeffs: np.ndarray, p: int) -> np.ndarray:
    """The 18 features of every ``p x p`` patch of an MSCN map: (P, 18)."""
    b = _patches(coeffs, p)
    n = len(b)
    pairs = (
        b[:, :, :-1] * b[:, :, 1:],  # horizontal neighbour
        b[:, :-1, :] * b[:, 1:, :],  # vertical
        b[:, :-1, :-1] * b[:, 1:, 1:],  # main diagonal
        b[:, 1:, :-1] * b[:, :-1, 1:],  # anti-diagonal
    )
    feats = [ggd_features(b.reshape(n, -1))] + [aggd_features(q.reshape(n, -1)) for q in pairs]
    return np.concatenate(feats, axis=1)


def _half(grey: np.ndarray) -> np.ndarray:
    """Bicubic x0.5 with antialiasing (PIL's kernel, a=-0.5, as MATLAB's imresize uses)."""
    h, w = grey.shape
    im = Image.fromarray(grey.astype(np.float32))
    return np.asarray(im.resize((w // 2, h // 2), Image.Resampling.BICUBIC), dtype=np.float64)


def min_side(patch_size: int = PATCH_SIZE) -> int:
    """Smallest image side NIQE accepts: two patches, so that an image has a covariance at all."""
    return 2 * patch_size


def image_features(img: torch.Tensor | np.ndarray, patch_size: int = PATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``(features (P, 36), sharpness (P,))`` of every patch of an RGB image in [0,1], cropped to whole patches."""
    if patch_size % 2:
        raise ValueError(f"patch_size must be even (the second scale halves it), got {patch_size}")
    grey = grey255(img)
    h, w = grey.shape
    if min(h, w) < min_side(patch_size):
        raise NIQEUndefined(
            f"NIQE needs images of at least {min_side(patch_size)}x{min_side(patch_size)} pixels "
            f"(two {patch_size}px patches per side), got {h}x{w}"
        )
    grey = grey[: h - h % patch_size, : w - w % patch_size]
    coeffs, sigma = mscn(grey)
    sharpness = _patches(sigma, patch_size).mean(axis=(1, 2))
    small, _ = mscn(_half(grey))
    feats = np.concatenate([scale_features(coeffs, patch_size), scale_features(small, patch_size // 2)], axis=1)
    return feats, sharpness


# ---------------------------------------------------------------- model and score


def fit_pristine_model(
    images: Sequence[torch.Tensor | np.ndarray],
    patch_size: int = PATCH_SIZE,
    sharpness_fraction: float = SHARPNESS_FRACTION,
    notes: str = "",
) -> NIQEModel:
    """Fit the pristine Gaussian on the sharp patches of clean images (each image thresholds its own patches)."""
    kept = []
    for img in images:
        feats, sharp = image_features(img, patch_size)
        sel = feats[sharp > sharpness_fraction * sharp.max()] if sharp.max() > 0 else feats[:0]
        kept.append(sel[np.all(np.isfinite(sel), axis=1)])
    feats = np.concatenate(kept, axis=0) if kept else np.zeros((0, N_FEATURES))
    if len(feats) < 2:
        raise ValueError(f"need at least 2 sharp, textured patches to fit NIQE, got {len(feats)} from {len(images)} images")
    return NIQEModel(
        mu=feats.mean(axis=0),
        cov=np.cov(feats, rowvar=False),
        patch_size=patch_size,
        notes=notes,
        sharpness_fraction=sharpness_fraction,
        n_patches=len(feats),
        n_images=len(images),
    )


@functools.lru_cache(maxsize=4)
def _cached_model(folder: str) -> NIQEModel:
    return NIQEModel.load(folder)


def default_model() -> NIQEModel:
    """The shipped pristine model (``pretrained/niqe``), read once per process."""
    return _cached_model(str(DEFAULT_MODEL_DIR))


def niqe(img: torch.Tensor | np.ndarray, model: NIQEModel | None = None) -> float:
    """NIQE of one RGB image in [0,1] (lower is more natural).

    Raises :class:`NIQEUndefined` (a ValueError) for images under two patches per side (192 px with the default
    model) and for images with fewer than two textured patches (e.g. a flat colour): a distance between
    distributions needs a covariance, and a number made up for those cases would be misread as a quality.
    """
    model = default_model() if model is None else model
    feats, _ = image_features(img, model.patch_size)
    feats = feats[np.all(np.isfinite(feats), axis=1)]
    if len(feats) < 2:
        raise NIQEUndefined("NIQE is undefined for an image with fewer than two textured patches (flat image?)")
    diff = model.mu - feats.mean(axis=0)
    cov = (model.cov + np.cov(feats, rowvar=False)) / 2
    return float(math.sqrt(max(float(diff @ np.linalg.pinv(cov) @ diff), 0.0)))


# ---------------------------------------------------------------- sanity check and CLI


def _noisy(img: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (img + sigma * torch.randn(img.shape, generator=gen)).clamp(0, 1)


def _bicubic_round_trip(img: torch.Tensor, factor: int) -> torch.Tensor:
    """Downscale then upscale back (bicubic): the blur a x``factor`` super-resolution input carries."""
    h, w = img.shape[-2:]
    small = torch.nn.functional.interpolate(img[None], size=(h // factor, w // factor), mode="bicubic", antialias=True)
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bicubic").clamp(0, 1)[0]


def sanity_check(images: Sequence[torch.Tensor], model: NIQEModel, sigma: float = 25 / 255, factor: int = 4) -> dict:
    """Mean NIQE of clean images vs the same images with Gaussian noise and with a bicubic round-trip blur."""
    scores: dict[str, list[float]] = {"clean": [], "noise": [], "blur": []}
    for i, img in enumerate(images):
        for name, x in (("clean", img), ("noise", _noisy(img, sigma, seed=i)), ("blur", _bicubic_round_trip(img, factor))):
            try:
                scores[name].append(niqe(x, model))
            except NIQEUndefined:
                pass
    means = {f"mean_{k}": float(np.mean(v)) if v else None for k, v in scores.items()}
    worse = {
        f"fraction_{k}_worse": float(np.mean([d > c for c, d in zip(scores["clean"], scores[k])]))
        for k in ("noise", "blur")
    }
    return {"n_images": len(scores["clean"]), "noise_sigma": f"{round(sigma * 255)}/255", "blur": f"bicubic x{factor} down+up", **means, **worse}


def _load_folder(folder: Path) -> list[torch.Tensor]:
    return [load_image(p) for p in list_images(folder)]


def _fit_command(args: argparse.Namespace) -> None:
    clean = Path(args.clean)
    t0 = time.time()
    images = _load_folder(clean)
    if not images:
        raise SystemExit(f"no images found in {clean}")
    model = fit_pristine_model(
        images,
        patch_size=args.patch_size,
        sharpness_fraction=args.sharpness,
        notes=f"fitted on {len(images)} images of {clean.name}/ ({clean})",
    )
    fit_s = time.time() - t0
    val = Path(args.val) if args.val else clean.parent / "val"
    sanity = sanity_check(_load_folder(val), model) if val.is_dir() else {"skipped": f"no validation folder {val}"}
    card = {
        "kind": "niqe_pristine_model",
        "method": "NIQE, Mittal et al. 2013 (re-implemented; see diffloss/niqe.py docstring)",
        "command": "python -m diffloss.niqe " + " ".join(sys.argv[1:]),
        "data": {"folder": str(clean), "images": len(images), "patches_kept": model.n_patches},
        "patch_size": model.patch_size,
        "sharpness_fraction": model.sharpness_fraction,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "fit_seconds": round(fit_s, 1),
        "device": f"cpu ({platform.machine()}, numpy {np.__version__})",
        "sanity": {"data": str(val), **sanity},
    }
    path = model.save(args.out, card)
    print(f"wrote {path} and {Path(args.out) / CARD_FILE}")
    print(json.dumps(card["sanity"], indent=2))


def _score_command(args: argparse.Namespace) -> None:
    model = NIQEModel.load(args.model)
    for p in args.images:
        try:
            print(f"{p}\t{niqe(load_image(p), model):.4f}")
        except NIQEUndefined as err:
            print(f"{p}\tundefined ({err})")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m diffloss.niqe", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit the pristine model on a folder of clean photos")
    fit.add_argument("--clean", required=True, help="folder of clean, sharp photos")
    fit.add_argument("--val", default=None, help="folder for the sanity check (default: <clean>/../val if it exists)")
    fit.add_argument("--out", default="pretrained/niqe", help="output folder (default: pretrained/niqe)")
    fit.add_argument("--patch-size", type=int, default=PATCH_SIZE)
    fit.add_argument("--sharpness", type=float, default=SHARPNESS_FRACTION, help="keep patches above this fraction of the sharpest")
    fit.set_defaults(run=_fit_command)
    score = sub.add_parser("score", help="print the NIQE of images")
    score.add_argument("images", nargs="+")
    score.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    score.set_defaults(run=_score_command)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
