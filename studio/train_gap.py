"""The Train tab's live divergence: which photo both arms restore while they train, and how their gap is drawn
(PSNR between the arms' outputs per measured step; the two outputs and their difference amplified, factor stated).

The maths is ``diffloss.arm_gap``; this module picks a photo the run does not train on and draws.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffloss import degrade
from diffloss.arm_gap import ArmProbe, probe_every, readable_gain
from diffloss.images import ImageLoadError, load_image, to_uint8_numpy
from diffloss.paths import ARMS
from diffloss.viz import figure_to_array, grid
from studio.family_view import amplified_difference
from studio.models import Registry
from studio.upload import GROUND_TRUTH_FOLDER
from studio.widgets import placeholder

PROBE_SIDE = 128  # centre crop both arms restore at each measured step: two small forwards on a CPU
PROBE_SEED = 0  # the probe's degradation: fixed, so only the arms change between steps
VISIBLE_DB = 33  # the README's line: outputs closer than this look the same to a person at 100 %
WAITING = "Press Train both arms:\nhow far the two arms move apart\nshows here while they train"


def candidates(registry: Registry) -> list[Path]:
    """Clean photos a run may be probed on, best first: the benchmark's validation photos (clean/val, else the
    clean examples), then the clean ground truths of the shipped real pairs (never trained on by the Train tab)."""
    ground_truths = sorted((registry.examples / GROUND_TRUTH_FOLDER).glob("*.png")) if registry.examples else []
    return [*registry.calibration_images(), *ground_truths]


def _stem(path: Path) -> str:
    """A photo's name without the Train tab's ``NNN_`` prefix (uploads are saved as ``000_name.png``)."""
    head, _, tail = path.stem.partition("_")
    return tail if head.isdigit() and tail else path.stem


def probe_photo(registry: Registry, training: list[Path]) -> Path | None:
    """The first candidate the run does not train on: not in a training folder, not named like a training photo
    (None: every candidate is trained on; the tab then says the gap cannot be shown)."""
    folders = {p.resolve() for p in training if p.is_dir()}
    files = [f for p in training for f in (sorted(p.iterdir()) if p.is_dir() else [p])]
    names = {_stem(f) for f in files}
    for photo in candidates(registry):
        if photo.parent.resolve() not in folders and _stem(photo) not in names:
            return photo
    return None


def new_probe(task: str, photo: Path | None, steps: int, log_every: int) -> ArmProbe | None:
    """The probe for a run: the photo's centre crop degraded for ``task`` with a fixed seed (None without one)."""
    if photo is None:
        return None
    try:
        image = load_image(photo, max_side=2 * PROBE_SIDE)
    except (ImageLoadError, OSError):
        return None
    h, w = image.shape[-2:]
    side = min(PROBE_SIDE, h, w)
    top, left = (h - side) // 2, (w - side) // 2
    clean = degrade.crop_to_multiple(image[:, top:top + side, left:left + side], degrade.get_task(task).size_multiple)
    pair = degrade.make_pair(task, clean, PROBE_SEED)
    return ArmProbe(pair.net_input[0], source=photo.name, every=probe_every(steps, log_every))


def gap_curve(probe: ArmProbe | None, size=(3.6, 2.7), dpi: int = 90) -> np.ndarray:
    """PSNR between the two arms' outputs per measured step (lower = further apart), with the 33 dB line below
    which a gap is visible; identical outputs (the no_grad mistake) are drawn on a line of their own, so marked.
    Small in inches so that its text keeps >= 11 px at the size the tab shows it."""
    if probe is None or not probe.gaps:
        return placeholder(WAITING, width=int(size[0] * dpi), height=int(size[1] * dpi))
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    ax = fig.subplots()
    finite = [g.psnr for g in probe.gaps if np.isfinite(g.psnr)]
    identical = max([*finite, VISIBLE_DB]) + 4  # where identical outputs are drawn
    steps = [g.step for g in probe.gaps]
    ax.plot(steps, [g.psnr if np.isfinite(g.psnr) else identical for g in probe.gaps], "o-", color="tab:purple",
            markersize=3)
    if len(finite) < len(steps):
        ax.axhline(identical, color="grey", lw=0.8, ls=":")
        ax.text(0.02, identical, "identical", transform=ax.get_yaxis_transform(), va="bottom", fontsize=10,
                color="grey")
    ax.axhline(VISIBLE_DB, color="tab:red", lw=0.8, ls="--")
    ax.text(0.98, VISIBLE_DB, f"{VISIBLE_DB} dB: visible below", transform=ax.get_yaxis_transform(), va="bottom",
            ha="right", fontsize=10, color="tab:red")
    ax.set_ylim(top=identical + 3 if len(finite) < len(steps) else max(finite + [VISIBLE_DB]) + 3)
    ax.set_xlabel("step", fontsize=10)
    ax.set_ylabel("PSNR between the arms (dB)", fontsize=10)
    ax.tick_params(labelsize=10)
    ax.grid(alpha=0.3)
    return figure_to_array(fig)


def gap_picture(probe: ArmProbe | None) -> tuple[np.ndarray, str]:
    """The two arms' latest outputs and their difference amplified (readable factor), and the caption."""
    if probe is None:
        return placeholder(WAITING, width=480, height=200), ("No photo to measure the gap on: every validation "
                                                            "photo and example here is one the run trains on.")
    if not probe.outputs:
        return placeholder(WAITING, width=480, height=200), ""
    l2, dl = (probe.outputs[arm] for arm in ARMS)
    gain = readable_gain(dl, l2)
    difference, caption = amplified_difference(dl, l2, gain)
    gap = probe.gaps[-1]
    picture = grid([to_uint8_numpy(l2), to_uint8_numpy(dl), difference],
                   ["L2 arm", "DiffLoss arm", f"difference x{gain}"], columns=3, font_size=13)
    apart = "identical" if not np.isfinite(gap.psnr) else f"{gap.psnr:.1f} dB apart"
    note = (f"Step {gap.step}, on `{probe.source}` (a {l2.shape[-1]} px crop degraded for the task, not trained on): "
            f"the arms' outputs are {apart}, mean difference {gap.mean:.2f}/255. DiffLoss arm minus L2 arm: "
            f"{caption}.")
    return picture, note
