"""``pretrained/REPORT.md`` and ``report.json``: the shipped L2 and DiffLoss arms, side by side, on held-out data.

Generated, never written by hand: ``python -m diffloss.zoo report``. Per task, every validation source the data
allows (synthetic degradations of ``clean/val`` with fixed seeds; the SOTS validation scenes; the three real rain
pairs; the real unpaired low-light photos with the no-reference metric only). For each metric: the mean over
images and the number of images where the DiffLoss arm beats the L2 arm. Plain words where DiffLoss does not help.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path

from diffloss import checkpoint
from diffloss.evaluate import EvalReport, EvalSource, evaluate, iter_samples
from diffloss.metrics import CONVENTIONS, psnr
from diffloss.nets import load_restorer, restore
from diffloss.zoo import SOTS_VAL_SCENES, TASK_ORDER, ZooPaths, shipped_restorers

HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "niqe": False, "lpips": False}
REPORT_JSON = "report.json"  # in the pretrained folder, beside REPORT.md; the app reads it (studio.models)
SYNTHETIC_LIMIT = 24
UNPAIRED_LIMIT = 16


@dataclass(frozen=True)
class ReportSource:
    label: str
    source: EvalSource


def sources_for(task: str, paths: ZooPaths) -> list[ReportSource]:
    """Every held-out source that exists on this machine for a task (none of them is ever trained on)."""
    out = []
    if paths.clean_val.is_dir():
        out.append(ReportSource(f"clean/val, synthetic {task} (seeds 0..{SYNTHETIC_LIMIT - 1})",
                                EvalSource("synthetic", paths.clean_val, task, limit=SYNTHETIC_LIMIT)))
    real = {
        "haze": [("SOTS-indoor validation scenes 1430-1434", "paired", paths.sots, SOTS_VAL_SCENES)],
        "rain": [("Rain100L sample (3 real pairs)", "paired", paths.datasets / "rain" / "rain100l_sample", None)],
        "lowlight": [("DICM (real, no ground truth)", "unpaired", paths.datasets / "lowlight" / "dicm_unpaired", None),
                     ("LIME (real, no ground truth)", "unpaired", paths.datasets / "lowlight" / "lime_unpaired", None)],
    }
    for label, mode, root, include in real.get(task, []):
        if root.is_dir():
            limit = UNPAIRED_LIMIT if mode == "unpaired" else None
            out.append(ReportSource(label, EvalSource(mode, root, task, limit=limit, max_side=768, include=include)))
    return out


def wins(report: EvalReport, metric: str, a: str = "diffloss", b: str = "l2") -> tuple[int, int]:
    """(images where arm ``a`` is strictly better than ``b`` on ``metric``, images with the metric)."""
    better = 0
    total = 0
    for x, y in zip(report.row(a).images, report.row(b).images):
        if x.get(metric) is None or y.get(metric) is None:
            continue
        total += 1
        if (x[metric] > y[metric]) if HIGHER_IS_BETTER[metric] else (x[metric] < y[metric]):
            better += 1
    return better, total


def verdict(report: EvalReport) -> str:
    """One plain sentence on whether the DiffLoss arm helped on this source."""
    diff, l2 = report.row("diffloss").means(), report.row("l2").means()
    parts = []
    for metric, higher in HIGHER_IS_BETTER.items():
        if diff.get(metric) is None or l2.get(metric) is None:
            continue
        delta = diff[metric] - l2[metric]
        good = delta > 0 if higher else delta < 0
        won, n = wins(report, metric)
        parts.append((metric, good, delta, won, n))
    if not parts:
        return "No metric could be computed."
    helped = [p for p in parts if p[1]]
    words = ", ".join(f"{m.upper()} {'+' if d >= 0 else ''}{d:.3g} ({w}/{n} images)" for m, _, d, w, n in parts)
    if not helped:
        return f"DiffLoss did not help here: {words}."
    if len(helped) == len(parts):
        return f"DiffLoss helped on every metric: {words}."
    return f"Mixed: {words}."


def fp16_agreement(shipped: Path, full_precision: Path, source: EvalSource, images: int = 4) -> float | None:
    """Lowest PSNR (dB) between the shipped fp16 arm's output and its fp32 original's over a few val images.

    Why: the zoo stores restorers in fp16 to halve their size; this number says whether that costs anything
    measurable (above ~50 dB the two outputs differ by less than one 8-bit level). None when the fp32 run is gone.
    """
    if not (full_precision / checkpoint.MODEL_FILE).is_file():
        return None
    half, full = load_restorer(shipped), load_restorer(full_precision)
    worst = None
    for k, sample in enumerate(iter_samples(source)):
        if k >= images:
            break
        value = psnr(restore(half, sample.net_input), restore(full, sample.net_input))
        worst = value if worst is None else min(worst, value)
    return worst


def _fmt(v: float | None, digits: int) -> str:
    return "unavailable" if v is None else f"{v:.{digits}f}"


def write_report(paths: ZooPaths, out_dir: Path | None = None) -> Path:
    """Evaluate both arms of every shipped task on every available source; write REPORT.md and report.json."""
    out_dir = Path(out_dir or paths.pretrained)
    shipped = shipped_restorers(paths.pretrained)
    lines = ["# DiffLoss Studio: shipped restorers, L2 arm vs DiffLoss arm", "",
             "Generated by `python -m diffloss.zoo report`; do not edit by hand. "
             "Wins = images where the DiffLoss arm is strictly better than the L2 arm. "
             "`input` is the degraded image itself.", "", f"Conventions: {CONVENTIONS}", ""]
    data: dict = {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "tasks": {}}
    for task in TASK_ORDER:
        arms = shipped.get(task, {})
        lines += [f"## {task}", ""]
        if set(arms) != {"l2", "diffloss"}:
            lines += [f"Not shipped yet (found arms: {sorted(arms) or 'none'}).", ""]
            continue
        cards = {arm: checkpoint.read_json(folder / checkpoint.CARD_FILE) for arm, folder in arms.items()}
        calib = cards["diffloss"].get("calibration", {})
        lines += [f"Arms fine-tuned for {cards['l2'].get('steps')} steps from one L2 base; DiffLoss weights "
                  f"gamma={calib.get('gamma', float('nan')):.4g}, lambda={calib.get('lam', float('nan')):.4g} "
                  f"(calibrated on clean/val). Device: {cards['diffloss'].get('device')}.", ""]
        task_data = []
        fp16 = {}
        if paths.clean_val.is_dir():
            probe = EvalSource("synthetic", paths.clean_val, task)
            fp16 = {arm: fp16_agreement(folder, paths.runs / str(cards[arm].get("recipe", "quick")) / task / arm / "model",
                                        probe) for arm, folder in arms.items()}
            known = {arm: v for arm, v in fp16.items() if v is not None}
            if known:
                lines += ["fp16 storage vs the fp32 weights it came from (lowest PSNR between their outputs, 4 val "
                          "images): " + ", ".join(f"{arm} {v:.1f} dB" for arm, v in known.items()) + ".", ""]
        for rs in sources_for(task, paths):
            report = evaluate({"l2": arms["l2"], "diffloss": arms["diffloss"]}, rs.source)
            lines += [f"**{rs.label}** ({len(report.rows[0].images)} images)", "",
                      "| arm | PSNR ↑ | SSIM ↑ | NIQE ↓ | LPIPS ↓ |", "| --- | --- | --- | --- | --- |"]
            for row in report.rows:
                m = row.means()
                name = "input" if row.name == "identity" else row.name
                lines.append(f"| {name} | {_fmt(m['psnr'], 2)} | {_fmt(m['ssim'], 4)} | {_fmt(m['niqe'], 3)} | "
                             f"{_fmt(m['lpips'], 4)} |")
            win_cells = []
            for metric in HIGHER_IS_BETTER:
                won, n = wins(report, metric)
                if n:
                    win_cells.append(f"{metric.upper()} {won}/{n}")
            lines += ["", f"DiffLoss wins: {', '.join(win_cells) or 'n/a'}. {verdict(report)}", ""]
            task_data.append({"source": rs.label, "report": report.to_dict(),
                              "wins": {m: wins(report, m) for m in HIGHER_IS_BETTER}, "verdict": verdict(report)})
        data["tasks"][task] = {"arms": {a: str(f) for a, f in arms.items()}, "calibration": calib,
                               "fp16_vs_fp32_psnr_db": fp16, "sources": task_data}
    if report_lpips_missing(data):
        lines += ["LPIPS: unavailable (its backbone weights cannot be loaded offline here); never estimated.", ""]
    md = out_dir / "REPORT.md"
    checkpoint.atomic_write_text(md, "\n".join(lines) + "\n")
    checkpoint.atomic_write_json(out_dir / REPORT_JSON, json.loads(json.dumps(data, default=str)))
    return md


def report_lpips_missing(data: dict) -> bool:
    return any(s["report"]["lpips"] != "computed" for t in data["tasks"].values() for s in t["sources"])
