"""What the studio makes of an image file: loaded, checked and degraded for a task, with notes on what changed.

Bad files raise ``gr.Error`` with a message a person can act on (gone, unreadable, too small); what loading
changes about a file (colour mode, EXIF rotation, a huge image downscaled) comes back as notes beside the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import torch
from PIL import Image

from diffloss import degrade
from diffloss.images import ImageLoadError, header_orientation, image_size, load_image
from studio.models import is_degraded_example

MAX_SIDE = 1024 if not torch.cuda.is_available() else 2048  # longer side of an upload, after downscaling
MAX_SIDE_SR4_INPUT = MAX_SIDE // 4  # an already-low-res sr4 input is upscaled 4x by the restorer
MIN_SIDE = 16  # below this a restorer has nothing to work with
MODES = ("degrade it for me", "it is already degraded", "it is degraded, and I have its ground truth")
GROUND_TRUTH_FOLDER = "ground_truth"  # examples/ground_truth/<name>: the clean partner of a degraded example

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
            orientation = header_orientation(img)  # never decodes the pixels (a PNG's getexif() would)
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
        # the loader names the file by its path; a page shows its name alone (no server path, hosted or not)
        raise gr.Error(f"Could not read {name} as an image: {str(err).replace(str(path), name)}") from err
    notes = describe_upload(path)
    if max(width, height) > max_side:
        h, w = image.shape[-2:]
        notes.append(f"large image {width}x{height} downscaled to {w}x{h} (at most {max_side} px on the longer side)")
    h, w = image.shape[-2:]
    if min(h, w) < MIN_SIDE:
        if (w, h) != (width, height):  # too thin once its longer side is brought down to max_side
            raise gr.Error(f"{name} is {width}x{height} px: downscaled to at most {max_side} px on the longer side it "
                           f"is {w}x{h} px, too thin to restore (needs at least {MIN_SIDE} px on each side): crop it "
                           "first.")
        raise gr.Error(f"{name} is {w}x{h} px: too small to restore (needs at least {MIN_SIDE} px on each side).")
    return image, notes


MAX_SEED = 2**63 - 1  # what torch's generators take (a larger one was "Overflow when unpacking long long")


def checked_seed(seed: object) -> int:
    """``seed`` as an int when it is a whole number from 0 to MAX_SEED; gr.Error saying so otherwise."""
    whole = (not isinstance(seed, bool) and isinstance(seed, (int, float)) and math.isfinite(seed)
             and seed == int(seed))
    if not whole or not 0 <= int(seed) <= MAX_SEED:
        raise gr.Error(f"The seed must be a whole number from 0 to {MAX_SEED}, got {str(seed)[:40]}.")
    return int(seed)


def prepare_case(
    path: str | Path | None, task: str, mode: str, seed: int, gt_path: str | Path | None = None,
) -> Case:
    """Load an upload and make (input, net input, ground truth) for a task: degrading a clean photo, taking a
    degraded one as it is, or pairing a degraded one with its ground truth (``gt_path``: a real pair)."""
    try:
        spec = degrade.get_task(task)
    except ValueError as err:
        raise gr.Error(str(err)) from err
    if mode not in MODES:
        raise gr.Error(f"Choose one of: {', '.join(MODES)}.")
    already = mode != MODES[0]
    if mode == MODES[2] and not gt_path:
        raise gr.Error("Upload its ground truth too (the box under 'The photo is'), or choose "
                       f"'{MODES[1]}' to compare without one.")
    limit = MAX_SIDE_SR4_INPUT if already and task == "sr4" else MAX_SIDE
    image, notes = load_upload(path, limit)
    if already:
        if task == "inpaint":
            raise gr.Error("Inpainting an already-degraded photo needs a hole mask, which the studio cannot take yet "
                           "(not yet): choose 'degrade it for me' to get a photo with known holes.")
        net_input = degrade.prepare_input(task, image)
        shown = net_input[:3].clamp(0, 1)
        gt = _ground_truth(gt_path, shown, task, notes) if mode == MODES[2] else None
        return Case(task, shown, net_input, gt, notes)
    try:
        clean = degrade.crop_to_multiple(image, spec.size_multiple)
    except ValueError as err:
        raise gr.Error(str(err)) from err
    pair = degrade.make_pair(task, clean, checked_seed(seed))
    shown = pair.net_input[0, :3].clamp(0, 1)
    return Case(task, shown, pair.net_input[0], clean, notes)


def _ground_truth(path: str | Path, shown: torch.Tensor, task: str, notes: list[str]) -> torch.Tensor:
    """The uploaded ground truth of a real pair, checked to show the restored image's size (a mismatched pair
    would give every metric and the error map for pixels that do not correspond)."""
    gt, gt_notes = load_upload(path, MAX_SIDE)
    notes.extend(f"ground truth: {n}" for n in gt_notes)
    (h, w), (gh, gw) = shown.shape[-2:], gt.shape[-2:]
    if (gh, gw) != (h, w):
        why = " (for sr4 the ground truth is 4x the low-resolution photo)" if task == "sr4" else ""
        raise gr.Error(f"The ground truth {Path(path).name} is {gw}x{gh} px but the restored photo will be {w}x{h} px: "
                       f"a pair shows the same scene at the same size{why}.")
    return gt


def example_rows(files: list[Path]) -> list[list[str | None]]:
    """[path, task, mode, ground truth] per example: ``clean_*`` are degraded (noise); ``<task>_*`` are taken as
    degraded, paired with ``ground_truth/<same name>`` beside them when it exists (a real pair)."""
    rows: list[list[str | None]] = []
    for path in files:
        if not is_degraded_example(path):
            rows.append([str(path), "noise", MODES[0], None])
            continue
        gt = path.parent / GROUND_TRUTH_FOLDER / path.name
        rows.append([str(path), path.name.split("_", 1)[0], MODES[2] if gt.is_file() else MODES[1],
                     str(gt) if gt.is_file() else None])
    return rows
