"""Full-reference perceptual metrics that track people better than SSIM: HaarPSI, MDSI, MS-GMSDc, no downloads.

Why these: on TID2013 and KADID-10k their rank correlation with human scores is about 0.87-0.89, against
0.55-0.63 for SSIM, and they need no learned weights (LPIPS needs torchvision's ImageNet backbone, which this
studio cannot load). The maintained packages that ship them (piq, piqa, pyiqa) import torchvision when imported,
so they are written here from the papers, in float64 torch; tests/test_perceptual.py pins their values against
piq 0.8.0's on fixed images.

- HaarPSI (Reisenhofer, Bosse, Kutyniok & Wiegand 2018, "A Haar wavelet-based perceptual similarity index for
  image quality assessment", Signal Processing: Image Communication 61): local similarity of Haar wavelet
  magnitudes at two fine scales, weighted by a coarse scale's magnitude (where the eye looks). 1 = identical.
- MDSI (Ziaei Nafchi, Shahkolaei, Hedjam & Cheriet 2016, "Mean deviation similarity index", IEEE Access 4):
  gradient similarity against the two images' mean, plus chromaticity similarity, pooled by deviation: how
  *unevenly* the image is damaged. 0 = identical.
- MS-GMSDc (Zhang, Sander & Bermak 2017, "Gradient magnitude similarity deviation on multiple scales for color
  image quality assessment", ICASSP): the standard deviation of a gradient-similarity map at four scales,
  weighted, balanced against the chroma error. 0 = identical.

Images are (3,H,W) or HxWx3 in [0,1] (RGB), compared at full resolution after each paper's own downscaling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from diffloss.images import as_hwc

# --------------------------------------------------------------------------------------------- conventions
class ImageTooSmall(ValueError):
    """The metric is undefined at this size (its filters or scales need more pixels): reported as None."""


@dataclass(frozen=True)
class PerceptualMetric:
    """One metric: its function, which way is better (the one place that says so), and its conventions."""

    name: str
    label: str
    fn: Callable[[object, object], float]
    higher_is_better: bool
    perfect: float  # the score of an image against itself
    about: str


HAARPSI_C = 30.0  # the paper's C (on a 0-255 scale), fitted on LIVE, TID2008, CSIQ
HAARPSI_ALPHA = 4.2  # the paper's alpha, the logistic function's slope
HAARPSI_SCALES = 3  # two scales of similarity, the third gives the weights
MDSI_C1, MDSI_C2, MDSI_C3 = 140.0, 55.0, 550.0  # the paper's constants (0-255 scale)
MDSI_ALPHA = 0.6  # weight of gradient against chromaticity similarity ("sum" combination)
MDSI_Q, MDSI_O = 0.25, 0.25  # the paper's power before deviation pooling and after it (rho = 1)


def _nchw(img) -> torch.Tensor:
    """(1,3,H,W) float64 on a 0-255 scale (both papers' constants are for that scale)."""
    arr = as_hwc(img)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"perceptual metrics need an RGB image (HxWx3 or 3xHxW), got shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64)).permute(2, 0, 1)[None] * 255.0


def _pair(pred, gt) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _nchw(pred), _nchw(gt)
    if a.shape != b.shape:
        raise ValueError(f"prediction and ground truth differ in shape: pred {tuple(a.shape[1:])} vs gt "
                         f"{tuple(b.shape[1:])} (CxHxW)")
    return a, b


def _similarity(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    """The stabilised Dice-like similarity both papers use: (2xy + c) / (x^2 + y^2 + c), 1 where x == y."""
    return (2 * x * y + c) / (x * x + y * y + c)


def _mix(img: torch.Tensor, rows: tuple[tuple[float, float, float], ...]) -> torch.Tensor:
    """A linear colour transform of a (N,3,H,W) batch, one output channel per row."""
    m = torch.tensor(rows, dtype=img.dtype)
    return torch.einsum("oc,nchw->nohw", m, img)


# ------------------------------------------------------------------------------------------------- HaarPSI
YIQ = ((0.299, 0.587, 0.114), (0.5959, -0.2746, -0.3213), (0.2115, -0.5227, 0.3112))


def _haar_kernels(scale: int, dtype: torch.dtype) -> torch.Tensor:
    """The horizontal and vertical Haar filters of a scale (side 2**scale): +1 on one half, -1 on the other."""
    side = 2**scale
    k = torch.full((side, side), 1.0 / side, dtype=dtype)
    k[side // 2:] *= -1
    return torch.stack([k, k.T])[:, None]


def _same_even(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Correlation with an even-sided kernel, zero-padded so the output keeps the input's size (MATLAB's
    ``conv2(..., 'same')``, which the paper's reference code uses)."""
    side = kernels.shape[-1]
    x = F.pad(x, (side // 2 - 1, side // 2, side // 2 - 1, side // 2))
    return F.conv2d(x, kernels)


def haarpsi(pred, gt) -> float:
    """HaarPSI in [0, 1], higher is better (1: identical). Needs at least 16 px a side."""
    a, b = _pair(pred, gt)
    if min(a.shape[-2:]) < 2 ** (HAARPSI_SCALES + 1):
        raise ImageTooSmall(f"HaarPSI needs images at least {2 ** (HAARPSI_SCALES + 1)} px a side, got "
                         f"{a.shape[-1]}x{a.shape[-2]}")
    # The paper halves the image first (a typical viewing distance): a 2x2 mean, odd sides padded with zeros.
    odd = max(a.shape[-2] % 2, a.shape[-1] % 2)
    a, b = (F.avg_pool2d(F.pad(_mix(t, YIQ), (0, odd, 0, odd)), 2) for t in (a, b))
    coeffs = []
    for t in (a, b):
        y = t[:, :1]
        coeffs.append(torch.cat([_same_even(y, _haar_kernels(s, t.dtype)) for s in range(1, HAARPSI_SCALES + 1)], 1))
    ca, cb = coeffs  # channels: (horizontal, vertical) of scale 1, then scale 2, then scale 3
    weights = torch.maximum(ca[:, 4:6].abs(), cb[:, 4:6].abs())  # the coarsest scale says where to look
    local = [(_similarity(ca[:, [o, o + 2]].abs(), cb[:, [o, o + 2]].abs(), HAARPSI_C)).mean(1, keepdim=True)
             for o in (0, 1)]
    # Chroma (I and Q): magnitudes of a 2x2 mean, weighted by the mean of the two luminance weights.
    ia, ib = (F.avg_pool2d(F.pad(t[:, 1:], (0, 1, 0, 1)), 2, stride=1).abs() for t in (a, b))
    local.append(_similarity(ia, ib, HAARPSI_C).mean(1, keepdim=True))
    weights = torch.cat([weights, weights.mean(1, keepdim=True)], 1)
    sim = torch.cat(local, 1)
    eps = torch.finfo(sim.dtype).eps
    pooled = ((torch.sigmoid(HAARPSI_ALPHA * sim) * weights).sum() + eps) / (weights.sum() + eps)
    return float((torch.logit(pooled) / HAARPSI_ALPHA) ** 2)


# ---------------------------------------------------------------------------------------------------- MDSI
LHM = ((0.2989, 0.587, 0.114), (0.30, 0.04, -0.35), (0.34, -0.60, 0.17))  # luminance and two chroma channels


def _gradient_magnitude(y: torch.Tensor) -> torch.Tensor:
    """|grad| by the normalised 3x3 Prewitt filters, zero-padded to keep the size."""
    k = torch.tensor([[-1.0, 0.0, 1.0]] * 3, dtype=y.dtype) / 3
    grads = F.conv2d(y, torch.stack([k, k.T])[:, None], padding=1)
    return grads.pow(2).sum(1, keepdim=True).sqrt()


def mdsi(pred, gt) -> float:
    """MDSI >= 0, lower is better (0: identical). Typical values 0.1-0.5 for visibly damaged images."""
    a, b = _pair(pred, gt)
    # The paper first averages f x f pixels, f = round(min side / 256), to model viewing distance.
    f = max(1, round(min(a.shape[-2:]) / 256))
    if f > 1:
        pads = ((f - 1) // 2, f // 2, (f - 1) // 2, f // 2)
        a, b = (F.avg_pool2d(F.pad(t, pads), f) for t in (a, b))
    la, lb = _mix(a, LHM), _mix(b, LHM)
    ga, gb = _gradient_magnitude(la[:, :1]), _gradient_magnitude(lb[:, :1])
    gm = _gradient_magnitude((la[:, :1] + lb[:, :1]) / 2)
    # The fused image's gradient catches edges that appear in one image only (added, or removed).
    gs = _similarity(ga, gb, MDSI_C1) + _similarity(ga, gm, MDSI_C2) - _similarity(gb, gm, MDSI_C2)
    cs = (2 * (la[:, 1:2] * lb[:, 1:2] + la[:, 2:] * lb[:, 2:]) + MDSI_C3) / (
        la[:, 1:2] ** 2 + lb[:, 1:2] ** 2 + la[:, 2:] ** 2 + lb[:, 2:] ** 2 + MDSI_C3)
    gcs = MDSI_ALPHA * gs + (1 - MDSI_ALPHA) * cs
    # gcs can be negative, so its quarter power is complex (principal branch); the deviation is a modulus.
    powered = gcs.to(torch.complex128) ** MDSI_Q
    deviation = (powered - powered.mean()).abs()
    return float(deviation.mean() ** MDSI_O)


# -------------------------------------------------------------------------------------------------- MS-GMSD
MS_GMSD_WEIGHTS = (0.096, 0.596, 0.289, 0.019)  # the paper's weights of scales 1 (full size) to 4 (1/8)
MS_GMSD_T = 170.0  # stabilising constant of the gradient similarity (0-255 scale)
MS_GMSD_MASK = 0.5  # the paper's masking: a gradient present in both images counts less
MS_GMSD_BETA = (0.01, 0.32, 15.0)  # chroma weight, and the two constants of the luminance/chroma balance


def _halve(x: torch.Tensor) -> torch.Tensor:
    """2x2 mean, odd sides padded with zeros (each scale of MS-GMSD)."""
    odd = max(x.shape[-2] % 2, x.shape[-1] % 2)
    return F.avg_pool2d(F.pad(x, (0, odd, 0, odd)), 2)


def ms_gmsd(pred, gt) -> float:
    """MS-GMSDc >= 0, lower is better (0: identical): how unevenly gradients are kept, over four scales, with a
    chroma term. Needs at least 17 px a side."""
    a, b = _pair(pred, gt)
    least = 2 ** len(MS_GMSD_WEIGHTS) + 1
    if min(a.shape[-2:]) < least:
        raise ImageTooSmall(f"MS-GMSD needs images at least {least} px a side, got {a.shape[-1]}x{a.shape[-2]}")
    a, b = _mix(a, YIQ), _mix(b, YIQ)
    deviations = []
    for scale in range(len(MS_GMSD_WEIGHTS)):
        if scale:
            a, b = _halve(a), _halve(b)
        ga, gb = _gradient_magnitude(a[:, :1]), _gradient_magnitude(b[:, :1])
        both = MS_GMSD_MASK * ga * gb
        gms = (2 * ga * gb - both + MS_GMSD_T) / (ga * ga + gb * gb - both + MS_GMSD_T)
        deviations.append((gms - gms.mean()).pow(2).mean())  # squared standard deviation of this scale
    weights = torch.tensor(MS_GMSD_WEIGHTS, dtype=a.dtype)
    luminance = torch.sqrt((weights / weights.sum() * torch.stack(deviations)).sum())
    # Chroma: RMSE of I and Q, taken (as piq does) on the coarsest scale; it weighs little unless luminance agrees.
    chroma = torch.sqrt(((a[:, 1:] - b[:, 1:]) ** 2).mean(dim=(-2, -1)).sum())
    beta1, beta2, beta3 = MS_GMSD_BETA
    balance = 2 / (1 + beta2 * torch.exp(-beta3 * luminance)) - 1
    return float(balance * luminance + (1 - balance) * beta1 * chroma)


# ------------------------------------------------------------------------------------------------ registry
PERCEPTUAL = {
    "haarpsi": PerceptualMetric("haarpsi", "HaarPSI ↑", haarpsi, True, 1.0,
                                "Haar wavelet similarity, Y at 3 scales + IQ chroma, image halved first"),
    "mdsi": PerceptualMetric("mdsi", "MDSI ↓", mdsi, False, 0.0,
                             "gradient (Prewitt) and chromaticity deviation, image averaged by round(side/256)"),
    "ms_gmsd": PerceptualMetric("ms_gmsd", "MS-GMSDc ↓", ms_gmsd, False, 0.0,
                                "gradient similarity deviation of Y at 4 scales, with chroma (IQ) RMSE"),
}
PERCEPTUAL_HIGHER_IS_BETTER = {name: m.higher_is_better for name, m in PERCEPTUAL.items()}
CONVENTIONS = ("HaarPSI (Reisenhofer et al. 2018; higher is better, 1 = identical), MDSI (Ziaei Nafchi et al. "
               "2016) and MS-GMSDc (Zhang et al. 2017; both lower is better, 0 = identical): RGB in [0,1] scaled "
               "to 0-255, the papers' constants and downscaling, ours (equal to piq 0.8.0's within 1e-6)")


def perceptual_metrics(pred, gt=None) -> dict[str, float | None]:
    """Every perceptual metric of ``pred`` against ``gt`` (each None without a ground truth or when the image is
    too small for it): the call evaluate and Compare use beside PSNR and SSIM."""
    out: dict[str, float | None] = {name: None for name in PERCEPTUAL}
    if gt is None:
        return out
    for name, metric in PERCEPTUAL.items():
        try:
            value = metric.fn(pred, gt)
        except ImageTooSmall:  # undefined here; a shape mismatch or a grey image is the caller's error, raised
            continue
        out[name] = value if math.isfinite(value) else None
    return out
