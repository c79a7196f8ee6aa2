"""The Compare tab's work: one image through the L2 and DiffLoss arms (pictures, zoom, error maps, metrics), how
the two were trained, and both evaluated on clean validation photos.

Plain values in (paths, numbers, labels), HxWx3 uint8 arrays and markdown out; tested without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F

from diffloss import degrade, side_by_side
from diffloss.checkpoint import CheckpointError
from diffloss.images import ImageLoadError, to_uint8_numpy
from diffloss.paths import REPO
from diffloss.viz import grid as image_grid
from diffloss.viz import heatmaps_on_one_scale, most_different_window
from studio import cards, family_view
from studio.metrics_table import PendingMetrics, metrics_table, start_metrics
from studio.readable import COLUMN, LABEL_PX, below_toolbar, label_px
from studio.models import Registry, get_registry
from studio.restorers import TILE, load_named_restorer, restorer_entry, run_restorer
from studio.toasts import warn
from studio.upload import MODES, prepare_case


def zoom_crops(images: dict[str, torch.Tensor], x: float, y: float, size: int = 64, scale: int = 3) -> np.ndarray:
    """The same square of every image around the point (x, y) (fractions of width and height), enlarged.

    Nearest-neighbour enlargement, so what is seen is the pixels themselves, not an interpolation of them.
    """
    first = next(iter(images.values()))
    h, w = first.shape[-2:]
    side = max(4, min(int(size), h, w))
    scale = max(1, min(int(scale), SHOWN_WIDTH // (len(images) * side + 1)))  # large crops: not enlarged past the column
    cx, cy = float(np.clip(x, 0, 1)) * w, float(np.clip(y, 0, 1)) * h
    left = int(np.clip(round(cx - side / 2), 0, w - side))
    top = int(np.clip(round(cy - side / 2), 0, h - side))
    crops = []
    for img in images.values():
        arr = to_uint8_numpy(img[..., top:top + side, left:left + side])
        crops.append(np.repeat(np.repeat(arr, scale, axis=0), scale, axis=1))
    return below_toolbar(image_grid(crops, list(images), columns=len(crops),
                                    font_size=label_px(len(crops) * side * scale)))


SHOWN_WIDTH = COLUMN  # Compare's picture column at 1440x900, in CSS px: a wider picture is shown scaled down


# Longest side of each error map and its labels' size: two maps and the colour bar make a picture about as wide as
# Compare's picture column at 1440x900 (~790 px), so the labels show at >= 11 px however large the upload.
ERROR_MAP_SIDE = 352


def error_maps(outputs: dict[str, torch.Tensor], gt: torch.Tensor) -> np.ndarray:
    """|output - gt| (mean over channels) of each arm on one shared colour scale, over the ground truth, with the
    scale's colour bar: two maps on one scale say which arm is further off, and the bar says by how much."""
    errs = {name: (out - gt).abs().mean(dim=0) for name, out in outputs.items()}
    labels = [f"{name}: mean |error| {float(e.mean()):.4f}" for name, e in errs.items()]
    h, w = gt.shape[-2:]
    shrink = min(1.0, ERROR_MAP_SIDE / max(h, w))
    if shrink < 1.0:  # the maps at their shown size (area-averaged), over the ground truth at that size
        size = (max(1, round(h * shrink)), max(1, round(w * shrink)))
        errs = {n: F.interpolate(e[None, None], size=size, mode="area")[0, 0] for n, e in errs.items()}
        gt = F.interpolate(gt[None], size=size, mode="area")[0]
    picture, _, _ = heatmaps_on_one_scale(list(errs.values()), [gt] * len(errs), labels, font_size=LABEL_PX)
    return below_toolbar(picture)


def change_centre(before: torch.Tensor, after: torch.Tensor, side: int = 64) -> tuple[float, float]:
    """(x, y) fractions of the centre of the ``side`` square where a restorer changed the photo most: where the
    default zoom should land (the holes of an inpainting, the streaks of a rain removal)."""
    h, w = after.shape[-2:]
    side = max(1, min(side, h, w))
    top, left = most_different_window(after, before, side, stride=1)
    return (left + side / 2) / w, (top + side / 2) / h


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
    difference: np.ndarray  # the DiffLoss arm's output minus the L2 arm's, amplified
    difference_note: str
    family_plot: np.ndarray | None  # the task family's perception-distortion plot, the two arms ringed
    zoom_xy: tuple[float, float]  # where the zoom looked (the automatic choice when asked for)
    ground_truth: np.ndarray | None  # kept in a hidden picture, so a click re-zooms without a re-run

    def as_tuple(self) -> tuple:
        return (self.degraded, self.l2, self.diffloss, self.slider, self.zoom, self.error_map, self.metrics, self.notes,
                self.difference, self.difference_note, self.family_plot, *self.zoom_xy, self.ground_truth)


def rezoom(degraded: np.ndarray | None, l2: np.ndarray | None, diffloss: np.ndarray | None,
           ground_truth: np.ndarray | None, x: float, y: float, size: float) -> np.ndarray | None:
    """The zoomed crops of the pictures on show at a new point: a click zooms at once, with no second run.

    Why from the pictures on show (8-bit) and not a kept state: they are what the visitor sees, and a per-visitor
    state would hold tensors on the server for every open page."""
    named = {"degraded input": degraded, "L2 arm": l2, "DiffLoss arm": diffloss, "ground truth": ground_truth}
    shown = {name: torch.from_numpy(np.asarray(a)[..., :3].copy()).permute(2, 0, 1).float() / 255.0
             for name, a in named.items() if a is not None}
    if not shown or len({tuple(t.shape) for t in shown.values()}) > 1:
        return None
    return zoom_crops(shown, x, y, int(size))


def compare(
    image: str | None, task: str, mode: str, seed: float, l2_label: str | None, dl_label: str | None,
    zoom_x: float = 0.5, zoom_y: float = 0.5, zoom_size: float = 64, ground_truth: str | None = None,
    zoom_auto: bool = False, diff_gain: float = 10.0, registry: Registry | None = None,
) -> CompareResult:
    """Restore one image with the L2 arm and the DiffLoss arm; pictures, error maps and metrics of both, their
    difference amplified, and where the two arms sit in their task's family.

    ``ground_truth``: the clean partner of an already-degraded photo (mode ``MODES[2]``), for real pairs.
    ``zoom_auto``: zoom where the DiffLoss arm changed the photo most instead of at (zoom_x, zoom_y)."""
    reg = registry or get_registry()
    m_l2 = load_named_restorer(l2_label, task, "L2 arm", reg)
    m_dl = load_named_restorer(dl_label, task, "DiffLoss arm", reg)
    case = prepare_case(image, task, mode, int(seed or 0), gt_path=ground_truth)  # used in the real-pair mode only
    input_metrics = start_metrics(case.shown, case.gt)  # overlaps the two restorers' forwards

    def l2_arm() -> tuple[torch.Tensor, PendingMetrics]:
        z = run_restorer(m_l2, case.net_input)
        return z, start_metrics(z, case.gt)  # overlaps the rest of the DiffLoss arm's restore

    # The arms are independent: on a CPU they restore side by side (bench/results/overlap-wrappers-cpu.json).
    (z_l2, l2_metrics), z_dl = side_by_side.run(reg.device, l2_arm, lambda: run_restorer(m_dl, case.net_input))
    dl_metrics = start_metrics(z_dl, case.gt)  # overlaps the pictures below
    shown = {"degraded input": case.shown, "L2 arm": z_l2, "DiffLoss arm": z_dl}
    if case.gt is not None:
        shown["ground truth"] = case.gt
    if zoom_auto:
        zoom_x, zoom_y = change_centre(case.shown[:3], z_dl, int(zoom_size))
    zoom = zoom_crops(shown, zoom_x, zoom_y, int(zoom_size))
    difference, difference_note = family_view.amplified_difference(z_dl, z_l2, float(diff_gain or 10.0))
    marked = tuple(a for a in (family_view.arm_of_label(l2_label), family_view.arm_of_label(dl_label)) if a)
    unplaced = tuple(label for label in (l2_label, dl_label) if label and not family_view.arm_of_label(label))
    family_plot = family_view.family_plot(reg, task, marked, unplaced)
    err = error_maps({"L2 arm": z_l2, "DiffLoss arm": z_dl}, case.gt) if case.gt is not None else None
    from diffloss.zoo_report import agreement_sentence  # slow to import: on first use, as the registry does

    table = metrics_table({"degraded input": input_metrics, "L2 arm": l2_metrics, "DiffLoss arm": dl_metrics}, case.gt,
                          size=tuple(case.shown.shape[-2:]), trust=agreement_sentence(reg.report()))
    h, w = case.shown.shape[-2:]
    notes = [f"{task}: {degrade.get_task(task).description} Output {w}x{h} px."] + case.notes
    if case.gt is None:
        notes.append("No ground truth (already degraded): PSNR, SSIM, LPIPS and the error map need one.")
    elif mode == MODES[2]:
        notes.append("A real pair: the metrics and the error map are against the uploaded ground truth.")
    if unplaced and family_plot is not None:
        notes.append(family_view.unplaced_note(unplaced))
    for note in case.notes:
        warn(note)
    l2_img, dl_img = to_uint8_numpy(z_l2), to_uint8_numpy(z_dl)
    return CompareResult(
        degraded=to_uint8_numpy(case.shown), l2=l2_img, diffloss=dl_img, slider=(l2_img, dl_img), zoom=zoom,
        error_map=err, metrics=table, notes="\n".join(f"- {n}" for n in notes),
        difference=difference, difference_note=f"DiffLoss arm minus L2 arm: {difference_note}.",
        family_plot=family_plot, zoom_xy=(float(zoom_x), float(zoom_y)),
        ground_truth=to_uint8_numpy(case.gt) if case.gt is not None else None,
    )


def example_ground_truth(photo: str | None, registry: Registry | None = None) -> str | None:
    """The ground truth shipped beside an example photo (``examples/ground_truth/<its name>``), found by the name
    of the copy gradio hands over for a clicked example; None for any other photo (which clears the box)."""
    from studio.upload import example_rows

    if not photo:
        return None
    reg = registry or get_registry()
    name = Path(str(photo)).name
    return next((row[3] for row in example_rows(reg.example_images()) if Path(row[0]).name == name), None)


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
        family_lines = family_view.arm_lines(card, report, task, entry.label)[1:]  # its place in the family
        parts.append("\n".join([f"**{arm_name}**: `{entry.label}`", *family_lines, *cards.training_lines(card, REPO)]
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
    from diffloss.evaluate import METRICS, EvalSource, evaluate, verdict, wins

    reg = registry or get_registry()
    entries = {arm: restorer_entry(label, task, name, reg)
               for arm, label, name in (("l2", l2_label, "L2 arm"), ("diffloss", dl_label, "DiffLoss arm"))}
    asked = max(1, min(int(photos), 64))
    files = reg.calibration_images()[:asked]
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
    counts = [f"{m.upper()} {w}/{n}" for m in METRICS for w, n in [wins(report, m, "diffloss", "l2")] if n]
    lines = [f"`l2` = {entries['l2'].label}, `diffloss` = {entries['diffloss'].label}. " + table]
    if len(files) < asked:
        lines.append(f"**{len(files)} photos, not {asked}**: only {len(files)} clean validation photos are here "
                     "(the benchmark's clean/val is not beside the repo, so the shipped clean examples were used).")
    lines.append(f"DiffLoss arm better than the L2 arm on: {', '.join(counts) or 'n/a'} images.")
    if len(files) >= MIN_PHOTOS_FOR_VERDICT:
        lines.append(verdict(report, "diffloss", "l2"))
    else:
        lines.append(f"No verdict from {len(files)} photos: {MIN_PHOTOS_FOR_VERDICT} at least are needed before a "
                     "difference means more than the choice of photos.")
    return "\n".join(lines)


MIN_PHOTOS_FOR_VERDICT = 8  # below this a win count is mostly the choice of photos


def point_fraction(index: tuple[int, int] | list[int] | None, image: np.ndarray | None) -> tuple[float, float]:
    """A click on an image (pixel x, y) as fractions of its width and height, for the zoom sliders."""
    if index is None or image is None:
        return 0.5, 0.5
    h, w = np.asarray(image).shape[:2]
    return float(np.clip(index[0] / max(1, w), 0, 1)), float(np.clip(index[1] / max(1, h), 0, 1))
