"""The six restoration tasks: how a clean photo is degraded, and what the restorer is given.

Each degradation is a pure function of (clean batch, torch.Generator, parameters). The generator is the only
source of randomness, so one seed reproduces a pair bit for bit, on any device: random numbers are drawn on the
generator's device and then moved to the image's device and dtype. Each sample in a batch draws its own
parameters from a documented, physically meaningful range; a parameter given as a float is used as is for every
sample, a (lo, hi) tuple is drawn uniformly per sample.

Images are (N,3,H,W) float tensors in [0,1]. ``TASKS`` maps a task name to its degradation and input convention;
``prepare_input`` gives the restorer's input for a photo that is already degraded (real photos, the app).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

Range = float | tuple[float, float]


@dataclass(frozen=True)
class Degraded:
    """One degraded batch: what a person sees (lq) and what the restorer receives (net_input)."""

    lq: torch.Tensor  # (N,3,h,w); for sr4 the 4x smaller image
    net_input: torch.Tensor  # (N,C,H,W); sr4: bicubic-upsampled lq, inpaint: lq with the mask as a 4th channel
    mask: torch.Tensor | None = None  # (N,1,H,W), 1 = missing pixel (inpaint only)


@dataclass(frozen=True)
class Task:
    """A restoration task by name: its degradation and the shape of the restorer's input."""

    name: str
    description: str
    in_channels: int
    size_multiple: int
    from_paper: bool
    degrade: Callable[[torch.Tensor, torch.Generator], Degraded]


# ---------------------------------------------------------------------------------------------------------------
# Random draws: always on the generator's device, then moved, so a seed means the same thing everywhere.


def _rand(g: torch.Generator, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.rand(shape, generator=g, device=g.device).to(device=like.device, dtype=like.dtype)


def _randn(g: torch.Generator, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=g, device=g.device).to(device=like.device, dtype=like.dtype)


def _param(value: Range, shape: tuple[int, ...], g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """A fixed value, or a uniform draw per element from (lo, hi)."""
    if isinstance(value, (int, float)):
        return torch.full(shape, float(value), device=like.device, dtype=like.dtype)
    lo, hi = value
    return lo + (hi - lo) * _rand(g, shape, like)


def _scalar(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand((), generator=g, device=g.device).item()


def _check_batch(x: torch.Tensor, what: str = "clean") -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{what} must be an (N,3,H,W) batch, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a float tensor in [0,1], got {x.dtype} (convert uint8 with x / 255)")


# ---------------------------------------------------------------------------------------------------------------
# The degradations (pure functions).


def darken(
    clean: torch.Tensor,
    g: torch.Generator,
    exposure: Range = (0.05, 0.3),
    gamma: Range = (1.5, 2.5),
    photons: Range = (500.0, 5000.0),
    read_noise: Range = (0.5 / 255, 3.0 / 255),
    colour_gain: Range = (0.9, 1.1),
) -> torch.Tensor:
    """Low-light capture (paper task): an under-exposed, noisy shot of the scene.

    clean**gamma turns display values into a linear-ish radiance (sRGB is about 2.2), so shadows sink faster
    than highlights; exposure scales it down as a short shutter would; colour_gain (per channel) is the colour
    cast of the light; the sensor then counts photons (Poisson shot noise, ``photons`` = photon count of a full
    white pixel, so fewer photons means noisier) and adds Gaussian read noise (std in [0,1] units).
    """
    _check_batch(clean)
    n = clean.shape[0]
    signal = _param(exposure, (n, 1, 1, 1), g, clean) * clean.clamp(0, 1) ** _param(gamma, (n, 1, 1, 1), g, clean)
    signal = (signal * _param(colour_gain, (n, 3, 1, 1), g, clean)).clamp(0, 1)
    full_well = _param(photons, (n, 1, 1, 1), g, clean)
    rate = (signal * full_well).to(device=g.device, dtype=torch.float32)
    counted = torch.poisson(rate, generator=g).to(device=clean.device, dtype=clean.dtype) / full_well
    read = _param(read_noise, (n, 1, 1, 1), g, clean) * _randn(g, tuple(clean.shape), clean)
    return (counted + read).clamp(0, 1)


def _streak_kernels(
    n: int, h: int, w: int, length: torch.Tensor, angle_deg: torch.Tensor, thickness: torch.Tensor
) -> torch.Tensor:
    """(n,1,h,w) line kernels laid out for circular convolution (offset 0 at pixel [0,0]).

    Antialiased: the weight falls linearly across the line (half-width ``thickness`` px) and quadratically
    towards the ends, so streaks taper like falling drops instead of ending in hard pixels.
    """
    dev, dt = length.device, length.dtype
    dy = torch.arange(h, device=dev, dtype=dt)
    dx = torch.arange(w, device=dev, dtype=dt)
    dy = torch.where(dy > h // 2, dy - h, dy).view(1, 1, h, 1)  # signed offsets on the torus
    dx = torch.where(dx > w // 2, dx - w, dx).view(1, 1, 1, w)
    theta = torch.deg2rad(angle_deg).view(n, 1, 1, 1)  # from vertical
    along = dy * torch.cos(theta) + dx * torch.sin(theta)
    across = -dy * torch.sin(theta) + dx * torch.cos(theta)
    half = (length / 2).view(n, 1, 1, 1)
    profile = (1 - across.abs() / thickness.view(n, 1, 1, 1)).clamp(min=0)
    taper = (1 - (along / half) ** 2).clamp(min=0)
    return profile * taper


def add_rain(
    clean: torch.Tensor,
    g: torch.Generator,
    density: Range = (0.001, 0.005),
    length: Range = (10.0, 40.0),
    angle: Range = (-30.0, 30.0),
    brightness: Range = (0.6, 1.0),
    thickness: Range = (1.0, 1.8),
) -> torch.Tensor:
    """Rain streaks (paper task), synthesised as in Photoshop-style rain rendering.

    Sparse drops (``density`` = fraction of pixels that seed a drop, each with its own brightness) are motion
    blurred along one direction per image (``angle`` in degrees from vertical, ``length`` in px) and the streak
    layer is screen-blended over the photo with strength ``brightness``: streaks show on dark regions and fade
    on bright ones, as real rain does. The blur is a circular FFT convolution: cheap for long kernels, and a
    streak wrapping round the border is statistically indistinguishable from any other.
    """
    _check_batch(clean)
    n, _, h, w = clean.shape
    shape = (n, 1, 1, 1)
    density_ = _param(density, shape, g, clean)
    length_ = _param(length, (n,), g, clean)
    angle_ = _param(angle, (n,), g, clean)
    thickness_ = _param(thickness, (n,), g, clean)
    strength = _param(brightness, shape, g, clean)
    u = _rand(g, (n, 1, h, w), clean)
    # For u < density, u / density is itself uniform on [0,1): reuse it for each drop's brightness in [0.5, 1].
    drops = torch.where(u < density_, 0.5 + 0.5 * u / density_, torch.zeros_like(u))
    kernels = _streak_kernels(n, h, w, length_, angle_, thickness_)
    work = torch.float64 if clean.dtype == torch.float64 else torch.float32
    spectrum = torch.fft.rfft2(drops.to(work)) * torch.fft.rfft2(kernels.to(work))
    streaks = torch.fft.irfft2(spectrum, s=(h, w)).to(clean.dtype).clamp(0, 1) * strength
    return (1 - (1 - clean) * (1 - streaks)).clamp(0, 1)


def synthetic_depth(
    n: int, h: int, w: int, g: torch.Generator, like: torch.Tensor, ramp_weight: Range = (0.3, 0.8)
) -> torch.Tensor:
    """(n,1,h,w) smooth depth in [0,1]: far at the top, near at the bottom (how most photos are framed), mixed
    with a low-frequency random field (4x4 noise, bicubic-upsampled) so haze is patchy rather than a gradient."""
    ramp = torch.linspace(1, 0, h, device=like.device, dtype=like.dtype).view(1, 1, h, 1).expand(n, 1, h, w)
    field = F.interpolate(_rand(g, (n, 1, 4, 4), like), size=(h, w), mode="bicubic", align_corners=False)
    mix = _param(ramp_weight, (n, 1, 1, 1), g, like)
    return _normalise(mix * ramp + (1 - mix) * _normalise(field))


def _normalise(x: torch.Tensor) -> torch.Tensor:
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    return (x - lo) / (hi - lo).clamp(min=1e-8)


def add_haze(
    clean: torch.Tensor,
    g: torch.Generator,
    beta: Range = (0.5, 2.5),
    airlight: Range = (0.7, 1.0),
    warmth: Range = (-0.05, 0.05),
    depth: torch.Tensor | None = None,
) -> torch.Tensor:
    """Haze (paper task) by the atmospheric scattering model I = J t + A (1 - t), t = exp(-beta d).

    beta is the scattering coefficient (thicker haze when larger), A the airlight (brightness of the haze,
    capped at 1), tinted along the one axis real haze varies on: ``warmth`` > 0 scales red up and blue down by
    that fraction (smog, dusk), < 0 the reverse (Rayleigh blue). d is a depth map in [0,1] (synthetic_depth
    unless given, (N,1,H,W)).
    """
    _check_batch(clean)
    n, _, h, w = clean.shape
    d = synthetic_depth(n, h, w, g, clean) if depth is None else depth.to(clean)
    t = torch.exp(-_param(beta, (n, 1, 1, 1), g, clean) * d)
    axis = torch.tensor([1.0, 0.0, -1.0], device=clean.device, dtype=clean.dtype).view(1, 3, 1, 1)
    tint = 1 + _param(warmth, (n, 1, 1, 1), g, clean) * axis
    a = (_param(airlight, (n, 1, 1, 1), g, clean) * tint).clamp(max=1)
    return (clean * t + a * (1 - t)).clamp(0, 1)


def add_noise(clean: torch.Tensor, g: torch.Generator, sigma: Range = (5 / 255, 50 / 255)) -> torch.Tensor:
    """Additive white Gaussian noise, std sigma in [0,1] units (the classic 5/255..50/255 denoising range)."""
    _check_batch(clean)
    n = clean.shape[0]
    return (clean + _param(sigma, (n, 1, 1, 1), g, clean) * _randn(g, tuple(clean.shape), clean)).clamp(0, 1)


def downscale_bicubic(clean: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """The standard SR benchmark degradation: antialiased bicubic downscale by an integer factor (no noise)."""
    h, w = clean.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"image size {h}x{w} is not a multiple of {factor}; use crop_to_multiple first")
    out = F.interpolate(clean, size=(h // factor, w // factor), mode="bicubic", antialias=True, align_corners=False)
    return out.clamp(0, 1)


def upscale_bicubic(lq: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """Bicubic upscale (clamped): the SR restorer works at the output size and predicts the missing detail."""
    h, w = lq.shape[-2:]
    return F.interpolate(lq, size=(h * factor, w * factor), mode="bicubic", align_corners=False).clamp(0, 1)


def _segment_into(mask: torch.Tensor, p: tuple[float, float], q: tuple[float, float], radius: float) -> int:
    """Paint a thick segment p->q (round caps) into a (h,w) bool mask, touching only its bounding box.

    Returns how many pixels it newly covered, so coverage is tracked without rescanning the whole mask."""
    h, w = mask.shape
    y0, y1 = max(0, int(min(p[0], q[0]) - radius)), min(h, int(max(p[0], q[0]) + radius) + 2)
    x0, x1 = max(0, int(min(p[1], q[1]) - radius)), min(w, int(max(p[1], q[1]) + radius) + 2)
    if y0 >= y1 or x0 >= x1:
        return 0
    ys = torch.arange(y0, y1, dtype=torch.float32).view(-1, 1) + 0.5 - p[0]
    xs = torch.arange(x0, x1, dtype=torch.float32).view(1, -1) + 0.5 - p[1]
    sy, sx = q[0] - p[0], q[1] - p[1]
    t = ((ys * sy + xs * sx) / max(sy * sy + sx * sx, 1e-8)).clamp(0, 1)
    brush = (ys - t * sy) ** 2 + (xs - t * sx) ** 2 <= radius * radius
    region = mask[y0:y1, x0:x1]
    added = int((brush & ~region).sum())
    region |= brush
    return added


def _one_mask(h: int, w: int, g: torch.Generator, coverage: tuple[float, float], box_prob: float) -> torch.Tensor:
    side = min(h, w)
    target = round(_scalar(g, *coverage) * h * w)  # in pixels
    mask = torch.zeros(h, w, dtype=torch.bool)
    covered = 0
    if _scalar(g, 0, 1) < box_prob:  # a box takes 30-60% of the target; strokes do the rest
        area = target * _scalar(g, 0.3, 0.6)
        aspect = math.exp(_scalar(g, math.log(0.5), math.log(2.0)))
        bh = min(h, max(1, round(math.sqrt(area * aspect))))
        bw = min(w, max(1, round(area / bh)))
        top, left = int(_scalar(g, 0, h - bh + 1)), int(_scalar(g, 0, w - bw + 1))
        mask[top : top + bh, left : left + bw] = True
        covered = bh * bw
    segments = 0
    while covered < target and segments < 400:
        p = (_scalar(g, 0, h), _scalar(g, 0, w))
        heading = _scalar(g, 0, 2 * math.pi)
        radius = max(1.0, _scalar(g, 0.02, 0.05) * side)  # brush 4-10% of the short side
        for _ in range(int(_scalar(g, 3, 9))):
            heading += _scalar(g, -1.2, 1.2)
            step = _scalar(g, 0.08, 0.25) * side
            q = (p[0] + step * math.cos(heading), p[1] + step * math.sin(heading))
            if not (0 <= q[0] <= h and 0 <= q[1] <= w):  # turn back at the border rather than slide along it
                heading += math.pi
                q = (p[0] + step * math.cos(heading), p[1] + step * math.sin(heading))
                q = (min(max(q[0], 0.0), float(h)), min(max(q[1], 0.0), float(w)))  # a corner: stay inside
            covered += _segment_into(mask, p, q, radius)
            segments += 1
            p = q
            if covered >= target:
                break
    return mask


def random_masks(
    n: int,
    h: int,
    w: int,
    g: torch.Generator,
    coverage: tuple[float, float] = (0.10, 0.35),
    box_prob: float = 0.5,
) -> torch.Tensor:
    """(n,1,h,w) float free-form hole masks, 1 = missing, on the CPU.

    Thick random brush strokes (random walks of 3-8 segments, brush 4-10% of the short side), plus a box with
    probability box_prob, added until the masked fraction reaches a target drawn from ``coverage``; it
    overshoots by at most one segment (a few percent), like the free-form masks of DeepFill v2 / LaMa.
    """
    return torch.stack([_one_mask(h, w, g, coverage, box_prob) for _ in range(n)])[:, None].float()


def _inpaint_input(lq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Holes filled with 0 (black) plus the mask as a 4th channel: the net is told where to invent."""
    return torch.cat([lq * (1 - mask), mask], dim=1)


# ---------------------------------------------------------------------------------------------------------------
# Tasks by name.


def _as_input(lq: torch.Tensor) -> Degraded:
    return Degraded(lq=lq, net_input=lq)


def _lowlight(clean: torch.Tensor, g: torch.Generator) -> Degraded:
    return _as_input(darken(clean, g))


def _rain(clean: torch.Tensor, g: torch.Generator) -> Degraded:
    return _as_input(add_rain(clean, g))


def _haze(clean: torch.Tensor, g: torch.Generator) -> Degraded:
    return _as_input(add_haze(clean, g))


def _noise(clean: torch.Tensor, g: torch.Generator) -> Degraded:
    return _as_input(add_noise(clean, g))


def _sr4(clean: torch.Tensor, g: torch.Generator) -> Degraded:
    lq = downscale_bicubic(clean, 4)
    return Degraded(lq=lq, net_input=upscale_bicubic(lq, 4))


def _inpaint(clean: torch.Tensor, g: torch.Generator) -> Degraded:
    _check_batch(clean)
    n, _, h, w = clean.shape
    mask = random_masks(n, h, w, g).to(clean)
    lq = clean * (1 - mask)
    return Degraded(lq=lq, net_input=_inpaint_input(lq, mask), mask=mask)


TASKS: dict[str, Task] = {
    "lowlight": Task("lowlight", "Brighten an under-exposed, noisy low-light photo.", 3, 1, True, _lowlight),
    "rain": Task("rain", "Remove rain streaks from a photo.", 3, 1, True, _rain),
    "haze": Task("haze", "Remove haze that washes out distant parts of a scene.", 3, 1, True, _haze),
    "noise": Task("noise", "Remove additive Gaussian noise (sigma 5-50 out of 255).", 3, 1, False, _noise),
    "sr4": Task("sr4", "Upscale a photo 4x, restoring the detail that bicubic downscaling lost.", 3, 4, False, _sr4),
    "inpaint": Task("inpaint", "Fill masked holes with plausible content.", 4, 1, False, _inpaint),
}


def get_task(name: str) -> Task:
    """The task called name; ValueError listing the choices otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None


def make_pair(task: str, clean: torch.Tensor, seed: int | torch.Generator) -> Degraded:
    """Degrade clean ((3,H,W) or (N,3,H,W), floats in [0,1]) for task; always returns a batch (N >= 1).

    Does not crop: H and W must be multiples of the task's size_multiple (crop_to_multiple does that), so that
    lq and gt stay aligned pixel for pixel.
    """
    spec = get_task(task)
    batch = clean[None] if clean.dim() == 3 else clean
    _check_batch(batch)
    if batch.numel() and (batch.min() < 0 or batch.max() > 1):
        raise ValueError("clean must hold values in [0,1] (got a tensor outside that range)")
    h, w = batch.shape[-2:]
    m = spec.size_multiple
    if h % m or w % m:
        raise ValueError(
            f"task {task!r} needs height and width that are multiples of {m}, got {h}x{w}; "
            f"crop first with crop_to_multiple(clean, {m})"
        )
    g = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    return spec.degrade(batch, g)


def prepare_input(task: str, lq: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The restorer's input for an image that is already degraded (a real photo, an upload).

    sr4: bicubic x4 upsample (clamped); inpaint: holes zeroed plus the mask as a 4th channel (the mask, 1 =
    missing, is thresholded at 0.5 so a soft brush from the UI gives the binary masks the net was trained on);
    other tasks: lq unchanged. Accepts (3,h,w) or (N,3,h,w) and returns the same rank.
    """
    spec = get_task(task)
    single = lq.dim() == 3
    batch = lq[None] if single else lq
    _check_batch(batch, "lq")
    if spec.name == "sr4":
        out = upscale_bicubic(batch, 4)
    elif spec.name == "inpaint":
        if mask is None:
            raise ValueError("task 'inpaint' needs a mask (1 = missing pixel) to build the restorer's input")
        m = mask
        while m.dim() < 4:
            m = m[None]
        if m.shape[1] != 1 or m.shape[-2:] != batch.shape[-2:]:
            raise ValueError(
                f"mask must be (N,1,H,W), (1,H,W) or (H,W) matching the image {tuple(batch.shape[-2:])}, "
                f"got {tuple(mask.shape)}"
            )
        m = (m > 0.5).to(batch).expand(batch.shape[0], 1, *batch.shape[-2:])
        out = _inpaint_input(batch, m)
    else:
        out = batch
    return out[0] if single else out


def crop_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Centre crop of the last two dims to multiples of ``multiple`` (loses at most multiple-1 px per axis)."""
    h, w = x.shape[-2:]
    nh, nw = h - h % multiple, w - w % multiple
    if nh == 0 or nw == 0:
        raise ValueError(f"image {h}x{w} is smaller than {multiple} px and cannot be cropped to a multiple of it")
    top, left = (h - nh) // 2, (w - nw) // 2
    return x[..., top : top + nh, left : left + nw]
