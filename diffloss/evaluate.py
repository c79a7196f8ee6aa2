"""Evaluation reports: restorers, and the degraded input itself, measured on one source of images.

One library call, :func:`evaluate`, serves the CLI (``python -m diffloss.evaluate``), the zoo report and the app.
The degraded input is always measured too (the ``identity`` row): a restorer's number means little until it is
set against what the restorer was given. Synthetic pairs are reproducible: image ``i`` of a clean folder is
degraded with seed ``base_seed + i``, so two runs (or two restorers) see bit-identical inputs. With a reference
restorer (``--reference l2``) every other one is compared with it as the zoo report does: the median PSNR between
their outputs (the README's "vs l2"), the change of each metric, per-image wins and a verdict. The zoo report's
clean/val numbers are ``--clean DATASETS/clean/val --limit 24 --max-side 256`` (seeds 0..23).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from diffloss import degrade, perceptual
from diffloss.checkpoint import CheckpointError, atomic_write_json, atomic_write_text
from diffloss.data import PairedFolder
from diffloss.images import list_images, load_image
from diffloss.metrics import (CONVENTIONS, HIGHER_IS_BETTER, MS_SSIM_MIN_SIDE, compute_metrics, load_lpips, ms_ssim,
                              psnr)
from diffloss.nets import load_restorer, restore
from diffloss.paths import runs_folder

IDENTITY = "identity"  # the pseudo-restorer that returns the degraded input
MODES = ("paired", "synthetic", "unpaired")
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
VS_REFERENCE = "psnr_vs_reference"  # per image: PSNR between a restorer's output and the reference restorer's

Progress = Callable[[int, int, str], None]  # (images done, images in total, current image name)
Warn = Callable[[str], None]


class EvalError(ValueError):
    """Evaluation cannot run as asked; the message is one line a person can act on."""


# ---------------------------------------------------------------- full-reference perceptual metrics: the hook
# metric -> higher is better: MS-SSIM and diffloss.perceptual's metrics (HaarPSI, MDSI, MS-GMSDc). A metric added to
# perceptual_metrics and named here reaches results.json, the table, the win counts and the verdicts with no other
# change (METRICS, DIRECTIONS and the labels below are built from it).
PERCEPTUAL_HIGHER_IS_BETTER: dict[str, bool] = {"ms_ssim": True, **perceptual.PERCEPTUAL_HIGHER_IS_BETTER}
PERCEPTUAL_CONVENTIONS = (f"MS-SSIM: torchmetrics, 5 scales, Gaussian 11x11 sigma 1.5, RGB, data_range=1, n/a below "
                          f"{MS_SSIM_MIN_SIDE} px a side; {perceptual.CONVENTIONS}")


def perceptual_metrics(restored: torch.Tensor, gt: torch.Tensor | None) -> dict[str, float | None]:
    """Full-reference perceptual metrics of one restored image against its ground truth ((3,H,W) in [0,1]):
    one value per name in :data:`PERCEPTUAL_HIGHER_IS_BETTER`, None where undefined (no ground truth, or an
    image too small for the metric)."""
    if gt is None:
        return {name: None for name in PERCEPTUAL_HIGHER_IS_BETTER}
    return {"ms_ssim": ms_ssim(restored, gt), **perceptual.perceptual_metrics(restored, gt)}


METRICS = ("psnr", "ssim", "niqe", "lpips", *PERCEPTUAL_HIGHER_IS_BETTER)
DIRECTIONS = {**HIGHER_IS_BETTER, **PERCEPTUAL_HIGHER_IS_BETTER}  # metric -> higher is better
LABELS = {"psnr": ("PSNR (dB)", 2), "ssim": ("SSIM", 4), "niqe": ("NIQE", 3), "lpips": ("LPIPS", 4),
          "ms_ssim": ("MS-SSIM", 4),
          **{name: (m.label.rstrip(" ↑↓"), 4) for name, m in perceptual.PERCEPTUAL.items()}}
# table header and digits of each metric; one not listed: its name upper-cased, 4 digits


def _label(metric: str) -> tuple[str, int]:
    """(table header with its direction arrow, digits) of a metric."""
    name, digits = LABELS.get(metric, (metric.upper(), 4))
    return f"{name} {'↑' if DIRECTIONS[metric] else '↓'}", digits


def _short(metric: str) -> str:
    return LABELS.get(metric, (metric.upper(), 4))[0].split(" (")[0]


@dataclass(frozen=True)
class EvalSource:
    """Where the images come from.

    ``paired``: real pairs ``root/lq`` + ``root/gt`` matched by name (``task`` optional: it only shapes the
    restorer input, e.g. for sr4; when absent it is taken from the restorers' configs).
    ``synthetic``: clean photos in ``root`` degraded for ``task``, image ``i`` with seed ``base_seed + i``.
    ``unpaired``: real degraded photos in ``root`` for ``task``, no ground truth, so NIQE only.
    """

    mode: str
    root: Path
    task: str | None = None
    limit: int | None = None
    max_side: int | None = None
    base_seed: int = 0
    include: tuple[str, ...] | None = None  # keep only files whose name starts with one of these (held-out scenes)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        if self.mode not in MODES:
            raise ValueError(f"unknown source mode {self.mode!r}; choose one of: {', '.join(MODES)}")
        if self.mode != "paired" and self.task is None:
            raise ValueError(f"a {self.mode} source needs a task (what degradation the images carry)")
        if self.task is not None:
            degrade.get_task(self.task)  # ValueError listing the tasks
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")

    def describe(self) -> dict:
        d = asdict(self)
        d["root"] = str(self.root)
        return d


@dataclass
class Sample:
    """One evaluation image: what every restorer receives, and the answer when there is one."""

    name: str
    net_input: torch.Tensor  # (C,H,W)
    gt: torch.Tensor | None  # (3,H,W)
    seed: int | None = None


@dataclass
class RestorerResult:
    """One table row: a restorer's per-image metrics and their means."""

    name: str
    path: str | None
    images: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def means(self) -> dict[str, float | None]:
        """Mean of each metric over the images that have it (None when no image has it); the distance to the
        reference restorer's output (when measured) as a median, as the zoo report gives it."""
        out: dict[str, float | None] = {}
        for key in METRICS:
            values = [r[key] for r in self.images if r.get(key) is not None]
            out[key] = float(np.mean(values)) if values else None
        distances = [r[VS_REFERENCE] for r in self.images if r.get(VS_REFERENCE) is not None]
        if distances:
            out[VS_REFERENCE] = float(statistics.median(distances))
        return out

    def median_gain(self, baseline: "RestorerResult") -> float | None:
        """Median over images of the PSNR gained over ``baseline`` (dB): the README's and zoo report's "gain"."""
        gains = [a["psnr"] - b["psnr"] for a, b in zip(self.images, baseline.images)
                 if a.get("psnr") is not None and b.get("psnr") is not None]
        gains = [g for g in gains if math.isfinite(g)]
        return float(statistics.median(gains)) if gains else None


@dataclass
class EvalReport:
    """Everything a results.json / results.md holds; ``rows[0]`` is always the identity baseline."""

    source: EvalSource
    task: str | None
    rows: list[RestorerResult]
    lpips_note: str  # "" when LPIPS was computed, else why not
    conventions: str = f"{CONVENTIONS}; {PERCEPTUAL_CONVENTIONS}"
    created: str = ""
    reference: str | None = None  # the restorer the others are compared with (distance, wins, verdicts)
    warnings: list[str] = field(default_factory=list)

    def row(self, name: str) -> RestorerResult:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no restorer {name!r} in this report (have: {', '.join(r.name for r in self.rows)})")

    def to_dict(self) -> dict:
        """JSON-ready: a non-finite PSNR (identical images) is written as the string "inf"."""
        return {
            "source": self.source.describe(),
            "task": self.task,
            "conventions": self.conventions,
            "lpips": "computed" if not self.lpips_note else self.lpips_note,
            "created": self.created,
            "reference": self.reference,
            "warnings": list(self.warnings),
            "restorers": [
                {
                    "name": r.name,
                    "path": r.path,
                    "mean": _json_safe(r.means()),
                    "median_psnr_gain_over_input": r.median_gain(self.rows[0]) if r.name != IDENTITY else None,
                    "seconds_per_image": r.seconds / max(1, len(r.images)),
                    "images": [_json_safe(i) for i in r.images],
                }
                for r in self.rows
            ],
        }

    def to_markdown(self, standalone: bool = True) -> str:
        """A table a person reads: one row per restorer, the input first, then how far each one moved from it.

        ``standalone=False`` leaves out the title, the pointer to results.json and the comparison section (for
        embedding, e.g. the app).
        """
        s = self.source
        has_gt = s.mode != "unpaired"
        what = {"paired": "real pairs", "synthetic": f"synthetic {self.task} (seeds {s.base_seed}+i)", "unpaired": "real degraded photos, no ground truth"}[s.mode]
        n = len(self.rows[0].images) if self.rows else 0
        lines = [f"# Evaluation: {s.root.name} ({what})", ""] if standalone else []
        # a metric no image has is left out (MS-SSIM on small images), LPIPS is kept to say it is unavailable
        shown = [m for m in METRICS if m == "lpips" or any(r.means()[m] is not None for r in self.rows)]
        lines += [
            f"Task: {self.task or 'n/a'}; {n} images from `{s.root}`" + (f", longer side <= {s.max_side}" if s.max_side else "") + ".",
            "",
            "| restorer | " + " | ".join(_label(m)[0] for m in shown) + " | PSNR gain over input (median) | s / image |",
            "| --- |" + " --- |" * (len(shown) + 2),
        ]
        for r in self.rows:
            m = r.means()
            gain = "" if r.name == IDENTITY else _fmt(r.median_gain(self.rows[0]), 2, signed=True)
            cells = []
            for metric in shown:
                if m[metric] is None and metric == "lpips" and has_gt:
                    cells.append("unavailable")
                else:
                    cells.append(_fmt(m[metric], _label(metric)[1]))
            lines.append(f"| {r.name} | " + " | ".join(cells) + f" | {gain} | {r.seconds / max(1, len(r.images)):.2f} |")
        lines += ["", f"Conventions: {self.conventions}."]
        if self.lpips_note and has_gt:
            lines.append(f"{self.lpips_note}.")
        if not has_gt:
            lines.append("No ground truth: PSNR, SSIM and LPIPS are n/a; NIQE is the only number.")
        lines.append("Identity = the restorer's input itself (the degraded image); gain = median over images of the "
                     "PSNR gained over it." + (f" Per-image values: {RESULTS_JSON}." if standalone else ""))
        if standalone:  # an embedding (the app's Evaluate) compares the arms its own way
            lines += self.comparison_lines()
        if self.warnings:
            lines += ["", *[f"**Warning:** {w}" for w in self.warnings]]
        return "\n".join(lines) + "\n"

    def comparison_lines(self) -> list[str]:
        """Each restorer against the reference (or, without one, against the input): the median PSNR between
        their outputs, the change of every metric, per-image wins and a verdict in words."""
        others = [r for r in self.rows if r.name not in (IDENTITY, self.reference)]
        versus = self.reference or IDENTITY
        if not others:
            return []
        metrics = [m for m in METRICS if any(r.means()[m] is not None for r in self.rows)]
        head = ["", f"**Against `{versus}`**" + (" (the reference)" if self.reference else " (the input)")
                + ": Δ = this restorer's mean minus its; wins = images where this restorer is strictly better."]
        columns = ([f"vs {versus} (median PSNR between outputs, dB)"] if self.reference else []) \
            + [f"Δ{_short(m)}" for m in metrics] + ["wins"]
        lines = head + ["", "| restorer | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
        base = self.row(versus).means()
        verdicts = []
        for r in others:
            m = r.means()
            cells = [_fmt(m.get(VS_REFERENCE), 1)] if self.reference else []
            cells += [_fmt(m[k] - base[k], _label(k)[1], signed=True) if m[k] is not None and base[k] is not None
                      else "n/a" for k in metrics]
            counts = [f"{_short(k)} {w}/{n}" for k in metrics for w, n in [wins(self, k, r.name, versus)] if n]
            cells.append(", ".join(counts) or "n/a")
            lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
            verdicts.append(f"- **{r.name}**: {verdict(self, r.name, versus)}")
        return lines + ["", *verdicts]

    def save(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``results.json`` and ``results.md`` atomically; returns their paths."""
        out = Path(out_dir)
        atomic_write_json(out / RESULTS_JSON, self.to_dict())
        md = self.to_markdown()
        atomic_write_text(out / RESULTS_MD, md)
        return out / RESULTS_JSON, out / RESULTS_MD


def _fmt(v: float | None, digits: int, signed: bool = False) -> str:
    if v is None:
        return "n/a"
    if math.isinf(v):
        return "inf"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _json_safe(d: dict) -> dict:
    return {k: ("inf" if isinstance(v, float) and math.isinf(v) else v) for k, v in d.items()}


# ---------------------------------------------------------------- images


def _infer_task(source: EvalSource, models: dict[str, torch.nn.Module]) -> str | None:
    """The source's task, else the one all restorers were trained for (paired folders carry no task)."""
    if source.task is not None:
        return source.task
    tasks = {getattr(getattr(m, "config", None), "task", None) for m in models.values()} - {None}
    if len(tasks) > 1:
        raise ValueError(f"restorers were trained for different tasks {sorted(tasks)}; give the task explicitly")
    return tasks.pop() if tasks else None


def iter_samples(source: EvalSource, task: str | None = None) -> Iterator[Sample]:
    """The source's images as :class:`Sample`, in file-name order, at most ``source.limit`` of them."""
    task = source.task if task is None else task
    if source.mode == "paired":
        names = None
        if source.include:
            names = [p.name for p in list_images(source.root / "lq") if p.name.startswith(source.include)]
        pairs = PairedFolder(source.root, names=names, max_side=source.max_side)
        for i in range(min(len(pairs), source.limit or len(pairs))):
            item = pairs[i]
            net_input = degrade.prepare_input(task, item["lq"]) if task else item["lq"]
            if net_input.shape[-2:] != item["gt"].shape[-2:]:
                raise ValueError(
                    f"{item['name']}: the {task} input is {tuple(net_input.shape[-2:])} but gt is "
                    f"{tuple(item['gt'].shape[-2:])}; paired evaluation needs them to match"
                )
            yield Sample(item["name"], net_input, item["gt"])
        return
    files = [p for p in list_images(source.root) if not source.include or p.name.startswith(source.include)]
    files = files[: source.limit]
    if not files:
        raise ValueError(f"no images found in {source.root}")
    multiple = degrade.get_task(task).size_multiple
    for i, path in enumerate(files):
        img = load_image(path, source.max_side)
        if source.mode == "synthetic":
            clean = degrade.crop_to_multiple(img, multiple)
            seed = source.base_seed + i
            yield Sample(path.name, degrade.make_pair(task, clean, seed).net_input[0], clean, seed)
        else:
            yield Sample(path.name, degrade.prepare_input(task, img), None)


# ---------------------------------------------------------------- evaluation


def _run(model: torch.nn.Module | None, net_input: torch.Tensor, tile: int | None) -> torch.Tensor:
    """A restorer's output as (3,H,W) in [0,1]; ``None`` is the identity (the input's RGB channels)."""
    if model is None:
        out = net_input[:3]
    else:
        out = restore(model, net_input, tile=tile)
    out = out[0] if out.dim() == 4 else out
    return out.detach().float().cpu().clamp(0, 1)


def load_restorers(restorers: dict[str, str | Path]) -> dict[str, torch.nn.Module]:
    """Each restorer folder loaded; EvalError naming the restorer when a folder is missing or not a restorer."""
    models = {}
    for name, path in restorers.items():
        try:
            models[name] = load_restorer(path)
        except (CheckpointError, OSError, ValueError) as err:
            raise EvalError(f"restorer {name!r}: {err}") from None
    return models


def check_restorers(models: dict[str, torch.nn.Module], task: str | None) -> list[str]:
    """Warnings for restorers trained for another task than the one evaluated; EvalError for a restorer whose
    input channels the task's inputs cannot fill (a 4-channel inpainting net on a 3-channel task, or the reverse).

    Why: a restorer of another task runs without complaint and gives numbers that mean nothing for this one
    (the sr4 net on noise came out below the noisy input)."""
    warnings = []
    channels = degrade.get_task(task).in_channels if task else 3
    for name, model in models.items():
        config = getattr(model, "config", None)
        trained_for = getattr(config, "task", None)
        wants = getattr(config, "in_channels", channels)
        if wants != channels:
            raise EvalError(f"restorer {name!r} takes {wants} input channels (it was trained for {trained_for}) but "
                            f"{task or 'these'} inputs have {channels}: evaluate it with --task {trained_for}")
        if task and trained_for and trained_for != task:
            warnings.append(f"restorer {name!r} was trained for {trained_for}, not {task}: its numbers here say how "
                            f"a {trained_for} restorer does on {task} inputs, not how well {task} can be restored")
    return warnings


def evaluate(
    restorers: dict[str, str | Path],
    source: EvalSource,
    tile: int | None = None,
    lpips: bool = True,
    progress: Progress | None = None,
    reference: str | None = None,
    warn: Warn | None = None,
) -> EvalReport:
    """Measure each restorer folder (and the identity baseline) on every image of ``source``.

    restorers: display name -> restorer folder (loaded with ``diffloss.nets.load_restorer``); may be empty, the
    report then holds the baseline only. lpips: try LPIPS (offline only); the report says why when it is absent.
    reference: one of the restorers' names; every image also gets the PSNR between each output and the
    reference's (``psnr_vs_reference``), and the report compares every restorer with it. warn: called at once
    with each warning (a restorer of another task), which the report also keeps.
    """
    if IDENTITY in restorers:
        raise ValueError(f"{IDENTITY!r} is reserved for the input baseline; give the restorer another name")
    if reference is not None and reference not in restorers:
        raise EvalError(f"--reference {reference!r} is not one of the restorers ({', '.join(restorers) or 'none'})")
    models = load_restorers(restorers)
    task = _infer_task(source, models)
    warnings = check_restorers(models, task)
    for message in warnings:
        if warn is not None:
            warn(message)
    lpips_fn, lpips_note = load_lpips() if lpips else (None, "LPIPS unavailable: not requested")
    rows = [RestorerResult(IDENTITY, None)] + [RestorerResult(n, str(p)) for n, p in restorers.items()]
    samples = list(iter_samples(source, task))
    for k, sample in enumerate(samples):
        if progress is not None:
            progress(k, len(samples), sample.name)
        outputs = {}
        for row in rows:
            t0 = time.perf_counter()
            outputs[row.name] = _run(models.get(row.name), sample.net_input, tile)
            row.seconds += time.perf_counter() - t0
        for row in rows:
            out = outputs[row.name]
            metrics = {**compute_metrics(out, sample.gt, lpips_fn), **perceptual_metrics(out, sample.gt)}
            if reference is not None and row.name != reference:
                metrics[VS_REFERENCE] = psnr(out, outputs[reference])
            row.images.append({"name": sample.name, "seed": sample.seed, **metrics})
    if progress is not None:
        progress(len(samples), len(samples), "")
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return EvalReport(source=source, task=task, rows=rows, lpips_note=lpips_note, created=created,
                      reference=reference, warnings=warnings)


def wins(report: EvalReport, metric: str, a: str, b: str) -> tuple[int, int]:
    """(images where restorer ``a`` is strictly better than ``b`` on ``metric``, images with the metric)."""
    better = total = 0
    for x, y in zip(report.row(a).images, report.row(b).images):
        if x.get(metric) is None or y.get(metric) is None:
            continue
        total += 1
        if (x[metric] > y[metric]) if DIRECTIONS[metric] else (x[metric] < y[metric]):
            better += 1
    return better, total


def verdict(report: EvalReport, a: str, b: str) -> str:
    """One plain sentence on whether restorer ``a`` did better than ``b`` on this source, metric by metric."""
    ma, mb = report.row(a).means(), report.row(b).means()
    parts = []
    for metric in METRICS:
        if ma.get(metric) is None or mb.get(metric) is None:
            continue
        delta = ma[metric] - mb[metric]
        won, n = wins(report, metric, a, b)
        parts.append((metric, delta > 0 if DIRECTIONS[metric] else delta < 0, delta, won, n))
    if not parts:
        return "No metric could be computed."
    helped = [p for p in parts if p[1]]
    words = ", ".join(f"{_short(m)} {'+' if d >= 0 else ''}{d:.3g} ({w}/{n} images)" for m, _, d, w, n in parts)
    if not helped:
        return f"{a} did not do better than {b} here: {words}."
    if len(helped) == len(parts):
        return f"{a} did better than {b} on every metric: {words}."
    return f"Mixed: {words}."


# ---------------------------------------------------------------- CLI


def _restorer_arg(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def build_source(args: argparse.Namespace) -> EvalSource:
    """The EvalSource the command-line options describe."""
    common = dict(limit=args.limit, max_side=args.max_side, base_seed=args.seed)
    if args.paired:
        return EvalSource("paired", Path(args.paired), task=args.task, **common)
    if args.clean:
        return EvalSource("synthetic", Path(args.clean), task=args.task, **common)
    return EvalSource("unpaired", Path(args.unpaired), task=args.task, **common)


def default_out(source: EvalSource) -> Path:
    """Where results go without --out: ``<runs folder>/eval/<task>-<folder>`` (the runs folder of
    ``diffloss.paths.runs_folder``: $DIFFLOSS_RUNS, else runs/ in the repository), whatever folder one stands in;
    the same evaluation run again overwrites its own results and nothing else."""
    return runs_folder() / "eval" / f"{source.task or 'paired'}-{source.root.name}"


class EtaPrinter:
    """Progress lines on stdout, with seconds per image and the time left from the first image on."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.start: float | None = None

    def __call__(self, done: int, total: int, name: str) -> None:
        now = time.perf_counter()
        if self.start is None:
            self.start = now
        if not name:
            print(f"done: {total} images in {_duration(now - self.start)}", file=self.stream, flush=True)
            return
        eta = ""
        if done:
            per_image = (now - self.start) / done
            eta = f" ({per_image:.1f} s/image, about {_duration(per_image * (total - done))} left)"
        print(f"[{done + 1}/{total}] {name}{eta}", file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def main(argv: Sequence[str] | None = None) -> EvalReport:
    parser = argparse.ArgumentParser(prog="python -m diffloss.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--restorer", action="append", type=_restorer_arg, default=[], metavar="NAME=PATH",
                        help="a restorer folder to evaluate (repeatable); the input baseline is always included")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--paired", metavar="DIR", help="real pairs: DIR/lq and DIR/gt matched by file name")
    where.add_argument("--clean", metavar="DIR", help="clean photos, degraded for --task with fixed seeds")
    where.add_argument("--unpaired", metavar="DIR", help="real degraded photos without ground truth (NIQE only)")
    parser.add_argument("--task", choices=list(degrade.TASKS), help="required with --clean and --unpaired")
    parser.add_argument("--reference", metavar="NAME", default=None,
                        help="compare every other restorer with this one (one of the --restorer names): median PSNR "
                             "between their outputs (the README's 'vs l2'), the change of each metric, per-image "
                             "wins and a verdict; without it each restorer is compared with the input")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N images (by file name)")
    parser.add_argument("--max-side", type=int, default=None, help="downscale images so the longer side fits")
    parser.add_argument("--seed", type=int, default=0, help="base seed: image i of --clean uses seed+i")
    parser.add_argument("--tile", type=int, default=None, help="run restorers tile by tile (saves memory)")
    parser.add_argument("--no-lpips", action="store_true", help="do not try to load LPIPS")
    parser.add_argument("--out", default=None,
                        help="folder for results.json and results.md (default: RUNS/eval/TASK-FOLDER, where RUNS is "
                             "the project's runs folder: $DIFFLOSS_RUNS, else runs/ in the repository, wherever "
                             "the command is run from)")
    args = parser.parse_args(argv)
    if (args.clean or args.unpaired) and not args.task:
        parser.error("--task is required with --clean and --unpaired")

    def warn(message: str) -> None:
        print(f"warning: {message}", file=sys.stderr, flush=True)

    try:
        source = build_source(args)
        report = evaluate(dict(args.restorer), source, tile=args.tile, lpips=not args.no_lpips,
                          progress=EtaPrinter(), reference=args.reference, warn=warn)
        json_path, md_path = report.save(args.out or default_out(source))
    except (ValueError, CheckpointError, OSError) as err:  # bad input: one line, no traceback
        parser.exit(2, f"error: {err}\n")
    print(report.to_markdown())
    print(f"wrote {json_path} and {md_path}")
    return report


if __name__ == "__main__":
    main()
