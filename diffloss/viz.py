"""Pictures of what the loss sees: tensors in, numpy uint8 HxWx3 arrays out (what Gradio and PIL display).

Why no pyplot: figures are built with ``matplotlib.figure.Figure`` on an Agg canvas, so nothing touches global
backend or figure state and the functions are safe to call from the app's worker threads.
Comparability is a first-class option: noise maps take a fixed ``scale``, heat maps a fixed ``vmax`` and h maps a
shared PCA ``basis``, so two pictures side by side use the same colours for the same values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from diffloss.images import to_uint8_numpy
from diffloss.inspection import LossCurves

if TYPE_CHECKING:  # matplotlib is imported on first use: the app's start-up does not need to wait for it
    from matplotlib.figure import Figure

_TERM_LABELS = {
    "nat": ("L_nat(t): noise-prediction distance", "mean (eps_hat(a_t) - eps_hat(b_t))^2"),
    "sem": ("L_sem(t): h-space distance", "mean (h(a_t) - h(b_t))^2"),
}
_LOG_SPAN = 100.0  # use a log y axis when positive values span at least two decades


# ------------------------------------------------------------------------------------------------ images
def most_different_window(a: torch.Tensor, b: torch.Tensor, side: int, stride: int | None = None) -> tuple[int, int]:
    """(top, left) of the ``side`` square where two (C,H,W) images differ most: where to look (a report's crops,
    Compare's default zoom). ``stride`` defaults to a quarter of the side; 1 finds the exact square."""
    diff = (a.float() - b.float()).abs().mean(0, keepdim=True)[None]
    side = max(1, min(side, *diff.shape[-2:]))
    stride = stride or max(1, side // 4)
    pooled = F.avg_pool2d(diff, side, stride=stride)
    top, left = divmod(int(pooled.flatten().argmax()), pooled.shape[-1])
    return top * stride, left * stride


def to_image(t: torch.Tensor) -> np.ndarray:
    """HxWx3 uint8 from a [0,1] image, (3,H,W), (1,3,H,W) or a grey (H,W)/(1,H,W) map."""
    t = torch.as_tensor(t)
    if t.dim() == 2 or (t.dim() == 3 and t.shape[0] == 1):
        t = t.reshape(1, *t.shape[-2:]).expand(3, -1, -1)
    return to_uint8_numpy(t)


def shared_scale(*tensors: torch.Tensor) -> float:
    """One symmetric scale (largest |value|) for several signed maps, so ``signed_to_image`` shows them alike."""
    peak = max((float(torch.as_tensor(x).detach().abs().max()) for x in tensors if torch.as_tensor(x).numel()),
               default=0.0)
    return peak if peak > 0 else 1.0


def signed_to_image(t: torch.Tensor, scale: float | None = None) -> np.ndarray:
    """Noise or a difference as an image: 0 is mid-grey, +scale white, -scale black (per channel).

    ``scale`` defaults to this map's largest |value|; pass one (e.g. from ``shared_scale``) to compare maps.
    """
    t = torch.as_tensor(t).detach().to("cpu", torch.float32)
    if scale is None:
        scale = shared_scale(t)
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    return to_image(0.5 + 0.5 * t / scale)


# ------------------------------------------------------------------------------------------------ h-space
@dataclass(frozen=True)
class PcaBasis:
    """A projection of C feature channels onto 3 colours, with the colour range fixed by the data it was fit on."""

    mean: torch.Tensor  # (C,)
    components: torch.Tensor  # (C, 3)
    lo: torch.Tensor  # (3,) projection value mapped to 0
    hi: torch.Tensor  # (3,) projection value mapped to 255


def _pixels(h: torch.Tensor) -> torch.Tensor:
    """(C,h,w) or (1,C,h,w) to (h*w, C) rows, one per position."""
    h = torch.as_tensor(h).detach().to("cpu", torch.float32)
    if h.dim() == 4 and h.shape[0] == 1:
        h = h[0]
    if h.dim() != 3:
        raise ValueError(f"expected an h map (C,h,w) or (1,C,h,w), got {tuple(h.shape)}")
    return h.flatten(1).T


def pca_basis(*hs: torch.Tensor) -> PcaBasis:
    """Fit the first three principal components on all positions of all maps together.

    Fitting on the concatenation is what makes colours comparable across maps: the same feature vector gets the
    same colour in each. Sign rule (deterministic): each component's largest-magnitude loading is positive.
    """
    if not hs:
        raise ValueError("pca_basis needs at least one h map")
    rows = torch.cat([_pixels(h) for h in hs])
    mean = rows.mean(dim=0)
    centred = rows - mean
    # Eigenvectors of the C x C covariance, not an SVD of the (positions x C) matrix: same components, and much
    # cheaper at Inspect sizes (thousands of positions, ~128 channels).
    _, evecs = torch.linalg.eigh(centred.double().T @ centred.double())
    k = min(3, centred.shape[1], centred.shape[0])
    comps = evecs.flip(1)[:, :k].float()  # (C, k): largest eigenvalues first
    idx = comps.abs().argmax(dim=0)
    comps = comps * torch.where(comps[idx, torch.arange(comps.shape[1])] < 0, -1.0, 1.0)
    if comps.shape[1] < 3:  # too few channels or positions: the missing colours stay mid-range
        comps = torch.cat([comps, comps.new_zeros(comps.shape[0], 3 - comps.shape[1])], dim=1)
    proj = centred @ comps
    lo = torch.quantile(proj, 0.01, dim=0)
    hi = torch.quantile(proj, 0.99, dim=0)
    return PcaBasis(mean=mean, components=comps, lo=lo, hi=hi)


def pca_rgb(
    h: torch.Tensor, basis: PcaBasis | None = None, size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, PcaBasis]:
    """h map as RGB (first three principal components); returns the basis so a second map can share it.

    ``size=(H, W)`` enlarges with nearest neighbour, so each h position stays a visible block.
    """
    if basis is None:
        basis = pca_basis(h)
    rows = _pixels(h)
    _, hh, hw = (h[0] if h.dim() == 4 else h).shape
    proj = (rows - basis.mean) @ basis.components
    span = basis.hi - basis.lo
    unit = torch.where(span > 0, (proj - basis.lo) / span.clamp(min=1e-12), torch.full_like(proj, 0.5))
    img = unit.clamp(0, 1).T.reshape(3, hh, hw)
    if size is not None:
        img = F.interpolate(img[None], size=tuple(size), mode="nearest")[0]
    return to_uint8_numpy(img), basis


# ------------------------------------------------------------------------------------------------ heat maps
def _overlay_array(overlay: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(overlay, torch.Tensor):
        return to_image(overlay)
    arr = np.asarray(overlay)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise ValueError(f"overlay must be an HxWx3 image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)
    return arr[..., :3]


def heatmap(
    values: torch.Tensor | np.ndarray, size: tuple[int, int] | None = None,
    overlay: np.ndarray | torch.Tensor | None = None, cmap: str = "inferno", vmax: float | None = None,
    alpha: float = 0.6, mode: str = "nearest",
) -> np.ndarray:
    """A (h,w) map coloured with ``cmap`` from 0 (or its minimum, if negative) to ``vmax``, enlarged to ``size``.

    With ``overlay`` the colours are blended over the photo (``alpha`` = heat weight) and ``size`` defaults to
    the photo's. A fixed ``vmax`` makes two maps comparable; by default each uses its own maximum.
    """
    v = values.detach() if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    v = torch.nan_to_num(v.to("cpu", torch.float32))
    if v.dim() != 2:
        raise ValueError(f"heatmap values must be (h, w), got {tuple(v.shape)}")
    base = _overlay_array(overlay) if overlay is not None else None
    if size is None and base is not None:
        size = base.shape[:2]
    if size is not None and tuple(size) != tuple(v.shape):
        kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
        v = F.interpolate(v[None, None], size=tuple(size), mode=mode, **kwargs)[0, 0]
    vmin = min(0.0, float(v.min()))
    top = float(v.max()) if vmax is None else float(vmax)
    unit = ((v - vmin) / (top - vmin)).clamp(0, 1) if top > vmin else torch.zeros_like(v)
    import matplotlib

    rgb = matplotlib.colormaps[cmap](unit.numpy())[..., :3]
    if base is not None:
        if base.shape[:2] != rgb.shape[:2]:
            raise ValueError(f"overlay is {base.shape[:2]} but the heat map is {rgb.shape[:2]}")
        rgb = alpha * rgb + (1 - alpha) * base.astype(np.float64) / 255.0
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def colour_bar(vmax: float, height: int, cmap: str = "inferno", width: int = 16, font_size: int = 11,
               background: int = 255) -> np.ndarray:
    """A vertical colour key for ``heatmap(..., vmax=vmax)``: ``cmap`` from 0 (bottom) to ``vmax`` (top), with the
    values written beside it at the top, middle and bottom. Why: a heat map without its scale says where, never how
    much; two maps on one bar say which is larger."""
    import matplotlib

    if not vmax > 0:
        raise ValueError(f"vmax must be > 0, got {vmax}")
    height = max(int(height), 3 * font_size)
    ramp = np.linspace(1.0, 0.0, height)[:, None].repeat(width, axis=1)
    bar = (matplotlib.colormaps[cmap](ramp)[..., :3] * 255).round().astype(np.uint8)
    font = _font(font_size)
    labels = [f"{vmax:.3g}", f"{vmax / 2:.3g}", "0"]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = int(max(probe.textlength(t, font=font) for t in labels)) + 4
    canvas = Image.new("RGB", (width + 4 + text_w, height), (background,) * 3)
    canvas.paste(Image.fromarray(bar), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for text, y in zip(labels, (0, (height - font_size) // 2, height - font_size - 2)):
        draw.text((width + 4, y), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def heatmaps_on_one_scale(
    maps: list[torch.Tensor], overlays: list[torch.Tensor | np.ndarray | None], labels: list[str], scale: int = 1,
    mode: str = "nearest", cmap: str = "inferno", font_size: int = 12,
) -> tuple[np.ndarray, list[np.ndarray], float]:
    """Several (h, w) maps coloured against ONE maximum, side by side with their labels, the colour bar on the left.

    Returns (the picture, each map's own heat map at ``scale``, the shared maximum). Why: maps each scaled to
    their own maximum look alike while their values differ by orders of magnitude; on one scale the smaller is
    visibly darker, and the bar says by how much.
    """
    if not maps or not (len(maps) == len(overlays) == len(labels)):
        raise ValueError(f"need as many overlays and labels as maps, got {len(maps)}, {len(overlays)}, {len(labels)}")
    peaks = [float(torch.nan_to_num(torch.as_tensor(m).detach().float()).max()) for m in maps]
    vmax = max(max(peaks), 0.0) or 1.0  # all zero (the no_grad mistake): one honest, empty scale
    tiles = [enlarge(heatmap(m, overlay=o, vmax=vmax, mode=mode, cmap=cmap), scale) for m, o in zip(maps, overlays)]
    pictures = grid(tiles, labels, len(tiles), font_size=font_size)
    pad = 4
    bar = colour_bar(vmax, max(t.shape[0] for t in tiles), cmap=cmap, font_size=font_size)
    top = max(pad, pictures.shape[0] - pad - bar.shape[0])  # level with the tiles (tiny tiles: a taller bar)
    # The bar on the left: gradio's buttons cover a picture's top right corner, where its top value would be.
    left = pad + bar.shape[1]
    out = np.full((max(pictures.shape[0], top + bar.shape[0] + pad), left + pictures.shape[1], 3), 255, np.uint8)
    out[top: top + bar.shape[0], pad: left] = bar
    out[: pictures.shape[0], left:] = pictures
    return out, tiles, vmax


# ------------------------------------------------------------------------------------------------ figures
def figure_to_array(fig: Figure) -> np.ndarray:
    """Render a matplotlib figure (Agg) to HxWx3 uint8."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _use_log(values: list[np.ndarray]) -> bool:
    positive = np.concatenate([v[v > 0] for v in values]) if values else np.array([])
    return positive.size > 0 and positive.max() / positive.min() >= _LOG_SPAN


# The L(t) figure's smallest text, in points at its 100 dpi: Inspect shows it across the page (~1220 CSS px of its
# 1450 at 1440x900), so 10 pt (13.9 px drawn) shows at >= 11 px; matplotlib's "small" (8.3 pt) showed at 9.7 px.
CURVE_TEXT_PT = 10


def loss_curve_figure(
    curves: LossCurves, size: tuple[float, float] = (10.0, 3.6), dpi: int = 100, note: str | None = None,
    dose: tuple[np.ndarray, str] | None = None,
) -> np.ndarray:
    """Two panels, L_nat(t) and L_sem(t): mean over seeds as a line, mean +- std as a band, one colour per pair.

    The y axis turns logarithmic when the values span two decades or more (zero values are then left out).
    ``dose`` = (the weight of every t of the schedule, its name) adds a third panel: that weight, and where the
    weighted L_nat of each pair comes from (w(t) L_nat(t)), each scaled to a maximum of 1.
    """
    from matplotlib.figure import Figure

    if dose is not None:
        size = (size[0] * 1.45, size[1])
    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    axes = fig.subplots(1, 3 if dose is not None else 2)
    t = np.asarray(curves.timesteps)
    for ax, term in zip(axes, ("nat", "sem")):
        stats = getattr(curves, term)
        log = _use_log([s.samples for s in stats.values()])
        for i, (name, s) in enumerate(stats.items()):
            colour = f"C{i}"
            lower = s.mean - s.std
            if log:
                lower = np.where(lower > 0, lower, np.nan)
            ax.fill_between(t, lower, s.mean + s.std, color=colour, alpha=0.2, linewidth=0)
            hidden = log and not np.any(s.mean > 0)  # a log axis cannot show an all-zero curve: say so
            ax.plot(t, s.mean, color=colour, marker="o", markersize=3, label=f"{name} (= 0)" if hidden else name)
        if log:
            ax.set_yscale("log", nonpositive="mask")
        title, ylabel = _TERM_LABELS[term]
        ax.set_title(title)
        ax.set_xlabel("timestep t")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=CURVE_TEXT_PT)
    if dose is not None:
        _dose_panel(axes[2], curves, *dose)
    seeds = len(curves.seeds)
    title = f"mean over {seeds} seed{'s' if seeds != 1 else ''} (band: +-1 std)"
    fig.suptitle(f"{title}, {note}" if note else title, fontsize=CURVE_TEXT_PT)
    return figure_to_array(fig)


def prior_curve_figure(curves: dict[str, dict[int, dict[str, float]]], band: tuple[int, int] | None = None,
                       size: tuple[float, float] = (10.0, 3.6), dpi: int = 100) -> np.ndarray:
    """A prior's held-out error per t (``diffloss.prior_check.band_curve``), one line per prior: eps MSE (log
    axis) and the x0 estimate's PSNR, with the band shaded and its rule's two thresholds drawn."""
    from matplotlib.figure import Figure

    from diffloss.prior_band import MAX_EPS_MSE, MIN_X0_PSNR

    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    axes = fig.subplots(1, 2)
    for i, (name, curve) in enumerate(curves.items()):
        t = sorted(curve)
        for ax, key in zip(axes, ("eps_mse", "x0_psnr")):
            ax.plot(t, [curve[k][key] for k in t], color=f"C{i}", marker="o", markersize=2, label=name)
    for ax, (key, line, title, ylabel) in zip(axes, (
            ("eps_mse", MAX_EPS_MSE, "noise-prediction error", "eps MSE (held out; log)"),
            ("x0_psnr", MIN_X0_PSNR, "one-step x0 estimate", "PSNR (dB)"))):
        if band is not None:
            ax.axvspan(band[0], band[1], color="0.85", zorder=0, label=f"band {band[0]}-{band[1]}")
        ax.axhline(line, color="0.4", linestyle="--", linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("timestep t")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=CURVE_TEXT_PT)
    axes[0].set_yscale("log")
    return figure_to_array(fig)


def _dose_panel(ax, curves: LossCurves, weights: np.ndarray, name: str) -> None:
    """The weight each t gets (zero outside the band) and each pair's weighted L_nat(t), both scaled to max 1."""
    weights = np.asarray(weights, dtype=float)
    top = weights.max() if weights.max() > 0 else 1.0
    ax.plot(np.arange(len(weights)), weights / top, color="black", linewidth=1.5, label=f"weight w(t): {name}")
    t = np.asarray(curves.timesteps)
    for i, (pair, s) in enumerate(curves.nat.items()):
        share = weights[t] * s.mean
        if share.max() > 0:
            ax.plot(t, share / share.max(), color=f"C{i}", marker="o", markersize=3, linestyle="--",
                    label=f"w(t) L_nat(t), {pair}")
    ax.set_title("Dose: the weight each t gets")
    ax.set_xlabel("timestep t")
    ax.set_ylabel("relative (max = 1)")
    ax.set_ylim(-0.03, 1.08)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=CURVE_TEXT_PT)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> str:
    """Shorten a label with '...' so it never runs into the next cell."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def enlarge(image: np.ndarray, factor: int) -> np.ndarray:
    """Each pixel repeated ``factor`` times along both axes: a small crop becomes visible without invented detail
    (nearest neighbour, so noise and h-space cells stay as sharp as they are)."""
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"factor must be a whole number >= 1, got {factor}")
    if factor == 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def fit_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """An HxWx3 uint8 picture shrunk (antialiased) so that its longer side is at most ``max_side``."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS))


def grid(
    images: list[np.ndarray], labels: list[str], columns: int, pad: int = 4, font_size: int = 12,
    background: int = 255, scale: int = 1,
) -> np.ndarray:
    """Images in a grid with a label above each (for sample sheets); cells are as large as the largest image.

    ``scale`` enlarges the images (``enlarge``), not the labels, which stay crisp at ``font_size``.
    """
    if len(images) != len(labels):
        raise ValueError(f"got {len(images)} images but {len(labels)} labels")
    if not images:
        raise ValueError("grid needs at least one image")
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    arrays = [enlarge(_overlay_array(im), scale) for im in images]
    cell_h = max(a.shape[0] for a in arrays)
    cell_w = max(a.shape[1] for a in arrays)
    label_h = font_size + 4
    columns = min(columns, len(arrays))
    rows = -(-len(arrays) // columns)
    height = rows * (label_h + cell_h) + (rows + 1) * pad
    width = columns * cell_w + (columns + 1) * pad
    canvas = Image.new("RGB", (width, height), (background,) * 3)
    draw = ImageDraw.Draw(canvas)
    font = _font(font_size)
    for i, (arr, label) in enumerate(zip(arrays, labels)):
        r, c = divmod(i, columns)
        x = pad + c * (cell_w + pad)
        y = pad + r * (label_h + cell_h + pad)
        draw.text((x, y), _fit(draw, str(label), font, cell_w), fill=(0, 0, 0), font=font)
        top = y + label_h + (cell_h - arr.shape[0]) // 2
        left = x + (cell_w - arr.shape[1]) // 2
        canvas.paste(Image.fromarray(np.ascontiguousarray(arr)), (left, top))
    return np.asarray(canvas)
