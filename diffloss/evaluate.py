"""Evaluation reports: restorers, and the degraded input itself, measured on one source of images.

One library call, :func:`evaluate`, serves the CLI (``python -m diffloss.evaluate``), the zoo report and the app.
The degraded input is always measured too (the ``identity`` row): a restorer's number means little until it is
set against what the restorer was given. Synthetic pairs are reproducible: image ``i`` of a clean folder is
degraded with seed ``base_seed + i``, so two runs (or two restorers) see bit-identical inputs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from diffloss import degrade
from diffloss.checkpoint import atomic_write_json, atomic_write_text
from diffloss.data import PairedFolder
from diffloss.images import list_images, load_image
from diffloss.metrics import CONVENTIONS, HIGHER_IS_BETTER, compute_metrics, load_lpips
from diffloss.nets import load_restorer, restore

IDENTITY = "identity"  # the pseudo-restorer that returns the degraded input
METRICS = ("psnr", "ssim", "niqe", "lpips")
MODES = ("paired", "synthetic", "unpaired")
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"

Progress = Callable[[int, int, str], None]  # (images done, images in total, current image name)


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
        """Mean of each metric over the images that have it (None when no image has it)."""
        out: dict[str, float | None] = {}
        for key in METRICS:
            values = [r[key] for r in self.images if r.get(key) is not None]
            out[key] = float(np.mean(values)) if values else None
        return out


@dataclass
class EvalReport:
    """Everything a results.json / results.md holds; ``rows[0]`` is always the identity baseline."""

    source: EvalSource
    task: str | None
    rows: list[RestorerResult]
    lpips_note: str  # "" when LPIPS was computed, else why not
    conventions: str = CONVENTIONS
    created: str = ""

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
            "restorers": [
                {
                    "name": r.name,
                    "path": r.path,
                    "mean": _json_safe(r.means()),
                    "seconds_per_image": r.seconds / max(1, len(r.images)),
                    "images": [_json_safe(i) for i in r.images],
                }
                for r in self.rows
            ],
        }

    def to_markdown(self, standalone: bool = True) -> str:
        """A table a person reads: one row per restorer, the input first, then how far each one moved from it.

        ``standalone=False`` leaves out the title and the pointer to results.json (for embedding, e.g. the app).
        """
        s = self.source
        has_gt = s.mode != "unpaired"
        what = {"paired": "real pairs", "synthetic": f"synthetic {self.task} (seeds {s.base_seed}+i)", "unpaired": "real degraded photos, no ground truth"}[s.mode]
        n = len(self.rows[0].images) if self.rows else 0
        lines = [f"# Evaluation: {s.root.name} ({what})", ""] if standalone else []
        lines += [
            f"Task: {self.task or 'n/a'}; {n} images from `{s.root}`" + (f", longer side <= {s.max_side}" if s.max_side else "") + ".",
            "",
            "| restorer | PSNR (dB) ↑ | SSIM ↑ | NIQE ↓ | LPIPS ↓ | PSNR vs input | s / image |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        base = self.rows[0].means()["psnr"] if self.rows else None
        for r in self.rows:
            m = r.means()
            gain = "" if r.name == IDENTITY or m["psnr"] is None or base is None else _fmt(m["psnr"] - base, 2, signed=True)
            lpips = _fmt(m["lpips"], 4) if m["lpips"] is not None else ("unavailable" if has_gt else "n/a")
            lines.append(
                f"| {r.name} | {_fmt(m['psnr'], 2)} | {_fmt(m['ssim'], 4)} | {_fmt(m['niqe'], 3)} | {lpips} | {gain} "
                f"| {r.seconds / max(1, len(r.images)):.2f} |"
            )
        lines += ["", f"Conventions: {self.conventions}."]
        if self.lpips_note and has_gt:
            lines.append(f"{self.lpips_note}.")
        if not has_gt:
            lines.append("No ground truth: PSNR, SSIM and LPIPS are n/a; NIQE is the only number.")
        lines.append("Identity = the restorer's input itself (the degraded image)."
                     + (f" Per-image values: {RESULTS_JSON}." if standalone else ""))
        return "\n".join(lines) + "\n"

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


def evaluate(
    restorers: dict[str, str | Path],
    source: EvalSource,
    tile: int | None = None,
    lpips: bool = True,
    progress: Progress | None = None,
) -> EvalReport:
    """Measure each restorer folder (and the identity baseline) on every image of ``source``.

    restorers: display name -> restorer folder (loaded with ``diffloss.nets.load_restorer``); may be empty, the
    report then holds the baseline only. lpips: try LPIPS (offline only); the report says why when it is absent.
    """
    if IDENTITY in restorers:
        raise ValueError(f"{IDENTITY!r} is reserved for the input baseline; give the restorer another name")
    models = {name: load_restorer(path) for name, path in restorers.items()}
    task = _infer_task(source, models)
    lpips_fn, lpips_note = load_lpips() if lpips else (None, "LPIPS unavailable: not requested")
    rows = [RestorerResult(IDENTITY, None)] + [RestorerResult(n, str(p)) for n, p in restorers.items()]
    samples = list(iter_samples(source, task))
    for k, sample in enumerate(samples):
        if progress is not None:
            progress(k, len(samples), sample.name)
        for row in rows:
            t0 = time.perf_counter()
            out = _run(models.get(row.name), sample.net_input, tile)
            row.seconds += time.perf_counter() - t0
            metrics = compute_metrics(out, sample.gt, lpips_fn)
            row.images.append({"name": sample.name, "seed": sample.seed, **metrics})
    if progress is not None:
        progress(len(samples), len(samples), "")
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return EvalReport(source=source, task=task, rows=rows, lpips_note=lpips_note, created=created)


def wins(report: EvalReport, metric: str, a: str, b: str) -> tuple[int, int]:
    """(images where restorer ``a`` is strictly better than ``b`` on ``metric``, images with the metric)."""
    better = total = 0
    for x, y in zip(report.row(a).images, report.row(b).images):
        if x.get(metric) is None or y.get(metric) is None:
            continue
        total += 1
        if (x[metric] > y[metric]) if HIGHER_IS_BETTER[metric] else (x[metric] < y[metric]):
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
        parts.append((metric, delta > 0 if HIGHER_IS_BETTER[metric] else delta < 0, delta, won, n))
    if not parts:
        return "No metric could be computed."
    helped = [p for p in parts if p[1]]
    words = ", ".join(f"{m.upper()} {'+' if d >= 0 else ''}{d:.3g} ({w}/{n} images)" for m, _, d, w, n in parts)
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


def main(argv: Sequence[str] | None = None) -> EvalReport:
    parser = argparse.ArgumentParser(prog="python -m diffloss.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--restorer", action="append", type=_restorer_arg, default=[], metavar="NAME=PATH",
                        help="a restorer folder to evaluate (repeatable); the input baseline is always included")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--paired", metavar="DIR", help="real pairs: DIR/lq and DIR/gt matched by file name")
    where.add_argument("--clean", metavar="DIR", help="clean photos, degraded for --task with fixed seeds")
    where.add_argument("--unpaired", metavar="DIR", help="real degraded photos without ground truth (NIQE only)")
    parser.add_argument("--task", choices=list(degrade.TASKS), help="required with --clean and --unpaired")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N images (by file name)")
    parser.add_argument("--max-side", type=int, default=None, help="downscale images so the longer side fits")
    parser.add_argument("--seed", type=int, default=0, help="base seed: image i of --clean uses seed+i")
    parser.add_argument("--tile", type=int, default=None, help="run restorers tile by tile (saves memory)")
    parser.add_argument("--no-lpips", action="store_true", help="do not try to load LPIPS")
    parser.add_argument("--out", default="runs/eval", help="folder for results.json and results.md")
    args = parser.parse_args(argv)
    if (args.clean or args.unpaired) and not args.task:
        parser.error("--task is required with --clean and --unpaired")
    source = build_source(args)

    def show(done: int, total: int, name: str) -> None:
        if name:
            print(f"[{done + 1}/{total}] {name}", flush=True)

    report = evaluate(dict(args.restorer), source, tile=args.tile, lpips=not args.no_lpips, progress=show)
    json_path, md_path = report.save(args.out)
    print(report.to_markdown())
    print(f"wrote {json_path} and {md_path}")
    return report


if __name__ == "__main__":
    main()
