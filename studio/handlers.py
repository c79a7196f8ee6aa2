"""The studio's work, one function per button: plain values in (paths, numbers, labels), plain values out.

Images go out as HxWx3 uint8 numpy arrays, text as markdown. Bad input raises ``gr.Error`` with a message a
person can act on; recoverable oddities (a huge upload downscaled, an image too small for NIQE) come back as
notes beside the result and as ``gr.Warning`` toasts.
"""

from __future__ import annotations

import functools
from concurrent.futures import Future, ThreadPoolExecutor
import math
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import gradio as gr
import numpy as np
import torch
from PIL import Image

from diffloss import degrade, nets, side_by_side
from diffloss.checkpoint import MODEL_FILE, CheckpointError
from diffloss.images import ImageLoadError, centre_crop, image_size, load_image, to_uint8_numpy
from diffloss.inspection import (
    PairInspection, best_separation, default_timesteps, inspect_pair, loss_curves, purification,
)
from diffloss.loss import DiffLossConfig
from diffloss.metrics import CONVENTIONS, full_reference_metrics, load_lpips, no_reference_metrics
from diffloss.niqe import min_side as niqe_min_side
from diffloss.prior import PriorLoadError
from diffloss.viz import (
    enlarge, heatmap, loss_curve_figure, pca_basis, pca_rgb, shared_scale, signed_to_image, to_image,
)
from diffloss.viz import grid as image_grid
from studio import cards
from studio.memo import Memo, file_stamp
from studio.models import REPO, Registry, RestorerEntry, get_registry, is_degraded_example
from studio.plots import training_figure

MAX_SIDE = 1024 if not torch.cuda.is_available() else 2048  # longer side of an upload, after downscaling
MAX_SIDE_SR4_INPUT = MAX_SIDE // 4  # an already-low-res sr4 input is upscaled 4x by the restorer
MIN_SIDE = 16  # below this a restorer has nothing to work with
TILE = 512  # restore larger images in overlapping tiles (bounded memory)
# Inspect works on a centre crop: every view is a few prior forwards (and one backward), and with the "small"
# prior one 256x256 forward took ~1.1 s on a busy 2-core CPU, so the CPU default is 128 px.
INSPECT_SIDE = 256 if torch.cuda.is_available() else 128
INSPECT_MAX_SIDE = 512 if torch.cuda.is_available() else 256
DISPLAY_SIDE = 256  # Inspect's pictures are shown at least this large: a 128 px crop's pixels twice over
CURVE_POINTS = 8  # timesteps on the L(t) plot
CURVE_SIDE = 128 if torch.cuda.is_available() else 64  # the curve's crop: 8 x 3 x 3 prior passes must stay quick
MODES = ("degrade it for me", "it is already degraded")
PAIRS = ("restored vs ground truth", "degraded vs ground truth")

_COLOUR_NOTES = {
    "L": "greyscale: shown as RGB (three equal channels)",
    "LA": "greyscale with transparency: composited over white, shown as RGB",
    "I;16": "16-bit greyscale: kept at 16-bit precision, shown as RGB",
    "I;16B": "16-bit greyscale: kept at 16-bit precision, shown as RGB",
    "I": "32-bit integer greyscale: scaled to [0,1], shown as RGB",
    "F": "floating-point greyscale: scaled to [0,1], shown as RGB",
    "RGBA": "transparency composited over white",
    "P": "palette image converted to RGB",
    "CMYK": "CMYK converted to RGB",
}


def _warn(message: str) -> None:
    """A toast in the browser; a no-op warning outside a request (tests, scripts)."""
    try:
        gr.Warning(message)
    except Exception:  # noqa: BLE001  (gradio versions differ in what they do outside a request)
        pass


# ------------------------------------------------------------------------------------------------ input
@dataclass
class Case:
    """One image to restore: what is shown as the degraded input, what the net gets, and the truth if known."""

    task: str
    shown: torch.Tensor  # (3,H,W) degraded input at the output's size (sr4: bicubic upsampled)
    net_input: torch.Tensor  # (C,H,W)
    gt: torch.Tensor | None  # (3,H,W) or None for an already-degraded upload
    notes: list[str] = field(default_factory=list)


def describe_upload(path: str | Path) -> list[str]:
    """Notes on what loading will change about a file (colour mode, EXIF rotation); never raises."""
    notes = []
    try:
        with Image.open(path) as img:
            mode_note = _COLOUR_NOTES.get(img.mode)
            if mode_note is None and "transparency" in img.info:
                mode_note = "transparency composited over white"
            if mode_note:
                notes.append(mode_note)
            orientation = img.getexif().get(0x0112, 1)
            if orientation not in (None, 1):
                notes.append(f"EXIF orientation {orientation}: rotated upright as a viewer shows it")
    except Exception:  # noqa: BLE001  (load_image reports unreadable files with their name)
        pass
    return notes


def load_upload(path: str | Path | None, max_side: int = MAX_SIDE) -> tuple[torch.Tensor, list[str]]:
    """(3,H,W) in [0,1] and notes; gr.Error for a missing, corrupt or too small image."""
    if path is None or str(path) == "":
        raise gr.Error("Upload an image or pick an example first.")
    name = Path(path).name
    try:
        width, height = image_size(path)
        image = load_image(path, max_side=max_side)
    except FileNotFoundError as err:
        raise gr.Error(f"The file {name} is gone (uploads expire): upload it again.") from err
    except ImageLoadError as err:
        raise gr.Error(f"Could not read {name} as an image: {err}") from err
    notes = describe_upload(path)
    if max(width, height) > max_side:
        h, w = image.shape[-2:]
        notes.append(f"large image {width}x{height} downscaled to {w}x{h} (at most {max_side} px on the longer side)")
    h, w = image.shape[-2:]
    if min(h, w) < MIN_SIDE:
        raise gr.Error(f"{name} is {w}x{h} px: too small to restore (needs at least {MIN_SIDE} px on each side).")
    return image, notes


def prepare_case(path: str | Path | None, task: str, mode: str, seed: int) -> Case:
    """Load an upload and make (input, net input, ground truth) for a task, degrading it or taking it as it is."""
    try:
        spec = degrade.get_task(task)
    except ValueError as err:
        raise gr.Error(str(err)) from err
    if mode not in MODES:
        raise gr.Error(f"Choose one of: {', '.join(MODES)}.")
    already = mode == MODES[1]
    limit = MAX_SIDE_SR4_INPUT if already and task == "sr4" else MAX_SIDE
    image, notes = load_upload(path, limit)
    if already:
        if task == "inpaint":
            raise gr.Error("Inpainting an already-degraded photo needs a hole mask, which the studio cannot take yet "
                           "(not yet): choose 'degrade it for me' to get a photo with known holes.")
        net_input = degrade.prepare_input(task, image)
        return Case(task, net_input[:3].clamp(0, 1), net_input, None, notes)
    try:
        clean = degrade.crop_to_multiple(image, spec.size_multiple)
    except ValueError as err:
        raise gr.Error(str(err)) from err
    pair = degrade.make_pair(task, clean, int(seed))
    shown = pair.net_input[0, :3].clamp(0, 1)
    return Case(task, shown, pair.net_input[0], clean, notes)


# ------------------------------------------------------------------------------------------------ models
def restorer_choices(task: str, registry: Registry | None = None) -> tuple[list[str], str | None, str | None]:
    """Dropdown choices for a task and the labels to preselect for the L2 and DiffLoss arms."""
    reg = registry or get_registry()
    labels = [e.label for e in reg.restorers(task)]
    l2, dl = reg.default_pair(task)
    return labels, l2 or (labels[0] if labels else None), dl or (labels[-1] if labels else None)


def trained_pair_choices(task: str, registry: Registry | None = None) -> tuple[list[str], str | None, str | None]:
    """Like ``restorer_choices``, but the newest Train-tab run's two arms preselected (runs are listed newest
    first): after training, Compare shows what was just trained, not the shipped pair."""
    reg = registry or get_registry()
    labels, l2, dl = restorer_choices(task, reg)
    runs = [e for e in reg.restorers(task) if e.source == "run"]
    newest = {arm: next((e.label for e in runs if e.arm == arm), None) for arm in ("l2", "diffloss")}
    return labels, newest["l2"] or l2, newest["diffloss"] or dl


FRESH_START = "a fresh restorer (the identity)"


def start_choices(task: str, registry: Registry | None = None) -> tuple[list[str], str]:
    """The Train tab's "Start from" choices for a task and the one to preselect: the task's first L2 arm when there
    is one (fine-tuning, as the paper and the zoo do: a few hundred CPU steps from scratch teach little), else a
    fresh restorer."""
    reg = registry or get_registry()
    l2, _ = reg.default_pair(task)
    return [FRESH_START, *(e.label for e in reg.restorers(task))], l2 or FRESH_START


def _start_entry(start: str | None, task: str, registry: Registry) -> RestorerEntry | None:
    """The restorer both arms start from (None: a fresh one)."""
    if not start or start == FRESH_START:
        return None
    return _restorer_entry(start, task, "start of both arms", registry)


def _restorer_entry(label: str | None, task: str, arm_name: str, registry: Registry) -> RestorerEntry:
    """The registry entry behind a dropdown label, or a gr.Error that says what to do."""
    if not label:
        raise gr.Error(
            f"No restorer chosen for the {arm_name} (and none found for task '{task}'). No shipped restorers yet: "
            "train a pair in the Train tab, or build the pretrained zoo (see the README)."
        )
    entry = registry.find(label, task)
    if entry is None:
        raise gr.Error(f"'{label}' is not a restorer for task '{task}' (press Refresh to update the list).")
    return entry


def _load_restorer(entry: RestorerEntry, registry: Registry) -> nets.Restorer:
    try:
        return registry.load_restorer(entry.path)
    except CheckpointError as err:
        raise gr.Error(f"Cannot load {entry.label}: {err}") from err


def _restorer(label: str | None, task: str, arm_name: str, registry: Registry) -> nets.Restorer:
    return _load_restorer(_restorer_entry(label, task, arm_name, registry), registry)


def _prior(source: str | None, registry: Registry):
    try:
        return registry.load_prior(source)
    except PriorLoadError as err:
        raise gr.Error(f"Prior not loadable: {err}") from err


def run_restorer(model: nets.Restorer, net_input: torch.Tensor) -> torch.Tensor:
    """Restore one image; tiled when it is large so memory stays bounded on a CPU."""
    if model.config.in_channels != net_input.shape[0]:
        raise gr.Error(f"This restorer takes {model.config.in_channels} channels but the task gives "
                       f"{net_input.shape[0]}: pick a restorer trained for this task.")
    tile = TILE if max(net_input.shape[-2:]) > TILE else None
    return nets.restore(model, net_input, tile=tile).cpu()


# ------------------------------------------------------------------------------------------------ compare
@functools.lru_cache(maxsize=1)
def lpips_metric():
    """(fn, reason): LPIPS loads once per process, offline only (see diffloss.metrics.load_lpips)."""
    return load_lpips()


@functools.lru_cache(maxsize=1)
def _metrics_pool() -> ThreadPoolExecutor:
    """Threads for the metrics table, created once per process (at most as many as torch may use)."""
    return ThreadPoolExecutor(max_workers=max(1, min(4, torch.get_num_threads())), thread_name_prefix="metrics")


def _fmt(value: float | None, digits: int, missing: str) -> str:
    if value is None:
        return missing
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


@dataclass
class PendingMetrics:
    """One image's metrics being computed on the metrics threads; ``result()`` waits for both halves."""

    full_reference: Future
    no_reference: Future

    def result(self) -> dict[str, float | None]:
        return {**self.full_reference.result(), **self.no_reference.result()}


def start_metrics(img: torch.Tensor, gt: torch.Tensor | None) -> PendingMetrics:
    """Begin one image's metrics in the background, SSIM/PSNR and NIQE as two jobs.

    Why threads: their scipy filters release the GIL, so the jobs run beside each other and beside the restorers'
    forwards; on 2 cores this is what keeps Compare on a 512 px image under a second.
    """
    pool = _metrics_pool()
    lp_fn, _ = lpips_metric()
    return PendingMetrics(pool.submit(full_reference_metrics, img, gt, lp_fn), pool.submit(no_reference_metrics, img))


def metrics_table(rows: dict[str, PendingMetrics], gt: torch.Tensor | None, size: tuple[int, int]) -> str:
    """Markdown table of PSNR/SSIM/NIQE/LPIPS for each named image (its :func:`start_metrics`, begun earlier to
    overlap other work), then the conventions line and any gaps; ``size`` is the images' (H, W)."""
    lp_fn, lp_reason = lpips_metric()
    results = {name: pending.result() for name, pending in rows.items()}
    h, w = size
    niqe_min = niqe_min_side()
    small = min(h, w) < niqe_min
    niqe_missing = f"n/a (< {niqe_min} px)" if small else "n/a (flat image)"
    lines = ["| image | PSNR (dB) ↑ | SSIM ↑ | NIQE ↓ | LPIPS ↓ |", "| --- | --- | --- | --- | --- |"]
    for name, m in results.items():
        no_ref = "n/a (no ground truth)"
        lines.append(
            f"| {name} | {_fmt(m['psnr'], 2, no_ref)} | {_fmt(m['ssim'], 4, no_ref)} | "
            f"{_fmt(m['niqe'], 2, niqe_missing)} | {_fmt(m['lpips'], 4, no_ref if gt is None else 'unavailable')} |"
        )
    notes = [f"Conventions: {CONVENTIONS}."]
    if small:
        notes.append(f"NIQE needs at least {niqe_min}x{niqe_min} px; this image is {w}x{h}.")
    if lp_fn is None and gt is not None:
        notes.append(lp_reason + ".")
    return "\n".join(lines) + "\n\n" + " ".join(notes)


def zoom_crops(images: dict[str, torch.Tensor], x: float, y: float, size: int = 64, scale: int = 3) -> np.ndarray:
    """The same square of every image around the point (x, y) (fractions of width and height), enlarged.

    Nearest-neighbour enlargement, so what is seen is the pixels themselves, not an interpolation of them.
    """
    first = next(iter(images.values()))
    h, w = first.shape[-2:]
    side = max(4, min(int(size), h, w))
    cx, cy = float(np.clip(x, 0, 1)) * w, float(np.clip(y, 0, 1)) * h
    left = int(np.clip(round(cx - side / 2), 0, w - side))
    top = int(np.clip(round(cy - side / 2), 0, h - side))
    crops = []
    for img in images.values():
        arr = to_uint8_numpy(img[..., top:top + side, left:left + side])
        crops.append(np.repeat(np.repeat(arr, scale, axis=0), scale, axis=1))
    return image_grid(crops, list(images), columns=len(crops))


def error_maps(outputs: dict[str, torch.Tensor], gt: torch.Tensor) -> np.ndarray:
    """|output - gt| (mean over channels) of each arm on one shared colour scale, over the ground truth."""
    errs = {name: (out - gt).abs().mean(dim=0) for name, out in outputs.items()}
    vmax = max(float(e.max()) for e in errs.values()) or 1.0
    maps = [heatmap(e, overlay=gt, vmax=vmax, alpha=0.75) for e in errs.values()]
    labels = [f"{name}: mean |error| {float(e.mean()):.4f}" for name, e in errs.items()]
    return image_grid(maps, labels, columns=len(maps))


@dataclass
class CompareResult:
    degraded: np.ndarray
    l2: np.ndarray
    diffloss: np.ndarray
    slider: tuple[np.ndarray, np.ndarray]
    zoom: np.ndarray
    error_map: np.ndarray | None
    metrics: str
    notes: str

    def as_tuple(self) -> tuple:
        return (self.degraded, self.l2, self.diffloss, self.slider, self.zoom, self.error_map, self.metrics, self.notes)


def compare(
    image: str | None, task: str, mode: str, seed: float, l2_label: str | None, dl_label: str | None,
    zoom_x: float = 0.5, zoom_y: float = 0.5, zoom_size: float = 64, registry: Registry | None = None,
) -> CompareResult:
    """Restore one image with the L2 arm and the DiffLoss arm; pictures, error maps and metrics of both."""
    reg = registry or get_registry()
    m_l2 = _restorer(l2_label, task, "L2 arm", reg)
    m_dl = _restorer(dl_label, task, "DiffLoss arm", reg)
    case = prepare_case(image, task, mode, int(seed or 0))
    input_metrics = start_metrics(case.shown, case.gt)  # overlaps the two restorers' forwards

    def l2_arm() -> tuple[torch.Tensor, PendingMetrics]:
        z = run_restorer(m_l2, case.net_input)
        return z, start_metrics(z, case.gt)  # overlaps the rest of the DiffLoss arm's restore

    # The arms are independent: on a CPU they restore side by side (both took 0.61 s instead of 0.94 s at 512 px).
    (z_l2, l2_metrics), z_dl = side_by_side.run(reg.device, l2_arm, lambda: run_restorer(m_dl, case.net_input))
    dl_metrics = start_metrics(z_dl, case.gt)  # overlaps the pictures below
    shown = {"degraded input": case.shown, "L2 arm": z_l2, "DiffLoss arm": z_dl}
    if case.gt is not None:
        shown["ground truth"] = case.gt
    zoom = zoom_crops(shown, zoom_x, zoom_y, int(zoom_size))
    err = error_maps({"L2 arm": z_l2, "DiffLoss arm": z_dl}, case.gt) if case.gt is not None else None
    table = metrics_table({"degraded input": input_metrics, "L2 arm": l2_metrics, "DiffLoss arm": dl_metrics}, case.gt,
                          size=tuple(case.shown.shape[-2:]))
    h, w = case.shown.shape[-2:]
    notes = [f"{task}: {degrade.get_task(task).description} Output {w}x{h} px."] + case.notes
    if case.gt is None:
        notes.append("No ground truth (already degraded): PSNR, SSIM, LPIPS and the error map need one.")
    for note in case.notes:
        _warn(note)
    l2_img, dl_img = to_uint8_numpy(z_l2), to_uint8_numpy(z_dl)
    return CompareResult(
        degraded=to_uint8_numpy(case.shown), l2=l2_img, diffloss=dl_img, slider=(l2_img, dl_img), zoom=zoom,
        error_map=err, metrics=table, notes="\n".join(f"- {n}" for n in notes),
    )


def describe_pair(task: str, l2_label: str | None, dl_label: str | None, registry: Registry | None = None) -> str:
    """How the two chosen restorers were trained (their cards) and what the zoo measured for them (markdown)."""
    reg = registry or get_registry()
    report = reg.report()
    parts, starts = [], []
    for arm_name, label in (("L2 arm", l2_label), ("DiffLoss arm", dl_label)):
        entry = reg.find(label, task) if label else None
        if entry is None:
            parts.append(f"**{arm_name}**: none chosen for {task}.")
            continue
        card = reg.card(entry)
        starts.append(((card or {}).get("data") or {}).get("init"))
        measured = cards.measured_lines(cards.measured_rows(report, task, entry.path))
        parts.append("\n".join([f"**{arm_name}**: `{entry.label}`", *cards.training_lines(card, REPO)]
                               + (["- measured by `python -m diffloss.zoo report` (pretrained/REPORT.md):", *measured]
                                  if measured else [])))
    if len(starts) == 2 and starts[0] and starts[0] == starts[1]:
        parts.append("Both arms started from the same weights; their cards differ only where the loss does.")
    return "\n\n".join(parts)


EVAL_SIDE = 512 if torch.cuda.is_available() else 256  # longer side of each validation photo in Evaluate


def evaluate_pair(
    task: str, l2_label: str | None, dl_label: str | None, photos: float = 8, registry: Registry | None = None,
    progress: gr.Progress = gr.Progress(),
) -> str:
    """Both arms (and the degraded input) on clean validation photos degraded for the task: mean metrics, per-image
    wins and a verdict (``diffloss.evaluate``, as the zoo report measures). One photo is an anecdote; this is the
    number a comparison should rest on. Photo i is degraded with seed i, so a re-run gives the same numbers."""
    from diffloss.evaluate import EvalSource, evaluate
    from diffloss.zoo_report import HIGHER_IS_BETTER, verdict, wins

    reg = registry or get_registry()
    entries = {arm: _restorer_entry(label, task, name, reg)
               for arm, label, name in (("l2", l2_label, "L2 arm"), ("diffloss", dl_label, "DiffLoss arm"))}
    files = reg.calibration_images()[: max(1, min(int(photos), 64))]
    if not files:
        raise gr.Error("No clean validation photos to evaluate on: put the benchmark's clean/val beside the repo "
                       "(or point DIFFLOSS_DATASETS at it), or add clean_*.png photos to examples/.")
    source = EvalSource(mode="synthetic", root=files[0].parent, task=task, limit=len(files), max_side=EVAL_SIDE,
                        include=tuple(f.name for f in files))

    def tick(done: int, total: int, name: str) -> None:
        progress((done, total), desc=f"evaluating {name}" if name else "done")

    try:
        report = evaluate({arm: e.path for arm, e in entries.items()}, source, tile=TILE, progress=tick)
    except (ValueError, CheckpointError, ImageLoadError, OSError) as err:
        raise gr.Error(f"Cannot evaluate: {err}") from err
    table = report.to_markdown(standalone=False)
    counts = [f"{m.upper()} {w}/{n}" for m in HIGHER_IS_BETTER for w, n in [wins(report, m)] if n]
    return "\n".join([
        f"`l2` = {entries['l2'].label}, `diffloss` = {entries['diffloss'].label}. " + table,
        f"DiffLoss arm better than the L2 arm on: {', '.join(counts) or 'n/a'} images. {verdict(report)}",
    ])


# ------------------------------------------------------------------------------------------------ inspect
@dataclass(frozen=True)
class InspectCase:
    """The crops one Inspect setting looks at; shared between calls through ``CASES``, so never changed in place."""

    a: torch.Tensor  # restored or degraded, (3,H,W)
    b: torch.Tensor  # ground truth
    restored: torch.Tensor | None
    degraded: torch.Tensor
    notes: tuple[str, ...]
    key: tuple  # what it was made from (files by size and time): the prior passes are remembered under it


# The last few cases and prior passes (see studio/memo.py): moving t re-runs only the prior, new weights nothing.
CASES: Memo[InspectCase] = Memo(8)
PASSES: Memo[PairInspection] = Memo(16)


def inspect_case(
    image: str | None, task: str, seed: int, restorer_label: str | None, pair: str, registry: Registry,
    side: int = INSPECT_SIDE,
) -> InspectCase:
    """The pair the prior looks at, on a centre crop of at most ``side`` px (ground truth is needed)."""
    if pair not in PAIRS:
        raise gr.Error(f"Choose one of: {', '.join(PAIRS)}.")
    side = max(16, min(int(side or INSPECT_SIDE), INSPECT_MAX_SIDE))
    entry = registry.find(restorer_label, task) if restorer_label else None
    # The registry itself, not its id(): a key keeps its objects alive, so an id can never be reused under it.
    key = (file_stamp(image), task, int(seed), restorer_label,
           file_stamp(entry.path / MODEL_FILE) if entry else None, pair, side, registry)

    def make() -> InspectCase:
        case = prepare_case(image, task, MODES[0], int(seed))
        gt, shown, net_input = (centre_crop(x, side) for x in (case.gt, case.shown, case.net_input))
        notes = list(case.notes)
        if max(case.gt.shape[-2:]) > side:
            notes.append(f"Inspect looks at the centre {gt.shape[-1]}x{gt.shape[-2]} px (at most {side} px per side).")
        # The restored image is needed for its pair, and by the L(t) curves whenever a restorer is chosen.
        restored, found = None, entry
        if pair == PAIRS[0] and found is None:
            found = _restorer_entry(restorer_label, task, "restored image", registry)  # says why there is none
        if found is not None:
            restored = run_restorer(_load_restorer(found, registry), net_input)
        a = restored if pair == PAIRS[0] else shown
        return InspectCase(a=a, b=gt, restored=restored, degraded=shown, notes=tuple(notes), key=key)

    return CASES.get(key, make)


def display_scale(height: int, width: int) -> int:
    """Whole-number enlargement that shows a crop at about ``DISPLAY_SIDE`` px (1 for crops that large)."""
    return max(1, DISPLAY_SIDE // max(height, width, 1))


def _check_t(t: float, prior) -> int:
    last = prior.num_timesteps - 1
    t = int(t)
    if not 0 <= t <= last:
        clamped = min(max(t, 0), last)
        _warn(f"t={t} is outside this prior's schedule [0, {last}]; using t={clamped}.")
        return clamped
    return t


@dataclass
class InspectResult:
    x_t: np.ndarray
    eps: np.ndarray
    x0: np.ndarray
    h_pca: np.ndarray
    h_error: np.ndarray
    gradient: np.ndarray
    values: str

    def as_tuple(self) -> tuple:
        return (self.x_t, self.eps, self.x0, self.h_pca, self.h_error, self.gradient, self.values)


def inspect(
    image: str | None, task: str, seed_image: float, restorer_label: str | None, pair: str, t: float, seed: float,
    prior_source: str | None, released_bug: bool = False, gamma: float = 0.05, lam: float = 0.1,
    side: float = INSPECT_SIDE, registry: Registry | None = None,
) -> InspectResult:
    """What the prior sees of (a, ground truth) at one (t, eps): x_t, eps_hat, x0, h maps, terms, gradient on a."""
    reg = registry or get_registry()
    prior = _prior(prior_source, reg)
    case = inspect_case(image, task, int(seed_image or 0), restorer_label, pair, reg, int(side or INSPECT_SIDE))
    t = _check_t(t, prior)
    seed = int(seed or 0)
    config = DiffLossConfig(gamma=float(gamma), lam=float(lam), detach_prior=bool(released_bug))
    try:
        config.validate(prior.num_timesteps)
    except ValueError as err:
        raise gr.Error(str(err)) from err
    # One prior pass per image serves every view; it is remembered without the weights, which only scale it.
    p = PASSES.get((case.key, prior, t, seed, config.detach_prior),
                   lambda: inspect_pair(prior, case.a, case.b, t, seed, config=config))
    g = p.term_grads.weighted(config.gamma, config.lam)
    name_a = "restored" if pair == PAIRS[0] else "degraded"
    h, w = case.b.shape[-2:]
    k = display_scale(h, w)
    x_t = image_grid([to_image(p.x_t_a), to_image(p.x_t_b)], [f"x_t {name_a}", "x_t GT"], 2, scale=k)
    scale = shared_scale(p.eps_hat_a, p.eps_hat_b)
    eps = image_grid(
        [signed_to_image(p.eps_hat_a, scale), signed_to_image(p.eps_hat_b, scale), signed_to_image(p.eps_hat_diff)],
        [f"eps_hat {name_a}", "eps_hat GT", "difference"], 3, scale=k)
    x0 = image_grid([to_image(p.x0_a), to_image(p.x0_b)], [f"x0 {name_a}", "x0 GT"], 2, scale=k)
    basis = pca_basis(p.h_a, p.h_b)
    pca = image_grid([pca_rgb(p.h_a, basis, size=(h, w))[0], pca_rgb(p.h_b, basis, size=(h, w))[0]],
                     [f"h {name_a}", "h GT"], 2, scale=k)
    h_err = enlarge(heatmap(p.h_error, overlay=case.b, mode="bilinear"), k)
    grad = enlarge(heatmap(g.magnitude, overlay=case.a), k)
    weighted = config.gamma * (p.l_nat + config.lam * p.l_sem)
    if released_bug:
        push = (f"Gradient norm **{g.norm:.3g}**: with the released code's `torch.no_grad()` the prior terms are "
                "computed but send **exactly zero** gradient to the restorer.")
    else:
        push = f"Gradient norm of gamma*(L_nat + lambda*L_sem) on the {name_a} image: **{g.norm:.4g}**."
    shares = ", ".join(f"{k} {v:.1%}" for k, v in g.grad_share.items()) if g.grad_share else "n/a"
    values = "\n".join([
        f"t = {t} of {prior.num_timesteps - 1}, seed {seed}, pair: {pair}, prior: `{prior.source}`",
        "",
        f"- L_nat = **{p.l_nat:.5g}** (mean squared difference of the two noise predictions)",
        f"- L_sem = **{p.l_sem:.5g}** (mean squared difference of the two h-space maps)",
        f"- gamma*(L_nat + lambda*L_sem) = {weighted:.4g} (gamma {config.gamma:g}, lambda {config.lam:g})",
        f"- {push}",
        f"- share of the gradient on the image (fidelity/nat/sem): {shares}",
    ] + [f"- {n}" for n in case.notes])
    return InspectResult(x_t=x_t, eps=eps, x0=x0, h_pca=pca, h_error=h_err, gradient=grad, values=values)


def inspect_curves(
    image: str | None, task: str, seed_image: float, restorer_label: str | None, prior_source: str | None,
    seeds: float = 3, side: float = CURVE_SIDE, registry: Registry | None = None,
) -> tuple[np.ndarray, str]:
    """L_nat(t), L_sem(t) for restored-vs-GT (when a restorer is chosen) and degraded-vs-GT, mean and band; and
    what to read off them: where each term tells the restored image from the degraded one best."""
    reg = registry or get_registry()
    prior = _prior(prior_source, reg)
    case = inspect_case(image, task, int(seed_image or 0), restorer_label, PAIRS[1], reg, int(side or CURVE_SIDE))
    pairs = {}
    if case.restored is not None:
        pairs["restored vs GT"] = (case.restored, case.b)
    pairs["degraded vs GT"] = (case.degraded, case.b)
    steps = default_timesteps(prior.num_timesteps, CURVE_POINTS)
    curves = loss_curves(prior, pairs, timesteps=steps, seeds=tuple(range(max(1, min(int(seeds), 8)))))
    h, w = case.b.shape[-2:]
    return loss_curve_figure(curves, note=f"{w}x{h} px centre crop"), curves_reading(curves)


def curves_reading(curves) -> str:
    """The L(t) plot in words, for a learner: at which t each term separates degraded from restored, how much."""
    if "restored vs GT" not in curves.nat:
        return "Choose a restorer to see where the prior tells a restored image from the degraded one."
    best = best_separation(curves, "restored vs GT", "degraded vs GT")
    lines = []
    for term, name in (("nat", "L_nat"), ("sem", "L_sem")):
        b = best[term]
        if b.ratio <= 1:
            lines.append(f"- {name} does not tell them apart: at no t does the restored image score closer to the "
                         "ground truth than the degraded one.")
            continue
        how = "infinitely" if math.isinf(b.ratio) else f"{b.ratio:.3g}x"
        verdict = ("apart beyond the seeds' spread" if b.apart
                   else "within the seeds' spread: more seeds, or no signal at this crop")
        lines.append(f"- {name} tells them apart best at **t = {b.t}**: the degraded image scores {how} the restored "
                     f"one's ({verdict}).")
    return "\n".join(lines)


def inspect_purify(
    image: str | None, task: str, seed_image: float, restorer_label: str | None, pair: str, t: float, seed: float,
    prior_source: str | None, steps: float = 10, side: float = INSPECT_SIDE, registry: Registry | None = None,
) -> np.ndarray:
    """The few-step DDIM round trip from t, for the compared image and the ground truth (same noise)."""
    reg = registry or get_registry()
    prior = _prior(prior_source, reg)
    case = inspect_case(image, task, int(seed_image or 0), restorer_label, pair, reg, int(side or INSPECT_SIDE))
    t = _check_t(t, prior)
    steps = max(1, min(int(steps), 50))
    out = purification(prior, {"a": case.a, "gt": case.b}, t, steps, int(seed or 0))
    name_a = "restored" if pair == PAIRS[0] else "degraded"
    return image_grid(
        [to_image(case.a), to_image(out["a"]), to_image(case.b), to_image(out["gt"])],
        [name_a, f"{name_a} purified from t={t}", "ground truth", f"ground truth purified ({steps} DDIM steps)"], 4,
        scale=display_scale(*case.b.shape[-2:]))


# ------------------------------------------------------------------------------------------------ train
CPU_CAPS = {"steps": 300, "batch": 8, "crop": 128}
GPU_CAPS = {"steps": 5000, "batch": 32, "crop": 256}
_TRAIN_LOCK = threading.Lock()
_STOP = threading.Event()


def train_caps() -> dict[str, int]:
    return GPU_CAPS if torch.cuda.is_available() else CPU_CAPS


def _train_t_range(t_min: float, t_max: float, prior) -> dict[str, int]:
    """The Train tab's t range as DiffLossConfig fields: t max is clipped to the prior's schedule (its box says so),
    t min is taken as typed (DiffLossConfig.validate refuses one beyond it)."""
    return {"t_min": int(t_min), "t_max": min(int(t_max), prior.num_timesteps - 1)}


CALIBRATION_PHOTOS = 8  # clean validation photos per calibration: a second or two at 64 px on 2 CPU cores


def calibrate_weights(
    task: str, crop: float, t_min: float, t_max: float, prior_source: str | None, gamma: float, lam: float,
    nat_share: float = 0.2, sem_share: float = 0.1, start: str | None = None, photos: int = CALIBRATION_PHOTOS,
    registry: Registry | None = None,
) -> tuple[float, float, str]:
    """(gamma, lambda, report): the weights that give L_nat and L_sem the requested shares of the gradient as a
    Train run starts, and the shares the weights typed so far would give (``diffloss.calibrate``).

    Why here: a weight means nothing without the gradient scale of the prior it multiplies (the released 1e-3
    leaves a small prior a fraction of a percent), so the Train tab measures it instead of asking for a guess.
    Measured on clean validation photos, never the training folder, degraded for the task and restored by what
    both arms start from (``start``: a restorer label, or a fresh restorer, the identity): their step 0.
    """
    from diffloss.calibrate import calibrate, shares_for_weights
    from diffloss.train import new_restorer_config

    reg = registry or get_registry()
    try:
        degrade.get_task(task)
    except ValueError as err:
        raise gr.Error(str(err)) from err
    entry = _start_entry(start, task, reg)
    prior = _prior(prior_source, reg)
    files = reg.calibration_images()[: max(1, int(photos))]
    images = []
    for path in files:
        try:
            images.append(load_image(path, max_side=MAX_SIDE))
        except (ImageLoadError, OSError) as err:
            _warn(f"Calibration skips {path.name}: {err}")
    if not images:
        raise gr.Error("No clean validation photos to calibrate on: put the benchmark's clean/val beside the repo "
                       "(or point DIFFLOSS_DATASETS at it), or add clean_*.png photos to examples/.")
    side = max(16, min(int(crop), train_caps()["crop"]))
    config = DiffLossConfig(**_train_t_range(t_min, t_max, prior))
    try:
        lo, hi = config.validate(prior.num_timesteps)
        model = _load_restorer(entry, reg) if entry else nets.Restorer(new_restorer_config(task)).to(prior.device)
        result = calibrate(prior, model, task, images, float(nat_share),
                           float(sem_share), side, config=config)
    except ValueError as err:
        raise gr.Error(f"Cannot calibrate: {err}") from err
    new_gamma, new_lam = float(f"{result.gamma:.4g}"), float(f"{result.lam:.4g}")

    def shares(g: float, lmb: float) -> str:
        s = shares_for_weights(result.norms, g, lmb)
        return f"fidelity {s['fidelity']:.1%}, L_nat {s['nat']:.1%}, L_sem {s['sem']:.2%}"

    n = result.norms
    report = "\n".join([
        f"Measured on {len(images)} clean photos from `{files[0].parent}`: {side} px centre crops degraded for "
        f"{task}, t drawn in [{lo}, {hi}], one t and noise per photo, restored by "
        f"{f'`{entry.label}`' if entry else 'a fresh restorer (the identity)'}, where both arms start.",
        "",
        f"- gradient norm on the image per unit weight: fidelity {n['fidelity']:.3g}, L_nat {n['nat']:.3g}, "
        f"L_sem {n['sem']:.3g}",
        f"- your weights (gamma {float(gamma):g}, lambda {float(lam):g}) give {shares(float(gamma), float(lam))}",
        f"- **calibrated** for L_nat {float(nat_share):.0%} and L_sem {float(sem_share):.0%}: gamma **{new_gamma:g}**, "
        f"lambda **{new_lam:g}** (now set above; they give {shares(new_gamma, new_lam)})",
        "",
        "Shares move as the restorer learns, and a few photos give a rough estimate: calibrate again to see its "
        "spread.",
    ])
    return new_gamma, new_lam, report


def request_stop() -> str:
    """Ask the running Train job to stop at its next step (it saves a checkpoint and keeps what it has)."""
    _STOP.set()
    return "Stopping after the current step..."


def _zip_models(run_dir: Path) -> Path:
    """run_dir/<name>.zip holding l2/model and diffloss/model (safetensors + config + card)."""
    staging = run_dir / "_download"
    if staging.exists():
        shutil.rmtree(staging)
    for arm in ("l2", "diffloss"):
        if (run_dir / arm / "model").is_dir():
            shutil.copytree(run_dir / arm / "model", staging / arm)
    archive = shutil.make_archive(str(run_dir / run_dir.name), "zip", root_dir=staging)
    shutil.rmtree(staging)
    return Path(archive)


def _status(history: dict, totals: dict, name: str, notes: list[str], state: str) -> str:
    parts = [f"**{state}** run `{name}`"]
    for arm, points in history.items():
        step, values = points[-1] if points else (0, {})
        bar = "#" * int(20 * step / max(1, totals[arm])) + "." * (20 - int(20 * step / max(1, totals[arm])))
        loss = f"total {values['total']:.4g}" if "total" in values else ""
        prior = values.get("share_nat", 0.0) + values.get("share_sem", 0.0)
        if prior > 0:  # measured on log steps; the L2 arm's is zero
            loss += f", prior's share of the gradient {prior:.0%}"
        parts.append(f"- {arm}: `[{bar}]` step {step}/{totals[arm]} {loss}")
    return "\n".join(parts + [f"- {n}" for n in notes])


def train_pair(
    task: str, steps: float, batch: float, crop: float, lr: float, gamma: float, lam: float, t_min: float,
    t_max: float, seed: float, prior_source: str | None, clean_folder: str | None = None, prior_crop: float = 0,
    start: str | None = None, width: int | None = None, name: str | None = None, registry: Registry | None = None,
) -> Iterator[tuple[str, np.ndarray, str | None]]:
    """Train the L2 and DiffLoss arms side by side (same start weights, seed, batches); yield (status, curves, zip).

    ``prior_crop`` > 0 computes the prior terms on one random square of that side per batch (several times cheaper
    steps on a CPU; 0 = the whole crop). ``start``: a restorer label of the task to fine-tune from (both arms), or
    ``FRESH_START``/empty for a fresh restorer of ``width``.

    Closing the generator (the Stop button, or the browser going away) closes both training loops, which save
    a checkpoint; ``request_stop`` ends the run the same way from another thread. One run at a time.
    """
    from diffloss.train import LoopConfig, RestorerTrainConfig, TrainingDiverged, train_restorer

    reg = registry or get_registry()
    if not _TRAIN_LOCK.acquire(blocking=False):
        raise gr.Error("A training run is already going (one at a time on this machine): wait for it to finish "
                       "or press Stop.")
    gens: dict = {}
    try:
        _STOP.clear()
        caps, notes = train_caps(), []
        values = {"steps": int(steps), "batch": int(batch), "crop": int(crop)}
        for key, value in values.items():
            if value < 1:
                raise gr.Error(f"{key} must be at least 1, got {value}.")
            if value > caps[key]:
                notes.append(f"{key} {value} capped at {caps[key]} on this {'GPU' if caps is GPU_CAPS else 'CPU'}")
                values[key] = caps[key]
        for n in notes:
            _warn(n)
        try:
            degrade.get_task(task)
        except ValueError as err:
            raise gr.Error(str(err)) from err
        folder = Path(clean_folder) if clean_folder else reg.training_folder()
        if folder is None or not folder.is_dir():
            raise gr.Error("No clean photos to train on: give a folder of clean photos (the benchmark "
                           "clean/train, or any folder of PNG/JPEG photos).")
        entry = _start_entry(start, task, reg)
        notes.append(f"both arms start from {f'`{entry.label}`' if entry else 'a fresh restorer'}")
        prior = _prior(prior_source, reg)  # fails early, with the reason, before any work
        sub = int(prior_crop or 0)
        loss = DiffLossConfig(gamma=float(gamma), lam=float(lam), **_train_t_range(t_min, t_max, prior),
                              prior_crop=sub if 0 < sub < values["crop"] else None)
        try:
            loss.validate(prior.num_timesteps)
        except ValueError as err:
            raise gr.Error(str(err)) from err
        name = name or f"studio-{task}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = reg.runs / name
        totals = {}
        for arm in ("l2", "diffloss"):
            loop = LoopConfig(out=str(run_dir / arm), steps=values["steps"], batch_size=values["batch"], lr=float(lr),
                              warmup=min(50, values["steps"] // 10), seed=int(seed),
                              log_every=max(1, values["steps"] // 60), save_every=max(10, values["steps"] // 4),
                              resume=False, command=f"DiffLoss Studio Train tab ({arm} arm)")
            cfg = RestorerTrainConfig(task=task, clean=[str(folder)], crop=values["crop"],
                                      init=str(entry.path) if entry else None, width=None if entry else width,
                                      prior=str(prior.source), diffloss=arm == "diffloss", loss=loss, loop=loop)
            try:
                gens[arm] = train_restorer(cfg)
            except (ValueError, RuntimeError, OSError) as err:
                raise gr.Error(f"Cannot start the {arm} arm: {err}") from err
            totals[arm] = values["steps"]
        history: dict[str, list] = {arm: [] for arm in gens}
        active = dict(gens)
        yield _status(history, totals, name, notes, "Starting"), training_figure(history), None
        while active:
            if _STOP.is_set():
                for gen in active.values():
                    gen.close()
                active.clear()
                yield _status(history, totals, name, notes + ["stopped: checkpoints saved, no final model"],
                              "Stopped"), training_figure(history), None
                return
            for arm in list(active):
                try:
                    event = next(active[arm])
                except StopIteration:
                    del active[arm]
                    continue
                except TrainingDiverged as err:
                    raise gr.Error(f"The {arm} arm diverged: {err}") from err
                if event.kind in ("step", "done") and event.values:
                    history[arm].append((event.step, dict(event.values)))
                if event.kind == "stopped":
                    notes.append(f"{arm}: {event.message}")
            yield _status(history, totals, name, notes, "Training"), training_figure(history), None
        archive = _zip_models(run_dir)
        done = notes + [f"both arms saved; Compare and Inspect select them when their task is {task}"]
        yield _status(history, totals, name, done, "Done"), training_figure(history), str(archive)
    finally:
        for gen in gens.values():
            gen.close()  # a no-op for finished loops; saves a checkpoint for interrupted ones
        _TRAIN_LOCK.release()


# ------------------------------------------------------------------------------------------------ small UI helpers
def point_fraction(index: tuple[int, int] | list[int] | None, image: np.ndarray | None) -> tuple[float, float]:
    """A click on an image (pixel x, y) as fractions of its width and height, for the zoom sliders."""
    if index is None or image is None:
        return 0.5, 0.5
    h, w = np.asarray(image).shape[:2]
    return float(np.clip(index[0] / max(1, w), 0, 1)), float(np.clip(index[1] / max(1, h), 0, 1))


def example_rows(files: list[Path]) -> list[list[str]]:
    """[path, task, mode] per example: ``clean_*`` are degraded (noise), ``<task>_*`` are taken as degraded."""
    return [[str(path), path.name.split("_", 1)[0], MODES[1]] if is_degraded_example(path)
            else [str(path), "noise", MODES[0]] for path in files]


DEFAULT_T_FRACTION = 0.2  # the Inspect slider starts at t = 200 of 1000: noisy enough to matter, not pure noise


def timestep_in_schedule(t: float, num_timesteps: int) -> int:
    """The slider's t for a prior with ``num_timesteps``: kept when the schedule has it, else the same default
    fraction of the new schedule (t = 200 of a 1000-step prior is 20 of a 100-step one), never out of range.

    Why: a slider whose value lies beyond its new maximum refuses every request ("Value 200 is greater than
    maximum value 99"), so switching to a shorter schedule must move t too.
    """
    last = max(0, int(num_timesteps) - 1)
    t = int(t)
    return t if 0 <= t <= last else round(DEFAULT_T_FRACTION * last)


def prior_timesteps(source: str | None, registry: Registry | None = None) -> tuple[int, str]:
    """(T, message) for the prior box: how many timesteps the slider may use, or why the prior does not load."""
    reg = registry or get_registry()
    try:
        prior = reg.load_prior(source)
    except PriorLoadError as err:
        return 1000, f"Prior not loadable: {err}"
    return prior.num_timesteps, f"Prior `{prior.source}`: {prior.num_timesteps} timesteps, {prior.parameter_count() / 1e6:.2f} M parameters."
