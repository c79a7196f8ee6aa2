"""Full-reference metrics (PSNR, SSIM, LPIPS) with their conventions stated once, plus one call for all of them.

Numbers in papers differ mostly by convention (RGB or Y, border crop, SSIM window), so the conventions live in one
string, :data:`CONVENTIONS`, that every report and the UI print next to the numbers. SSIM is computed by scikit-image
and PSNR by its formula written out (tested equal to scikit-image's), so both match a widely used reference.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from diffloss.images import as_hwc, rgb_to_y  # noqa: F401  (rgb_to_y: part of this module's API)
from diffloss.niqe import NIQEUndefined, niqe
from diffloss.perceptual import CONVENTIONS as PAPERS_CONVENTIONS
from diffloss.perceptual import PERCEPTUAL_HIGHER_IS_BETTER, perceptual_metrics

SSIM_SIGMA = 1.5  # Wang et al. 2004: Gaussian window, sigma 1.5 (skimage truncates it to 11x11)

CONVENTIONS = (
    "PSNR/SSIM on RGB in [0,1] (data_range=1, crop_border=0, no Y conversion), scikit-image definitions; "
    "SSIM: Gaussian window sigma 1.5 (11x11), population covariance, averaged over channels; "
    "identical images give PSNR=inf; NIQE: ours (Mittal et al. 2013), Y channel, 96px patches, lower is better; "
    "LPIPS: AlexNet v0.1, lower is better"
)

LpipsFn = Callable[[object, object], float]
# Which way is better, for every metric any report compares (one place: tables, wins and verdicts read it).
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "ms_ssim": True, "niqe": False, "lpips": False,
                    **PERCEPTUAL_HIGHER_IS_BETTER}  # haarpsi, mdsi, ms_gmsd: stated in diffloss.perceptual


def _prepare(pred, gt, crop_border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_hwc(pred), as_hwc(gt)
    if a.shape != b.shape:
        raise ValueError(f"prediction and ground truth differ in shape: pred {a.shape} vs gt {b.shape} (HxWxC)")
    if y_channel:
        a, b = rgb_to_y(a), rgb_to_y(b)
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border:
        if 2 * crop_border >= min(a.shape[:2]):
            raise ValueError(f"crop_border={crop_border} leaves nothing of a {a.shape[0]}x{a.shape[1]} image")
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    return a, b


def psnr(pred, gt, data_range: float = 1.0, crop_border: int = 0, y_channel: bool = False) -> float:
    """PSNR in dB; ``inf`` for identical images (skimage's limit, returned without a divide-by-zero warning).

    scikit-image's formula, 10 log10(data_range^2 / MSE) in float64, written out: its module imports scipy.stats,
    which alone slowed the app's start-up (figure in bench/results/figures-from-comments.md); a test holds the
    two equal.
    """
    a, b = _prepare(pred, gt, crop_border, y_channel)
    if np.array_equal(a, b):
        return math.inf
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10.0 * np.log10(data_range**2 / mse))


def ssim(pred, gt, data_range: float = 1.0, crop_border: int = 0, y_channel: bool = False) -> float:
    """SSIM (Wang et al. 2004 settings: Gaussian sigma 1.5, population covariance), mean over channels."""
    from skimage.metrics import structural_similarity  # on first use: the app's start-up need not wait for it

    a, b = _prepare(pred, gt, crop_border, y_channel)
    # float32 filtering: faster than float64 (it keeps Compare within its bench goal) and equal to it within
    # ~1e-7, far below the 4 decimals any table prints; identical images still give exactly 1.
    a, b = a.astype(np.float32), b.astype(np.float32)
    return float(
        structural_similarity(
            b,
            a,
            data_range=data_range,
            channel_axis=-1 if a.ndim == 3 else None,
            gaussian_weights=True,
            sigma=SSIM_SIGMA,
            use_sample_covariance=False,
        )
    )


def load_lpips(net: str = "alex") -> tuple[LpipsFn | None, str]:
    """``(fn, "")`` when LPIPS and all its weights load offline, else ``(None, reason)``.

    LPIPS needs the ``lpips`` package (its linear heads ship inside it) and torchvision's ImageNet backbone in the
    torch hub cache. Constructing it with a missing backbone would download it, so the cache is checked first:
    a missing metric is reported as missing, never downloaded and never replaced by a made-up number.
    """
    try:
        import lpips  # noqa: F401  (imports torchvision)
    except Exception as err:  # ImportError, or torchvision failing to load beside this torch
        return None, f"LPIPS unavailable: the lpips package cannot be imported ({type(err).__name__}: {err})"
    backbone_files = {"alex": "alexnet-owt-", "vgg": "vgg16-", "squeeze": "squeezenet1_1-"}
    prefix = backbone_files.get(net)
    if prefix is None:
        return None, f"LPIPS unavailable: unknown backbone {net!r} (alex, vgg or squeeze)"
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    if not any(cache.glob(prefix + "*.pth")):
        return None, f"LPIPS unavailable: {net} backbone weights not in {cache} and downloading is not allowed"
    try:
        model = lpips.LPIPS(net=net, verbose=False).eval()
    except Exception as err:
        return None, f"LPIPS unavailable: the model failed to load offline ({type(err).__name__}: {err})"

    def lpips_fn(pred, gt) -> float:
        a = torch.from_numpy(as_hwc(pred)).permute(2, 0, 1)[None].float()
        b = torch.from_numpy(as_hwc(gt)).permute(2, 0, 1)[None].float()
        if a.shape != b.shape:
            raise ValueError(f"prediction and ground truth differ in shape: pred {tuple(a.shape)} vs gt {tuple(b.shape)}")
        with torch.no_grad():
            return float(model(a * 2 - 1, b * 2 - 1).item())  # LPIPS expects [-1,1]

    return lpips_fn, ""


def compute_metrics(pred, gt=None, lpips_fn: LpipsFn | None = None, niqe_model=None) -> dict[str, float | None]:
    """All metrics of one image: ``psnr``, ``ssim``, ``lpips`` need ``gt`` (None without it); ``niqe`` never does.

    ``niqe`` is None when the image is too small for NIQE or has no texture to measure (see :mod:`diffloss.niqe`);
    ``lpips`` is None when no LPIPS function is given (see :func:`load_lpips` for why it may be missing).
    """
    return {**full_reference_metrics(pred, gt, lpips_fn), **no_reference_metrics(pred, niqe_model)}


def full_reference_metrics(pred, gt=None, lpips_fn: LpipsFn | None = None) -> dict[str, float | None]:
    """``psnr``, ``ssim`` and ``lpips`` against ``gt`` (all None without one): half of :func:`compute_metrics`,
    separate so a caller can run it beside the other half."""
    out: dict[str, float | None] = {"psnr": None, "ssim": None, "lpips": None}
    if gt is not None:
        out["psnr"] = psnr(pred, gt)
        out["ssim"] = ssim(pred, gt)
        if lpips_fn is not None:
            out["lpips"] = float(lpips_fn(pred, gt))
    return out


def no_reference_metrics(pred, niqe_model=None) -> dict[str, float | None]:
    """``niqe`` (None when undefined for this image): the other half of :func:`compute_metrics`."""
    try:
        return {"niqe": niqe(pred, niqe_model)}
    except NIQEUndefined:
        return {"niqe": None}


# ------------------------------------------------------------------ beyond SSIM: what the eye notices
PERCEPTUAL_CONVENTIONS = (
    "MS-SSIM: torchmetrics (5 scales, Gaussian 11x11 sigma 1.5, RGB, data_range=1; None below 161 px a side); "
    "HF ratio: energy of the 3x3 Laplacian of the Y channel, restored over ground truth "
    "(1 = as much fine detail as the truth, < 1 smoother, > 1 more high frequencies: detail, noise or artefacts); "
    + PAPERS_CONVENTIONS
)
MS_SSIM_MIN_SIDE = 161  # 5 scales of an 11-tap window: the image must still be 11 px at the coarsest scale


def _nchw(img) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(as_hwc(img))).permute(2, 0, 1)[None].float()


def ms_ssim(pred, gt) -> float | None:
    """Multi-scale SSIM (Wang et al. 2003) from torchmetrics; None for an image too small for five scales."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    a, b = _nchw(pred), _nchw(gt)
    if a.shape != b.shape:
        raise ValueError(f"prediction and ground truth differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if min(a.shape[-2:]) < MS_SSIM_MIN_SIDE:
        return None
    return float(multiscale_structural_similarity_index_measure(a, b, data_range=1.0))


def high_frequency_energy(img) -> float:
    """Mean squared 3x3 Laplacian of the Y channel: how much fine detail (or noise) an image holds."""
    from scipy.ndimage import laplace

    return float(np.mean(laplace(rgb_to_y(as_hwc(img)).astype(np.float64), mode="reflect") ** 2))


def high_frequency_ratio(pred, gt) -> float | None:
    """The restored image's high-frequency energy over the ground truth's (None when the truth is flat)."""
    ref = high_frequency_energy(gt)
    return high_frequency_energy(pred) / ref if ref > 0 else None


def perceptual_reference_metrics(pred, gt) -> dict[str, float | None]:
    """``ms_ssim``, ``hf_ratio`` and diffloss.perceptual's ``haarpsi``, ``mdsi``, ``ms_gmsd`` against ``gt`` (all
    None without one). (torchmetrics' VIF was tried and left out: 40 s a 500 px image here,
    bench/results/zoo-report-cost.md.)"""
    if gt is None:
        return {"ms_ssim": None, "hf_ratio": None, **perceptual_metrics(pred, None)}
    return {"ms_ssim": ms_ssim(pred, gt), "hf_ratio": high_frequency_ratio(pred, gt), **perceptual_metrics(pred, gt)}
