"""Compare's family view: a task's arms in weight order, the amplified difference of two outputs, the family's
perception-distortion plot with the two arms on show marked, and each arm's card in a few lines.

Why: one DiffLoss arm against one L2 arm answers "does the prior do anything?"; the family answers "how much,
and at what price?". Stepping the prior's weight on the same input, with the difference amplified by a stated
factor, is what lets a person *see* the dose. Pure functions of labels, tensors and the report; tested without
a browser.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffloss.family import FAMILY_ARMS, family_arm
from diffloss.images import to_uint8_numpy
from studio.memo import Memo, file_stamp
from studio.models import Registry, RestorerEntry


@dataclass(frozen=True)
class Member:
    """One arm a person can pick: its dropdown label, and where it sits in the family (None: a trained run)."""

    label: str
    arm: str | None
    weight_label: str


def weight_label(arm: str) -> str:
    """How the prior-weight control names an arm: its share of the gradient, then its name."""
    spec = family_arm(arm)
    if spec.weights is not None:
        return f"released weights (gamma {spec.weights[0]:g}) ({arm})"
    if not spec.uses_prior:
        return f"0 % prior{', another seed' if spec.seed_offset else ''} ({arm})"
    t = f", t <= {spec.t_max}" if spec.t_max is not None else ""
    sem = f", {spec.sem_share * 100:.0f} % via h-space" if spec.sem_share > spec.nat_share else ""
    form = ", Jacobian-free" if spec.gradient == "sds" else ""
    return f"{spec.prior_share * 100:.0f} % prior{t}{sem}{form} ({arm})"


def members(task: str, registry: Registry) -> list[Member]:
    """The task's shipped family in the family's order (weight order, with the reseeded L2 control beside the L2
    arm), then trained runs of the task as their own arms."""
    entries: list[RestorerEntry] = registry.restorers(task)
    shipped = {e.label.rsplit(" ", 1)[-1]: e for e in entries if e.source == "shipped"}
    out = [Member(shipped[a].label, a, weight_label(a)) for a in FAMILY_ARMS if a in shipped]
    out += [Member(e.label, None, e.label) for e in entries if e.source != "shipped"]
    return out


def weight_choices(task: str, registry: Registry) -> list[tuple[str, str]]:
    """(shown, label) pairs for the prior-weight control: the shipped family, lightest prior first."""
    return [(m.weight_label, m.label) for m in members(task, registry) if m.arm is not None]


def amplified_difference(a: torch.Tensor, b: torch.Tensor, gain: float) -> tuple[np.ndarray, str]:
    """``0.5 + gain * (a - b)`` as a picture (grey = equal) and a caption stating the scale and the largest gap.

    Why signed and centred: brighter and darker than grey say which output is lighter there, per channel, so a
    colour cast shows as a tint and an edge made sharper shows as a light/dark seam.
    """
    if a.shape != b.shape:
        raise ValueError(f"the two outputs differ in size: {tuple(a.shape[-2:])} and {tuple(b.shape[-2:])}")
    if not gain > 0:
        raise ValueError(f"the amplification must be > 0, got {gain}")
    diff = a.float() - b.float()
    picture = to_uint8_numpy((0.5 + gain * diff).clamp(0, 1))
    largest = float(diff.abs().max()) * 255
    clipped = float(((0.5 + gain * diff) - (0.5 + gain * diff).clamp(0, 1)).abs().gt(0).float().mean()) * 100
    caption = (f"difference x{gain:g} (grey = identical; one level of 255 shows as {gain:g} levels); largest "
               f"difference {largest:.1f}/255, mean {float(diff.abs().mean()) * 255:.2f}/255"
               + (f"; {clipped:.1f} % of values clipped at this gain" if clipped > 0 else ""))
    return picture, caption


def pd_points(report: dict | None, task: str) -> dict[str, tuple[float, float]]:
    """(PSNR, NIQE) per arm on clean/val from the zoo report (empty when the report has none for the task)."""
    points = ((report or {}).get("tasks", {}).get(task, {}) or {}).get("pd_points") or {}
    return {arm: (float(p["psnr"]), float(p["niqe"])) for arm, p in points.items()
            if isinstance(p, dict) and p.get("psnr") is not None and p.get("niqe") is not None}


PLOTS: Memo[np.ndarray | None] = Memo(16)  # a plot per (report version, task, ringed arms): drawn once


def family_plot(registry: Registry, task: str, marked: tuple[str, ...] = (),
                unplaced: tuple[str, ...] = ()) -> np.ndarray | None:
    """``pd_figure`` of the registry's report, remembered: Compare shows it on every run, and drawing it takes
    longer than reading it. Shared, so read-only."""
    return PLOTS.get((file_stamp(registry.report_file), task, tuple(marked), tuple(unplaced)),
                     lambda: pd_figure(registry.report(), task, marked, unplaced))


def unplaced_note(labels: tuple[str, ...]) -> str:
    """Why an arm on show is not on the family plot: the plot is the zoo report's measurement of the shipped
    family (24 clean/val photos), which a Train run or an uploaded restorer never went through."""
    if not labels:
        return ""
    names = " and ".join(f"'{label}'" for label in labels)
    return (f"Not on this plot: {names}. The plot is the zoo report's measurement of the shipped family on "
            "clean/val; this restorer was not measured there. 'Evaluate both' measures it beside the other arm.")


FOOTNOTE_PX = 13  # the note under the plot: >= 11 px on screen at 1440x900 (the plot shows near its own size)


def with_footnote(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` with ``text`` wrapped in a band under it (the plot's own words, kept with it when downloaded)."""
    import textwrap

    from PIL import Image, ImageDraw

    from diffloss.viz import _font

    if not text:
        return image
    font = _font(FOOTNOTE_PX)
    width = image.shape[1]
    chars = max(20, int(width / (0.55 * FOOTNOTE_PX)))
    lines = textwrap.wrap(text, chars)
    band = Image.new("RGB", (width, (FOOTNOTE_PX + 5) * len(lines) + 8), (255, 255, 255))
    draw = ImageDraw.Draw(band)
    for i, line in enumerate(lines):
        draw.text((8, 4 + i * (FOOTNOTE_PX + 5)), line, fill=(150, 30, 30), font=font)
    return np.concatenate([image, np.asarray(band)], axis=0)


def pd_figure(report: dict | None, task: str, marked: tuple[str, ...] = (),
              unplaced: tuple[str, ...] = ()) -> np.ndarray | None:
    """The family's perception-distortion plot with the arms on show ringed, and a note naming those it cannot
    place (``unplaced``: labels of restorers outside the shipped family). None without report points."""
    from diffloss.zoo_report import perception_distortion_image

    points = pd_points(report, task)
    if not points:
        return None
    # A short title: the picture's heading in Compare says what and where; the full name would run under the
    # toolbar buttons in the picture's top right corner.
    return with_footnote(perception_distortion_image(points, f"{task}: the family", marked), unplaced_note(unplaced))


def arm_of_label(label: str | None) -> str | None:
    """The family arm a shipped label names (``shipped noise strong`` -> ``strong``), else None."""
    if not label or not label.startswith("shipped "):
        return None
    arm = label.rsplit(" ", 1)[-1]
    return arm if arm in FAMILY_ARMS else None


def dose_of_card(spec: dict) -> str:
    """An arm card's dose in words, with the timesteps it drew (cards from before the prior's band name t_max
    only)."""
    words = spec.get("dose") or (f"t <= {spec['t_max']}" if spec.get("t_max") is not None
                                 else "t over the whole schedule")
    t_range = spec.get("t_range")
    return f"{words} (t {t_range[0]}-{t_range[1]})" if t_range and "the prior's band" in words else words


def arm_lines(card: dict | None, report: dict | None, task: str, label: str) -> list[str]:
    """A few lines on one arm: what it is in the family, its weights, and what the report measured for it."""
    arm = arm_of_label(label)
    spec = (card or {}).get("arm") or {}
    lines = [f"**{label}**"]
    if arm is not None:
        lines.append(f"- {family_arm(arm).about}")
    if spec.get("gamma"):
        lines.append(f"- gamma {spec['gamma']:.4g}, lambda {spec.get('lam', 0):.4g}, {dose_of_card(spec)}")
    task_report = ((report or {}).get("tasks") or {}).get(task) or {}
    arm_report = (task_report.get("arms") or {}).get(arm or "")
    training = (arm_report.get("training") if isinstance(arm_report, dict) else None) or {}  # older reports: a path
    if training.get("prior_share_last_fifth") is not None:
        lines.append(f"- the prior carried {training['prior_share_last_fifth']:.0%} of the gradient over the last "
                     "fifth of its training")
    for source in task_report.get("sources") or []:
        m = (source.get("means") or {}).get(arm or "") if isinstance(source, dict) else None
        if m and m.get("psnr") is not None:
            vs = m.get("psnr_vs_l2")
            lines.append(f"- {source['source']}: PSNR {m['psnr']:.2f}, NIQE {m.get('niqe') or float('nan'):.2f}"
                         + (f", {vs:.1f} dB from the L2 arm's output" if isinstance(vs, (int, float)) else ""))
            break
    return lines
