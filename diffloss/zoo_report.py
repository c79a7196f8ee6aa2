"""``pretrained/REPORT.md`` and ``report.json``: each task's dose-response family, arm by arm, on held-out data.

Generated, never written by hand: ``python -m diffloss.zoo report``. Per task: the L2 base (its validation curve,
its gain over the degraded input, set against the previous zoo's), then every arm of the family on every
validation source the data allows (synthetic degradations of ``clean/val`` with fixed seeds, the SOTS
validation scenes, the three real rain pairs, the real unpaired low-light photos with NIQE only): PSNR, SSIM,
MS-SSIM, VIF, NIQE, high-frequency energy relative to the ground truth, PSNR against the L2 arm's output (how
*visible* the prior's effect is), per-image wins over the L2 arm with a two-sided sign test, the prior's share of
the gradient during training, a perception-distortion plot, crops, and verdicts in plain words.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from diffloss import checkpoint
from diffloss.blind import AGREEMENT_METRICS, METRIC_LABELS, TALLY_FORMAT
from diffloss.blind_stats import sign_test
from diffloss.evaluate import EvalSource, iter_samples
from diffloss.family import (CONTROL_ARM, DOSE_ORDER, FAMILY_ARMS, PRIOR_ARMS, SOTS_VAL_SCENES, ZooPaths,
                             family_arm, shipped_restorers)
from diffloss.loss import shares_for_weights
from diffloss.metrics import (CONVENTIONS, HIGHER_IS_BETTER, PERCEPTUAL_CONVENTIONS, full_reference_metrics,
                              no_reference_metrics, perceptual_reference_metrics, psnr)
from diffloss.nets import load_restorer, restore
from diffloss.paths import REPO, TASK_ORDER, shown_path
from diffloss.viz import most_different_window

COLUMNS = (("psnr", "PSNR ↑", 2), ("ssim", "SSIM ↑", 4), ("ms_ssim", "MS-SSIM ↑", 4),
           ("haarpsi", "HaarPSI ↑", 4), ("mdsi", "MDSI ↓", 4), ("ms_gmsd", "MS-GMSDc ↓", 4), ("niqe", "NIQE ↓", 3),
           ("lpips", "LPIPS ↓", 4), ("hf_ratio", "HF ratio", 2), ("psnr_vs_l2", "PSNR vs L2", 1))
VISIBLE_DB = 33.0  # median PSNR between two arms' outputs at or below this: a person can see the difference
SIGNIFICANT_P = 0.05
BASE_ROW = "base"  # the L2 base the family starts from, measured beside the arms when its run folder is here
REPORT_JSON = "report.json"  # in the pretrained folder, beside REPORT.md; the app reads it (studio.models)
FIGURES = "report"  # pretrained/report/: plots and crops the report links
SYNTHETIC_LIMIT = 24
UNPAIRED_LIMIT = 16
# Longer side the report measures at (a 2-core CPU measures five outputs of every image; full size took too long):
SYNTHETIC_SIDE = 256  # clean/val photos, then degraded (as Compare's "Evaluate both" does on a CPU)
REAL_SIDE = 384  # real pairs and real degraded photos
PREVIOUS_L2 = REPO / "bench" / "results" / "zoo-previous-l2.json"  # the zoo this family replaced, for the gain


@dataclass(frozen=True)
class ReportSource:
    label: str
    source: EvalSource

    @property
    def synthetic(self) -> bool:
        return self.source.mode == "synthetic"


def sources_for(task: str, paths: ZooPaths) -> list[ReportSource]:
    """Every held-out source that exists on this machine for a task (none of them is ever trained on)."""
    out = []
    if paths.clean_val.is_dir():
        out.append(ReportSource(f"clean/val, synthetic {task} (seeds 0..{SYNTHETIC_LIMIT - 1}, {SYNTHETIC_SIDE} px)",
                                EvalSource("synthetic", paths.clean_val, task, limit=SYNTHETIC_LIMIT,
                                           max_side=SYNTHETIC_SIDE)))
    real = {
        "haze": [("SOTS-indoor validation scenes 1430-1434", "paired", paths.sots, SOTS_VAL_SCENES)],
        "rain": [("Rain100L sample (3 real pairs)", "paired", paths.datasets / "rain" / "rain100l_sample", None)],
        "lowlight": [("DICM (real, no ground truth)", "unpaired", paths.datasets / "lowlight" / "dicm_unpaired", None),
                     ("LIME (real, no ground truth)", "unpaired", paths.datasets / "lowlight" / "lime_unpaired", None)],
    }
    for label, mode, root, include in real.get(task, []):
        if root.is_dir():
            limit = UNPAIRED_LIMIT if mode == "unpaired" else None
            out.append(ReportSource(f"{label}, {REAL_SIDE} px", EvalSource(mode, root, task, limit=limit,
                                                                           max_side=REAL_SIDE, include=include)))
    return out


# ------------------------------------------------------------------------------------------- statistics
# sign_test (exact, two-sided, ties dropped) lives in diffloss.blind_stats: the blind tally uses the same one.


def compare_arms(a: list[dict], b: list[dict], metric: str) -> dict | None:
    """Per-image wins of ``a`` over ``b`` on ``metric`` (strictly better), losses, and the sign test."""
    pairs = [(x[metric], y[metric]) for x, y in zip(a, b) if x.get(metric) is not None and y.get(metric) is not None]
    if not pairs:
        return None
    higher = HIGHER_IS_BETTER[metric]
    wins = sum((x > y) if higher else (x < y) for x, y in pairs)
    losses = sum((x < y) if higher else (x > y) for x, y in pairs)
    return {"wins": wins, "losses": losses, "images": len(pairs), "p": sign_test(wins, losses),
            "mean_delta": float(np.mean([x - y for x, y in pairs]))}


def means(images: list[dict]) -> dict[str, float | None]:
    """Mean of each column over the images that have it; PSNR against L2 as a median (inf for identical)."""
    out: dict[str, float | None] = {}
    for key, _, _ in COLUMNS:
        values = [r[key] for r in images if r.get(key) is not None]
        if key == "psnr_vs_l2":
            out[key] = float(statistics.median(values)) if values else None
        else:
            out[key] = float(np.mean(values)) if values else None
    return out


FLAT_CHANGE = 0.05  # a term whose last-fifth mean moved less than this (relative) is flat


def training_summary(log: Path) -> dict | None:
    """From an arm's ``log.csv``: the prior's mean share of the gradient and whether the terms were flat.

    Flat = every logged term's mean over the last fifth of the steps within 5 % of its mean over the fifth
    before, or within twice the standard error of that difference (the issue's "train until the terms are flat
    over the last fifth"). Why the noise allowance: the prior terms draw a new t and eps every step and vary
    tenfold from step to step, so a 5 % rule alone calls a term that no longer trends "not flat" by chance.
    """
    if not log.is_file():
        return None
    with log.open() as f:
        rows = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]
    if len(rows) < 10:
        return None
    fifth = max(1, len(rows) // 5)
    last, before = rows[-fifth:], rows[-2 * fifth:-fifth]
    out: dict = {"logged_steps": len(rows)}
    shares = [r.get("share_nat", 0.0) + r.get("share_sem", 0.0) for r in last if "share_fidelity" in r]
    if shares:
        out["prior_share_last_fifth"] = float(np.mean(shares))
    change, noise = {}, {}
    # A fidelity-only run logs its loss as "total" alone (the L2 arm: no prior terms, tracked or trained).
    terms = ("fidelity", "nat", "sem") if any("fidelity" in r for r in rows) else ("total",)
    for term in terms:
        a = np.array([r[term] for r in last if term in r])
        b = np.array([r[term] for r in before if term in r])
        if a.size and b.size and b.mean() > 0:
            change[term] = float(a.mean() / b.mean() - 1)
            noise[term] = float(2 * np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size) / b.mean()
                                if min(a.size, b.size) > 1 else 0.0)
    out["change_last_fifth"] = change
    out["noise_last_fifth"] = noise
    out["flat"] = bool(change) and all(abs(v) <= max(FLAT_CHANGE, noise[k]) for k, v in change.items())
    return out


# --------------------------------------------------------------------------------------------- measuring
@dataclass
class SourceResult:
    label: str
    mode: str
    images: dict[str, list[dict]] = field(default_factory=dict)  # arm (and "input") -> per-image metrics


def measure(arms: dict[str, Path], rs: ReportSource, keep_outputs: int = 1
            ) -> tuple[SourceResult, list[tuple[dict[str, torch.Tensor], torch.Tensor | None]]]:
    """Every arm and the input on every image of a source; returns the results and the first outputs (crops)."""
    models = {arm: load_restorer(folder) for arm, folder in arms.items()}
    result = SourceResult(rs.label, rs.source.mode, {"input": [], **{arm: [] for arm in arms}})
    kept = []
    for k, sample in enumerate(iter_samples(rs.source)):
        outputs = {"input": sample.net_input[:3].clamp(0, 1)}
        for arm, model in models.items():
            out = restore(model, sample.net_input)
            outputs[arm] = (out[0] if out.dim() == 4 else out).detach().float().clamp(0, 1)
        for name, out in outputs.items():
            row = {"name": sample.name, **full_reference_metrics(out, sample.gt), **no_reference_metrics(out),
                   **perceptual_reference_metrics(out, sample.gt)}
            if "l2" in outputs and name != "l2":
                row["psnr_vs_l2"] = psnr(out, outputs["l2"])
            result.images[name].append(row)
        if k < keep_outputs:
            kept.append((outputs, sample.gt))
    return result, kept


# ------------------------------------------------------------------------------------------------ figures
def _arm_style(arm: str) -> dict:
    colours = {"input": "0.5", "l2": "C0", CONTROL_ARM: "C9", "moderate": "C1", "strong": "C3",
               "jacobian-free": "C4", "released": "C2"}
    return {"color": colours.get(arm, "k"), "marker": "s" if arm == "input" else "o"}


def pd_view(points: dict[str, tuple[float, float]]) -> tuple[tuple[float, float], tuple[float, float]]:
    """The (x, y) limits of the perception-distortion view: the arms with a margin, never the degraded input.

    Why: the input sits several dB and NIQE points away, and drawn to scale it squeezes the arms, whose
    differences are the point of the plot, into one dot.
    """
    arms = [xy for name, xy in points.items() if name != "input"] or list(points.values())
    xs, ys = [x for x, _ in arms], [y for _, y in arms]

    def padded(lo: float, hi: float, least: float) -> tuple[float, float]:
        pad = max((hi - lo) * 0.15, least)
        return lo - pad, hi + pad

    return padded(min(xs), max(xs), 0.1), padded(min(ys), max(ys), 0.1)


def _perception_distortion_figure(points: dict[str, tuple[float, float]], title: str, marked: tuple[str, ...] = ()):
    """PSNR (x, distortion) against NIQE (y, perception; lower is better), one point per arm, the dose order
    joined by a line; ``marked`` arms get a ring (the Compare tab marks the two arms on show). The view is the
    arms' (``pd_view``); the degraded input, when outside it, is named in a corner with its values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # 400 px wide: Compare shows it about that wide at 1440x900, so its 9-10 pt text stays >= 11 px on screen.
    fig, ax = plt.subplots(figsize=(4.0, 4.7), dpi=100, layout="constrained")
    (x0, x1), (y0, y1) = pd_view(points)
    dose = [points[a] for a in DOSE_ORDER if a in points]
    if len(dose) > 1:
        ax.plot(*zip(*dose), "-", color="0.6", lw=1.2, zorder=1, label="dose order (prior weight)")
    for arm, (x, y) in points.items():
        if arm == "input" and not (x0 <= x <= x1 and y0 <= y <= y1):
            ax.text(0.02, 0.02, f"degraded input (off view):\nPSNR {x:.2f} dB, NIQE {y:.2f}",
                    transform=ax.transAxes, fontsize=9, color="0.35", va="bottom")
            continue
        ax.scatter([x], [y], s=46, zorder=2, label=arm, **_arm_style(arm))
        if arm in marked:
            ax.scatter([x], [y], s=190, facecolors="none", edgecolors="k", linewidths=1.4, zorder=3)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("PSNR to ground truth (dB) →  less distortion", fontsize=10)
    ax.set_ylabel("NIQE (lower = more natural)", fontsize=10)
    ax.tick_params(labelsize=9)
    # Left-aligned and short: a picture's top right corner is under gradio's toolbar buttons.
    ax.set_title(title, fontsize=10, loc="left", pad=12)
    ax.grid(alpha=0.3)
    # Below the axes, never over the points (a legend "best" placed still covered the rain family's).
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    return fig


def perception_distortion_plot(points: dict[str, tuple[float, float]], title: str, out: Path,
                               marked: tuple[str, ...] = ()) -> Path:
    """The perception-distortion plot saved as a PNG (the report's figure)."""
    import matplotlib.pyplot as plt

    fig = _perception_distortion_figure(points, title, marked)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def perception_distortion_image(points: dict[str, tuple[float, float]], title: str,
                                marked: tuple[str, ...] = ()) -> np.ndarray:
    """The perception-distortion plot as an HxWx3 uint8 picture (the Compare tab's figure)."""
    import matplotlib.pyplot as plt

    fig = _perception_distortion_figure(points, title, marked)
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def validation_curve_plot(curve: list[dict], title: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.0), dpi=100)
    ax.plot([r["step"] for r in curve], [r["psnr"] for r in curve], "o-", color="C0", label="L2 base")
    ax.axhline(curve[-1]["input_psnr"], color="0.5", ls="--", label="degraded input")
    ax.set_xlabel("base training step (from the previous zoo's L2 arm)")
    ax.set_ylabel("validation PSNR (dB)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def crops_figure(outputs: dict[str, torch.Tensor], gt: torch.Tensor | None, versus: str, out: Path,
                 side: int = 96, zoom: int = 3) -> Path:
    """One row of crops (input, each arm, ground truth) where ``versus`` differs most from the L2 arm."""
    from PIL import Image, ImageDraw

    ref = outputs.get("l2")
    other = outputs.get(versus, ref)
    y, x = most_different_window(other, ref, side) if ref is not None else (0, 0)
    panels = [(name, img) for name, img in outputs.items()] + ([("ground truth", gt)] if gt is not None else [])
    tiles = []
    for name, img in panels:
        crop = img[:, y:y + side, x:x + side].clamp(0, 1)
        arr = (crop.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        tile = Image.fromarray(arr).resize((arr.shape[1] * zoom, arr.shape[0] * zoom), Image.NEAREST)
        canvas = Image.new("RGB", (tile.width, tile.height + 18), "white")
        canvas.paste(tile, (0, 18))
        ImageDraw.Draw(canvas).text((4, 3), name, fill="black")
        tiles.append(canvas)
    sheet = Image.new("RGB", (sum(t.width + 4 for t in tiles), max(t.height for t in tiles)), "white")
    left = 0
    for t in tiles:
        sheet.paste(t, (left, 0))
        left += t.width + 4
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


# ------------------------------------------------------------------------------------------------ verdicts
def is_visible(vs_l2: float | None) -> bool:
    """A person can see the difference: median PSNR between the two outputs at or below ``VISIBLE_DB``."""
    return vs_l2 is not None and vs_l2 <= VISIBLE_DB


def beyond_noise(vs_l2: float | None, floor: float | None) -> bool:
    """Further from the L2 arm than the reseeded L2 arm is (``floor``; no floor measured: nothing to be within)."""
    return vs_l2 is not None and (floor is None or vs_l2 < floor)


def verdicts(task: str, synthetic: dict[str, dict], comparisons: dict[str, dict]) -> list[str]:
    """Plain sentences: which arms differ visibly from the L2 arm, beyond what training noise alone does (the
    reseeded L2 arm), and whether each helped or hurt."""
    floor = (synthetic.get(CONTROL_ARM) or {}).get("psnr_vs_l2")
    lines = []
    if floor is not None:
        lines.append(f"- **{CONTROL_ARM}** (the L2 arm again, another seed): {floor:.1f} dB from the L2 arm: what "
                     "training noise alone does; a prior arm's difference counts only where it is further than this.")
    for arm, m in synthetic.items():
        if arm in ("input", "l2", CONTROL_ARM, BASE_ROW):
            continue
        vs = m.get("psnr_vs_l2")
        c = comparisons.get(arm, {})
        words = []
        for metric in ("psnr", "ssim", "haarpsi", "ms_gmsd", "niqe"):
            r = c.get(metric)
            if not r:
                continue
            sig = "significant" if r["p"] < SIGNIFICANT_P else "not significant"
            if metric == "niqe":  # no reference: a number, not a verdict (blind judges did not share its reading)
                how = f"NIQE {'lower' if r['mean_delta'] < 0 else 'higher'} (no reference, not a verdict)"
            else:
                better = r["mean_delta"] > 0 if HIGHER_IS_BETTER[metric] else r["mean_delta"] < 0
                how = f"{METRIC_LABELS.get(metric, metric.upper())} {'better' if better else 'worse'}"
            words.append(f"{how} by {abs(r['mean_delta']):.3g} "
                         f"({r['wins']}/{r['images']} images, sign test p={r['p']:.2g}, {sig})")
        seen = "visibly different from the L2 arm" if is_visible(vs) else "not visibly different from the L2 arm"
        if floor is not None and vs is not None and not beyond_noise(vs, floor):
            seen += ", and no further from it than training noise"
        lines.append(f"- **{arm}**: {seen} (median {_fmt(vs, 1)} dB between their outputs); " + "; ".join(words) + ".")
    return lines


# ------------------------------------------------------------------------------------------------ writing
def _fmt(v: float | None, digits: int) -> str:
    if v is None:
        return "–"
    return "inf" if v == float("inf") else f"{v:.{digits}f}"


def _previous_gain(task: str) -> dict:
    if not PREVIOUS_L2.is_file():
        return {}
    return json.loads(PREVIOUS_L2.read_text()).get("tasks", {}).get(task, {})


def measured_models(task: str, arms: dict[str, Path], run_folder: Path | None) -> dict[str, Path]:
    """What a task's section measures: the shipped family arms (any shipped arm when none is of the family), and
    from the build's run folder, when it is at hand, the L2 base and the arms that are not shipped (the control),
    in family order after the base."""
    def run_model(name: str) -> Path | None:
        folder = run_folder / name / "model" if run_folder is not None else None
        return folder if folder is not None and (folder / checkpoint.MODEL_FILE).is_file() else None

    base = run_model(BASE_ROW)
    out: dict[str, Path] = {BASE_ROW: base} if base is not None else {}
    for arm in FAMILY_ARMS:
        folder = arms.get(arm) or (run_model(arm) if not family_arm(arm).shipped else None)
        if folder is not None:
            out[arm] = folder
    if len(out) == (BASE_ROW in out):  # no family arm at all: an older zoo's folders, as they are
        out.update(arms)
    return out


class ReportError(RuntimeError):
    """The report cannot be written as asked without losing something the existing one measured."""


def run_folder(task: str, shipped_cards: dict[str, dict], paths: ZooPaths) -> Path | None:
    """The build's run folder of a task (its base and control), named by the recipe its shipped cards record."""
    recipe = next((str(c["recipe"]) for c in shipped_cards.values() if c.get("recipe")), None)
    return paths.runs / recipe / task if recipe else None


def rows_without_runs(task: str, arms: dict[str, Path], paths: ZooPaths, previous: dict) -> list[str]:
    """The rows a task's existing section measured from the build's run folder (the base, the control) that the
    run folder no longer holds: measuring the task now would silently drop them (and its training noise)."""
    cards = {arm: checkpoint.read_json(folder / checkpoint.CARD_FILE) for arm, folder in arms.items()}
    measured = measured_models(task, arms, run_folder(task, cards, paths))
    had = {row for source in previous.get("sources", []) for row in (source.get("means") or {})}
    return [row for row in (BASE_ROW, CONTROL_ARM) if row in had and row not in measured]


def task_section(task: str, arms: dict[str, Path], paths: ZooPaths, fig_dir: Path,
                 log: Callable[[str], None]) -> tuple[list[str], dict]:
    shipped_cards = {arm: checkpoint.read_json(folder / checkpoint.CARD_FILE) for arm, folder in arms.items()}
    measured = measured_models(task, arms, run_folder(task, shipped_cards, paths))
    cards = {arm: shipped_cards.get(arm) or checkpoint.read_json(folder / checkpoint.CARD_FILE)
             for arm, folder in measured.items() if arm != BASE_ROW}
    lines = [f"## {task}", ""]
    data: dict = {"arms": {}, "sources": [], "pd_points": {}}
    base = next((c.get("base") for c in cards.values() if c.get("base")), {}) or {}
    curve = base.get("validation_curve") or []
    if curve:
        plot = validation_curve_plot(curve, f"{task}: L2 base validation curve (8 clean/val crops)",
                                     fig_dir / f"{task}-base-curve.png")
        flat = base.get("validation_flat")
        start = ("continued from the previous zoo's L2 arm" if base.get("started_from")
                 else "from a fresh restorer (the identity)")
        lines += [f"**L2 base**: {base.get('steps')} steps at {base.get('crop')} px (batch {base.get('batch_size')}, "
                  f"lr {base.get('lr')}, {base.get('wall_time_s')} s on {base.get('device')}), {start}. "
                  f"Validation PSNR {curve[0]['psnr']:.2f} -> {curve[-1]['psnr']:.2f} dB "
                  f"(input {curve[-1]['input_psnr']:.2f}); curve "
                  f"{'flat over its last fifth' if flat else 'still rising' if flat is False else 'too short to judge'}. "
                  f"![validation curve]({FIGURES}/{plot.name})", ""]
        data["base"] = {k: base.get(k) for k in ("steps", "crop", "batch_size", "lr", "wall_time_s", "device")}
        data["base"].update(validation_curve=curve, validation_flat=flat)
    lines += ["| arm | what | gamma | lambda | t | crop, seed | prior share (training, last fifth) | terms flat (last "
              "fifth vs the one before: within 5 % or 2 s.e.) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for arm, card in cards.items():
        spec = card.get("arm") or ({"about": family_arm(arm).about, "gamma": 0.0, "lam": 0.0}
                                   if arm in FAMILY_ARMS and not family_arm(arm).uses_prior else {})
        run_log = paths.runs / str(card.get("recipe", "quick")) / task / arm / "log.csv"
        summary = training_summary(run_log) or card.get("training_summary")
        share = summary.get("prior_share_last_fifth") if summary else None
        flat = summary.get("flat") if summary else None
        drawn = spec.get("t_range") or [0, spec["t_max"] if spec.get("t_max") is not None else 999]
        t_range = f"{drawn[0]}..{drawn[1]}" + (f" ({spec['dose']})" if spec.get("dose") else "")
        config = card.get("config") or {}
        lines.append(f"| {arm} | {spec.get('about', 'an older zoo arm')} | {_fmt(spec.get('gamma'), 4)} | "
                     f"{_fmt(spec.get('lam'), 4)} | {t_range} | {config.get('crop', '–')} px, "
                     f"{(config.get('loop') or {}).get('seed', '–')} | "
                     f"{_fmt(share * 100 if share is not None else None, 1)} % | "
                     f"{'yes' if flat else 'no' if flat is False else '–'} |")
        data["arms"][arm] = {"path": shown_path(arms[arm]) if arm in arms else None,  # None: not shipped
                             "arm": spec, "training": summary,
                             "steps": card.get("steps"), "wall_time_s": card.get("wall_time_s")}
    calib = next((c.get("calibration") for c in cards.values() if c.get("calibration")), None)
    if calib and "all" in (calib.get("norms") or {}):
        released = shares_for_weights(calib["norms"]["all"], 1e-3, 1e-3)
        lines += ["", f"The released code's weights (gamma 1e-3, lambda 1e-3) would give the prior "
                      f"{(released['nat'] + released['sem']) * 100:.2f} % of the gradient through this base "
                      f"(L_nat {released['nat'] * 100:.2f} %, L_sem {released['sem'] * 100:.4f} %), and none at "
                      "all under their no_grad."]
        data["released_shares"] = released
    lines.append("")
    synthetic_means: dict[str, dict] = {}
    comparisons_synth: dict[str, dict] = {}
    for rs in sources_for(task, paths):
        log(f"[report] {task}: {rs.label}")
        result, kept = measure(measured, rs)
        n = len(result.images["input"])
        has_gt = rs.source.mode != "unpaired"
        # a column no image has (LPIPS offline; full-reference metrics without a ground truth) is left out
        shown = [c for c in COLUMNS if any(r.get(c[0]) is not None for rows in result.images.values() for r in rows)]
        lines += [f"**{rs.label}** ({n} images)", "", "| arm | " + " | ".join(c[1] for c in shown) + " |",
                  "| --- |" + " --- |" * len(shown)]
        table_means = {}
        for name, images in result.images.items():
            m = means(images)
            table_means[name] = m
            lines.append(f"| {name} | " + " | ".join(_fmt(m[k], d) for k, _, d in shown) + " |")
        comparisons = {arm: {metric: compare_arms(result.images[arm], result.images["l2"], metric)
                             for metric in HIGHER_IS_BETTER}
                       for arm in result.images if arm not in ("input", "l2") and "l2" in result.images}
        win_lines = []
        for arm, by_metric in comparisons.items():
            cells = [f"{m.upper()} {r['wins']}/{r['images']} (p={r['p']:.2g})" for m, r in by_metric.items() if r]
            win_lines.append(f"- {arm} vs l2, images where {arm} is better: " + ", ".join(cells))
        lines += ["", *win_lines, ""]
        if rs.synthetic:
            synthetic_means, comparisons_synth = table_means, comparisons
            points = {a: (m["psnr"], m["niqe"]) for a, m in table_means.items()
                      if m.get("psnr") is not None and m.get("niqe") is not None}
            pd = perception_distortion_plot(points, f"{task}: perception-distortion, clean/val",
                                            fig_dir / f"{task}-perception-distortion.png")
            data["pd_points"] = {a: {"psnr": p[0], "niqe": p[1]} for a, p in points.items()}
            lines += [f"![perception-distortion]({FIGURES}/{pd.name})", ""]
            if kept:
                versus = min((a for a in table_means if a in FAMILY_ARMS and family_arm(a).uses_prior),
                             key=lambda a: table_means[a].get("psnr_vs_l2") or 1e9, default="l2")
                outputs, gt = kept[0]
                crop = crops_figure(outputs, gt, versus, fig_dir / f"{task}-crops.png")
                lines += [f"Crops of {result.images['input'][0]['name']} where `{versus}` differs most from `l2` "
                          f"(3x, nearest): ![crops]({FIGURES}/{crop.name})", ""]
        gain = None
        if has_gt and "input" in result.images and "l2" in result.images:
            gain = {"median_db": median_gain(result.images["l2"], result.images["input"]),
                    "previous_zoo_db": _previous_gain(task).get(rs.label, {}).get("median_gain_db")}
            if BASE_ROW in result.images:
                gain["base_median_db"] = median_gain(result.images[BASE_ROW], result.images["input"])
                lines += [f"L2 base's median gain over the input: {gain['base_median_db']:+.2f} dB (the base is not "
                          "shipped; the arms are fine-tuned from it)."]
            lines += [f"L2 arm's median gain over the input: {gain['median_db']:+.2f} dB"
                      + (f" (previous zoo: {gain['previous_zoo_db']:+.2f} dB)" if gain["previous_zoo_db"] is not None
                         else "") + ".", ""]
        data["sources"].append({"source": rs.label, "mode": rs.source.mode, "images": n, "l2_gain": gain,
                                "means": table_means, "comparisons": comparisons,
                                "per_image": result.images,
                                # the shape studio.cards.measured_rows reads: one row per arm with its folder
                                "report": {"restorers": [{"name": a, "path": shown_path(arms[a]) if a in arms else None,
                                                          "mean": table_means[a], "images": len(result.images[a])}
                                                         for a in result.images if a != "input"]}})
    if synthetic_means:
        lines += ["**Verdicts (clean/val)**", "", *verdicts(task, synthetic_means, comparisons_synth), ""]
    return lines, data


def median_gain(restored: list[dict], inputs: list[dict]) -> float:
    """Median over images of the PSNR gained over the degraded input (dB)."""
    return statistics.median(a["psnr"] - b["psnr"] for a, b in zip(restored, inputs))


def synthetic_source(data: dict | None, task: str) -> dict | None:
    """A task's clean/val (synthetic) source in ``report.json``'s data: what the at-a-glance numbers are read from."""
    sections = ((data or {}).get("tasks", {}).get(task) or {}).get("sources", [])
    return next((s for s in sections if s.get("mode") == "synthetic"), None)


def most_visible_arm(data: dict | None, task: str) -> str | None:
    """The prior arm whose clean/val output lies furthest from the L2 arm's (lowest median PSNR vs L2), or None
    when the report has no such number for the task. Why: Compare opens on the difference a person can see, and
    which arm shows it best differs by task (the report measures it; no arm is assumed)."""
    means = (synthetic_source(data, task) or {}).get("means", {})
    distances = {arm: m["psnr_vs_l2"] for arm, m in means.items()
                 if arm in FAMILY_ARMS and family_arm(arm).uses_prior and isinstance(m, dict)
                 and m.get("psnr_vs_l2") is not None}
    return min(distances, key=distances.get) if distances else None


def summary_lines(data: dict) -> list[str]:
    """The family at a glance, one row per task, from ``report.json``'s data (clean/val): the L2 arm's PSNR and
    gain over the input (and the previous zoo's gain), then per prior arm its distance from the L2 arm's output
    and what it changed in PSNR and NIQE. REPORT.md opens with it; ``report --summary`` prints it for the README.
    """
    arms = list(PRIOR_ARMS)
    lines = [f"| task | input PSNR | base PSNR (gain) | `l2` PSNR (gain; previous zoo's) | training noise: "
             f"`{CONTROL_ARM}` vs `l2` | " + " | ".join(f"`{a}`: vs `l2` / ΔPSNR / ΔNIQE" for a in arms) + " |",
             "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in arms) + " |"]
    for task in [t for t in TASK_ORDER if t in data.get("tasks", {})]:
        synthetic = synthetic_source(data, task)
        if synthetic is None or "l2" not in synthetic["means"]:
            continue
        m, l2 = synthetic["means"], synthetic["means"]["l2"]
        gain, gained = synthetic.get("l2_gain") or {}, ""
        if gain:
            previous = gain.get("previous_zoo_db")
            gained = f" ({gain['median_db']:+.2f}" + (f"; {previous:+.2f}" if previous is not None else "") + ")"
        floor = (m.get(CONTROL_ARM) or {}).get("psnr_vs_l2")
        base = (m.get(BASE_ROW) or {}).get("psnr")
        base_gain = gain.get("base_median_db")
        cells = [_fmt(m.get("input", {}).get("psnr"), 2),
                 _fmt(base, 2) + (f" ({base_gain:+.2f})" if base_gain is not None else ""),
                 f"{l2['psnr']:.2f}{gained}", f"{floor:.1f} dB" if floor is not None else "–"]
        for arm in arms:
            a = m.get(arm)
            if not a:
                cells.append("–")
                continue
            vs = a.get("psnr_vs_l2")
            mark = "**" if is_visible(vs) and beyond_noise(vs, floor) else ""
            d_niqe = (a["niqe"] - l2["niqe"]) if a.get("niqe") is not None and l2.get("niqe") is not None else None
            cells.append(f"{mark}{_fmt(vs, 1)} dB{mark} / {a['psnr'] - l2['psnr']:+.2f} / "
                         + (f"{d_niqe:+.2f}" if d_niqe is not None else "–"))
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return lines


# ------------------------------------------------------------------------------------------ blind judgements
BLIND_DIR = "blind"  # report/blind/<task>/<arm>.json: `python -m diffloss.blind tally ... --save` records


def load_blind_tallies(blind_root: Path) -> dict[str, dict[str, dict]]:
    """task -> arm -> tally record, from ``blind_root/<task>/<arm>.json`` (none: an empty dict). A file that is
    not a tally is a ReportError: a judgement silently left out would change what the report says."""
    out: dict[str, dict[str, dict]] = {}
    for path in sorted(Path(blind_root).glob("*/*.json")):
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ReportError(f"{path} is not valid JSON ({err.msg}); rewrite it with diffloss.blind tally --save")
        if not isinstance(record, dict) or record.get("format") != TALLY_FORMAT or not _tally_complete(record):
            raise ReportError(f"{path} is not a blind tally ({TALLY_FORMAT}); write it with "
                              "diffloss.blind tally --save")
        out.setdefault(path.parent.name, {})[path.stem] = record
    return out


def _tally_complete(record: dict) -> bool:
    """The fields the blind section reads: two restorers, how often each was preferred, ties and p."""
    names, preferred = record.get("restorers"), record.get("preferred")
    return (isinstance(names, list) and len(names) == 2 and isinstance(preferred, dict)
            and all(isinstance(preferred.get(n), int) for n in names)
            and isinstance(record.get("ties"), int) and isinstance(record.get("p"), (int, float)))


def _versus_l2(record: dict) -> tuple[str, str, int, int]:
    """(arm, opponent, arm preferred, opponent preferred), the opponent being ``l2`` when it was judged."""
    a, b = record["restorers"]
    first, second = (b, a) if a == "l2" else (a, b)
    return first, second, record["preferred"][first], record["preferred"][second]


def blind_section(tallies: dict[str, dict[str, dict]], tasks: tuple[str, ...] = TASK_ORDER) -> list[str]:
    """The report's blind-judgement section: per task, each judged arm against ``l2`` (tally, sign test, judge,
    the panels' date and seed; "not judged" for a task without one), then how often each metric picks the side
    the judge picked on the same crops. Why: a metric is only worth quoting where it agrees with people."""
    lines = ["## Blind judgements", "",
             "Panels of two outputs side by side (names hidden, sides drawn from a recorded seed) beside the ground "
             "truth, judged with `python -m diffloss.blind`; half the crops where the two outputs differ most, half "
             "at random. p = exact two-sided sign test, ties dropped.", "",
             "| task | arm vs opponent | arm preferred | opponent preferred | ties | p | judge | panels made | seed |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    order = {arm: k for k, arm in enumerate(FAMILY_ARMS)}
    for task in tasks:
        records = tallies.get(task) or {}
        if not records:
            lines.append(f"| {task} | not judged | – | – | – | – | – | – | – |")
            continue
        for stem in sorted(records, key=lambda s: (order.get(s, len(order)), s)):
            record = records[stem]
            arm, other, won, lost = _versus_l2(record)
            judge = f"{record.get('judge_kind', '?')} x{record.get('judges', '?')}"
            lines.append(f"| {task} | `{arm}` vs `{other}` | {won} | {lost} | {record['ties']} | {record['p']:.2g} | "
                         f"{judge} | {str(record.get('panels_created', '–'))[:10]} | {record.get('seed', '–')} |")
    judged = [(task, r) for task in tasks for r in (tallies.get(task) or {}).values()]
    if judged:
        lines += ["", *agreement_lines(judged)]
    return lines + [""]


def agreement_totals(judged: list[tuple[str, dict]]) -> dict[str, dict[str, list[int]]]:
    """metric -> task (and "all") -> [panels where the metric picked the judge's side, decisive panels]."""
    tasks = list(dict.fromkeys(task for task, _ in judged))
    totals = {m: {t: [0, 0] for t in tasks + ["all"]} for m in AGREEMENT_METRICS}
    for task, record in judged:
        for metric in AGREEMENT_METRICS:
            cell = (record.get("agreement") or {}).get(metric) or {}
            for where in (task, "all"):
                totals[metric][where][0] += int(cell.get("agree", 0))
                totals[metric][where][1] += int(cell.get("panels", 0))
    return totals


def agreement_sentence(report: dict | None) -> str | None:
    """One line for a reader of metrics: how often each metric agreed with the blind judges of the report (None
    when nothing was judged). Why: a metric is worth reading only as far as it agrees with people."""
    tallies = (report or {}).get("blind") or {}
    judged = [(task, r) for task, records in tallies.items() for r in (records or {}).values()]
    totals = agreement_totals(judged)
    parts = [f"{METRIC_LABELS.get(m, m)} {100 * a / n:.0f} %" for m, cells in totals.items()
             for a, n in [cells["all"]] if n]
    if not parts:
        return None
    panels = max(cells["all"][1] for cells in totals.values())
    return (f"How far to trust each number: in the zoo report's blind A/B ({panels} decisive panels), the metric "
            f"picked the judges' side {', '.join(parts)} of the time (50 % is a coin toss).")


def agreement_lines(judged: list[tuple[str, dict]]) -> list[str]:
    """How often each metric, computed on a panel's crops, picks the side the judge picked (decisive panels the
    metric does not tie on), per task and over all."""
    tasks = list(dict.fromkeys(task for task, _ in judged))
    totals = agreement_totals(judged)

    def share(agree: int, n: int) -> str:
        return f"{agree}/{n} ({100 * agree / n:.0f} %)" if n else "–"

    lines = ["How often a metric picks the judge's side (panels where the judge and the metric both chose):", "",
             "| metric | " + " | ".join(tasks) + " | all |", "| --- |" + " --- |" * (len(tasks) + 1)]
    for metric in AGREEMENT_METRICS:
        label = f"{METRIC_LABELS.get(metric, metric)} {'↑' if HIGHER_IS_BETTER[metric] else '↓'}"
        lines.append(f"| {label} | " + " | ".join(share(*totals[metric][w]) for w in tasks + ["all"]) + " |")
    return lines


def write_report(paths: ZooPaths, out_dir: Path | None = None, log: Callable[[str], None] = print,
                 tasks: tuple[str, ...] | None = None) -> Path:
    """Measure every shipped arm of every task on every available source; write REPORT.md, report.json, figures.

    ``tasks``: measure only these and keep the other tasks' sections from the existing report.json (so a task
    whose family was rebuilt is measured again without measuring the rest); an empty tuple measures nothing and
    rewrites the report around the blind judgements on file (``report --blind-only``). Refuses (``ReportError``, nothing
    written) to measure a task whose base or control the existing report measured but ``paths.runs`` lacks."""
    out_dir = Path(out_dir or paths.pretrained)
    fig_dir = out_dir / FIGURES
    shipped = shipped_restorers(paths.pretrained)
    previous = checkpoint.read_json(out_dir / REPORT_JSON) if (out_dir / REPORT_JSON).is_file() else {}
    tallies = load_blind_tallies(fig_dir / BLIND_DIR)  # read first: a bad file stops the report before it measures
    lost: dict[str, list[str]] = {}
    for task in TASK_ORDER:
        if (tasks is not None and task not in tasks) or "l2" not in shipped.get(task, {}):
            continue
        rows = rows_without_runs(task, shipped[task], paths, (previous.get("tasks") or {}).get(task) or {})
        if rows:
            lost[task] = rows
    if lost:
        raise ReportError(
            "the existing report measured rows that the runs folder no longer holds: "
            + "; ".join(f"{task}: {', '.join(rows)}" for task, rows in lost.items())
            + f" (looked in {paths.runs}). Measuring them now would drop those rows: rebuild those tasks "
            "(python -m diffloss.zoo build --quick --only TASK), point --runs at the build's runs, or measure the "
            "other tasks with --tasks.")
    head = ["# DiffLoss Studio: the dose-response family of each task", "",
             "Generated by `python -m diffloss.zoo report`; do not edit by hand. Every arm of a task is fine-tuned "
             "from the same L2 base with the same seed, batches and steps; only the prior's weight and dose (the "
             "timesteps it draws, their weights, the gradient's form: each arm's card says) differ. `input` is the "
             "degraded image itself. PSNR vs L2 = median "
             f"PSNR between this arm's output and the L2 arm's (<= {VISIBLE_DB:.0f} dB: visible). Wins = images where "
             "the arm is strictly better than the L2 arm; p = two-sided sign test.", "",
             f"Conventions: {CONVENTIONS}; {PERCEPTUAL_CONVENTIONS}. LPIPS: unavailable offline here (its "
             "backbone cannot be loaded), never estimated.", ""]
    lines: list[str] = []  # the task sections, after the head and the at-a-glance table
    data: dict = {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  "visible_db": VISIBLE_DB, "tasks": {}}
    for task in TASK_ORDER:
        arms = shipped.get(task, {})
        kept = (previous.get("tasks") or {}).get(task)
        if tasks is not None and task not in tasks:
            if kept and kept.get("markdown"):
                lines += kept["markdown"]
                data["tasks"][task] = kept
            else:
                lines += [f"## {task}", "", "Not measured yet (`python -m diffloss.zoo report --tasks "
                          f"{task}`).", ""]
            continue
        if "l2" not in arms or len(arms) < 2:
            lines += [f"## {task}", "", f"Not shipped yet (found arms: {sorted(arms) or 'none'}).", ""]
            continue
        section, task_data = task_section(task, arms, paths, fig_dir, log)
        lines += section
        data["tasks"][task] = {**task_data, "markdown": section}
    glance = [f"## At a glance (clean/val; **bold**: visibly different from the L2 arm, <= {VISIBLE_DB:.0f} dB and "
              "further from it than training noise)", "", *summary_lines(data), ""]
    data["blind"] = tallies
    md = out_dir / "REPORT.md"
    checkpoint.atomic_write_text(md, "\n".join(head + glance + lines + blind_section(tallies)) + "\n")
    checkpoint.atomic_write_json(out_dir / REPORT_JSON, json.loads(json.dumps(data, default=_json_default)))
    return md


def _json_default(value):
    if isinstance(value, float) and not np.isfinite(value):
        return "inf"
    return str(value)


def report_lpips_missing(data: dict) -> bool:
    """True when no LPIPS value was measured anywhere in a report (the UI then hides the column)."""
    return not any(m.get("lpips") is not None for t in data.get("tasks", {}).values()
                   for s in t.get("sources", []) for m in (s.get("means") or {}).values())
