"""Blind A/B judgement of two restorers: panels a person judges without names, and a tally against a kept key.

``python -m diffloss.blind make --restorer A=FOLDER --restorer B=FOLDER --clean FOLDER --task T --panels N --out DIR``
writes ``DIR/panels/<run>-<k>.png`` (left | right | ground truth, the two outputs' sides drawn per panel from a
recorded seed), ``DIR/panels/judgements.csv`` (a form to fill in) and ``DIR/key.json`` (which restorer is on
which side, where each crop is, and what the metrics say on it). Give the judge the ``panels`` folder only.
Half the crops are where the two outputs differ most, half at random positions, so the judge is not only led to
the worst spots; crops are enlarged with nearest neighbour (no invented detail).

``python -m diffloss.blind tally DIR JUDGEMENTS.csv`` joins the judge's choices with the key: how often each
restorer was preferred, ties, the exact two-sided sign test, how many judgements a preference needs to be
detected, and how often each metric picks the side the judge picked.

Judgements CSV (what a judge fills in and what the studio's blind mode appends): a header line, then one row per
judgement: ``panel,choice[,judge]``; ``panel`` is a panel's file name (with or without ``.png``), ``choice`` is
``left``, ``right`` or ``tie``; ``judge`` (optional) names who judged, so several judges can share one file. A row
with an empty choice is a panel not judged yet.

The studio's blind mode uses the same pieces without files of panels: :func:`new_key`, then per photo
:func:`draw_sides` and :func:`add_panel`, :func:`append_judgement` for each vote, :func:`tally` and
:func:`tally_lines` for the running count; saved as ``DIR/key.json`` beside the votes, ``tally`` reads it too.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import secrets
import shutil
import sys
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from diffloss import degrade
from diffloss.blind_stats import (DEFAULT_ALPHA, DEFAULT_POWER, DEFAULT_PREFERENCE, judgements_needed, sign_test,
                                  sign_test_power, with_ties)
from diffloss.checkpoint import atomic_write_json
from diffloss.evaluate import EvalSource, iter_samples
from diffloss.images import to_uint8_numpy
from diffloss.metrics import HIGHER_IS_BETTER, no_reference_metrics, psnr, ssim
from diffloss.nets import load_restorer, restore
from diffloss.paths import shown_path
from diffloss.perceptual import perceptual_metrics
from diffloss.viz import enlarge

KEY_FILE = "key.json"
PANELS_DIR = "panels"
FORM_FILE = "judgements.csv"  # in panels/: the form a judge fills in
KEY_FORMAT = "diffloss-blind-key/1"
TALLY_FORMAT = "diffloss-blind-tally/1"
CHOICES = ("left", "right", "tie")
CSV_HEADER = ("panel", "choice", "judge")
MOST_DIFFERENT, RANDOM = "most-different", "random"
AGREEMENT_METRICS = ("psnr", "ssim", "haarpsi", "mdsi", "ms_gmsd", "niqe")  # what the tally checks against the judge
METRIC_LABELS = {"psnr": "PSNR", "ssim": "SSIM", "haarpsi": "HaarPSI", "mdsi": "MDSI", "ms_gmsd": "MS-GMSDc",
                 "niqe": "NIQE (whole image)"}
DEFAULT_CROP, DEFAULT_ZOOM = 96, 3
GAP = 8  # white pixels between a panel's tiles
LABEL_HEIGHT = 18


class BlindError(ValueError):
    """Bad input to make or tally: the message is one line a person can act on."""


# ------------------------------------------------------------------------------------------ pure choices
def crop_kinds(panels: int, rng: np.random.Generator) -> list[str]:
    """Half the panels (the odd one goes to the differing spots) where the outputs differ most, half at random
    positions, in a random order so neither kind comes first."""
    kinds = [MOST_DIFFERENT] * math.ceil(panels / 2) + [RANDOM] * (panels // 2)
    return [kinds[i] for i in rng.permutation(panels)]


def window_sums(diff: np.ndarray, side: int) -> np.ndarray:
    """Sum of ``diff`` (H,W) over every ``side`` x ``side`` window: entry (top, left), shape (H-side+1, W-side+1)."""
    c = np.pad(np.cumsum(np.cumsum(diff, 0), 1), ((1, 0), (1, 0)))
    return c[side:, side:] - c[:-side, side:] - c[side:, :-side] + c[:-side, :-side]


def most_different_windows(diff: np.ndarray, side: int, count: int) -> list[tuple[int, int]]:
    """(top, left) of ``count`` windows with the largest summed difference, greedily, none overlapping an earlier
    one (the same image's panels show different places); fewer when the image has no room for more."""
    sums = window_sums(diff.astype(np.float64), side)
    taken = np.zeros_like(sums, dtype=bool)
    out: list[tuple[int, int]] = []
    for _ in range(count):
        masked = np.where(taken, -np.inf, sums)
        if not np.isfinite(masked).any():
            break
        top, left = np.unravel_index(int(np.argmax(masked)), masked.shape)
        out.append((int(top), int(left)))
        taken[max(0, top - side + 1):top + side, max(0, left - side + 1):left + side] = True  # would overlap
    return out


def random_window(height: int, width: int, side: int, rng: np.random.Generator) -> tuple[int, int]:
    """(top, left) of a ``side`` square drawn uniformly inside a ``height`` x ``width`` image."""
    return int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))


def draw_sides(names: Sequence[str], rng: np.random.Generator) -> tuple[str, str]:
    """The two restorers as (left, right) in a random order: one fair draw per panel."""
    a, b = names
    return (a, b) if rng.random() < 0.5 else (b, a)


def winner_for(choice: str, left: str, right: str) -> str | None:
    """The restorer a choice prefers (None for a tie)."""
    return {"left": left, "right": right, "tie": None}[choice]


def metric_pick(values: dict[str, float | None], metric: str) -> str | None:
    """Which restorer ``metric`` calls better, "tie" when equal, None when either value is missing."""
    (a, va), (b, vb) = values.items()
    if va is None or vb is None:
        return None
    if va == vb:
        return "tie"
    better_a = va > vb if HIGHER_IS_BETTER[metric] else va < vb
    return a if better_a else b


# -------------------------------------------------------------------------------------------------- panels
def panel_image(left: torch.Tensor, right: torch.Tensor, truth: torch.Tensor, zoom: int) -> np.ndarray:
    """Three (3,h,w) crops side by side, each enlarged ``zoom`` times (nearest), labelled left, right, ground
    truth: HxWx3 uint8."""
    tiles = [enlarge(to_uint8_numpy(t.clamp(0, 1)), zoom) for t in (left, right, truth)]
    h, w = tiles[0].shape[:2]
    canvas = Image.new("RGB", (3 * w + 2 * GAP, h + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (tile, label) in enumerate(zip(tiles, ("left", "right", "ground truth"))):
        x = i * (w + GAP)
        canvas.paste(Image.fromarray(tile), (x, LABEL_HEIGHT))
        draw.text((x + 4, 3), label, fill="black")
    return np.asarray(canvas)


def _crop(img: torch.Tensor, top: int, left: int, side: int) -> torch.Tensor:
    return img[:, top:top + side, left:left + side]


def _finite(value: float | None) -> float | str | None:
    return "inf" if value is not None and math.isinf(value) else value


def crop_metrics(out: torch.Tensor, truth: torch.Tensor) -> dict[str, float | None]:
    """The full-reference metrics of one crop against the truth's crop (the numbers the agreement table tests)."""
    return {"psnr": psnr(out, truth), "ssim": ssim(out, truth), **perceptual_metrics(out, truth)}


def new_key(names: Sequence[str], seed: int, task: str | None, folders: dict[str, Path] | None = None,
            **about) -> dict:
    """A key without panels for two restorers: ``make`` fills it, and the studio's blind mode can fill it vote by
    vote with :func:`add_panel`, so ``tally`` reads both alike. ``about``: what else to record (source, crop)."""
    if len(names) != 2 or names[0] == names[1]:
        raise BlindError(f"a blind comparison needs two restorers with different names, got {list(names)}")
    return {"format": KEY_FORMAT, "run_id": secrets.token_hex(4), "seed": seed,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "task": task,
            "restorers": [{"name": n, **({"folder": shown_path(folders[n])} if folders else {})} for n in names],
            **about, "panels": []}


def panel_entry(key: dict, k: int, crops: dict[str, torch.Tensor], truth: torch.Tensor, left: str, right: str,
                niqe: dict[str, float | None] | None = None, **where) -> dict:
    """Panel ``k`` of a key: its file name, which restorer is on which side, where its crop is (``where``: image,
    y, x, side, kind), each restorer's metrics on the crop and which restorer each metric prefers. ``niqe``: each
    restorer's NIQE on the whole image (a crop under 192 px has none)."""
    names = [r["name"] for r in key["restorers"]]
    values = {n: {**crop_metrics(crops[n], truth), "niqe": (niqe or {}).get(n)} for n in names}
    picks = {m: metric_pick({n: values[n][m] for n in names}, m) for m in AGREEMENT_METRICS}
    return {"panel": f"{key['run_id']}-{k:03d}.png", **where, "left": left, "right": right,
            "metrics": {n: {m: _finite(v) for m, v in vs.items()} for n, vs in values.items()}, "metric_pick": picks}


def add_panel(key: dict, crops: dict[str, torch.Tensor], truth: torch.Tensor, left: str, right: str,
              niqe: dict[str, float | None] | None = None, **where) -> dict:
    """Append the next panel to ``key`` (see :func:`panel_entry`) and return it: one vote's worth of key."""
    entry = panel_entry(key, len(key["panels"]), crops, truth, left, right, niqe, **where)
    key["panels"].append(entry)
    return entry


@dataclass
class MakeConfig:
    """What ``make`` was asked for; ``seed`` draws the sides, the random crops and the order of the panels."""

    restorers: dict[str, Path]  # exactly two: name -> restorer folder
    source: EvalSource
    panels: int = 24
    crop: int = DEFAULT_CROP
    zoom: int = DEFAULT_ZOOM
    seed: int | None = None  # None: a fresh one, recorded in the key

    def check(self) -> None:
        if len(self.restorers) != 2:
            raise BlindError(f"give exactly two restorers (--restorer A=FOLDER --restorer B=FOLDER), got "
                             f"{len(self.restorers)}: {', '.join(self.restorers) or 'none'}")
        if self.source.mode == "unpaired":
            raise BlindError("blind panels show the ground truth: use --clean (with --task) or --paired, not unpaired")
        if not 1 <= self.panels <= 1000:
            raise BlindError(f"--panels must be 1 to 1000, got {self.panels}")
        if not 16 <= self.crop <= 512:
            raise BlindError(f"--crop must be 16 to 512 px, got {self.crop}")
        if not 1 <= self.zoom <= 8:
            raise BlindError(f"--zoom must be 1 to 8, got {self.zoom}")


def _outputs(models: dict[str, torch.nn.Module], net_input: torch.Tensor) -> dict[str, torch.Tensor]:
    outs = {}
    for name, model in models.items():
        with torch.no_grad():
            out = restore(model, net_input)
        outs[name] = (out[0] if out.dim() == 4 else out).float().clamp(0, 1)
    return outs


def _task(config: MakeConfig, models: dict[str, torch.nn.Module]) -> str | None:
    tasks = {getattr(m.config, "task", None) for m in models.values()} - {None}
    if config.source.task is not None:
        return config.source.task
    if len(tasks) > 1:
        raise BlindError(f"the restorers were trained for different tasks {sorted(tasks)}; give --task")
    return tasks.pop() if tasks else None


def _write_panels(config: MakeConfig, models: dict[str, torch.nn.Module], samples: list,
                  by_image: dict[int, list[int]], kinds: list[str], key: dict, rng: np.random.Generator,
                  folder: Path, log) -> None:
    """Restore each photo once, choose its panels' crops and sides, save the panels, fill ``key["panels"]``."""
    names = [r["name"] for r in key["restorers"]]
    entries: dict[int, dict] = {}
    for i, ks in sorted(by_image.items()):
        sample = samples[i]
        log(f"[blind] {sample.name}: {len(ks)} panel(s)")
        outs = _outputs(models, sample.net_input)
        truth = sample.gt
        h, w = truth.shape[-2:]
        side = min(config.crop, h, w)
        niqe = {n: no_reference_metrics(o)["niqe"] for n, o in outs.items()}  # whole image: NIQE needs 192 px
        diff = (outs[names[0]] - outs[names[1]]).abs().mean(0).numpy()
        differing = [k for k in ks if kinds[k] == MOST_DIFFERENT]
        spots = most_different_windows(diff, side, len(differing))
        spots += [random_window(h, w, side, rng) for _ in range(len(differing) - len(spots))]  # no room left
        where = dict(zip(differing, spots))
        for k in ks:
            top, left = where[k] if k in where else random_window(h, w, side, rng)
            order = draw_sides(names, rng)
            crops = {n: _crop(o, top, left, side) for n, o in outs.items()}
            truth_crop = _crop(truth, top, left, side)
            entries[k] = panel_entry(key, k, crops, truth_crop, *order, niqe, image=sample.name,
                                     image_seed=sample.seed, y=top, x=left, side=side, kind=kinds[k])
            Image.fromarray(panel_image(crops[order[0]], crops[order[1]], truth_crop, config.zoom)).save(
                folder / entries[k]["panel"])
    key["panels"] = [entries[k] for k in range(config.panels)]


def make_panels(config: MakeConfig, out_dir: str | Path, log=print) -> dict:
    """Write the panels, the judge's form and the key; returns the key. Image ``k % images`` of the source gives
    panel ``k``, so a few photos can give many panels (at different places)."""
    config.check()
    out = Path(out_dir)
    if (out / KEY_FILE).exists() or (out / PANELS_DIR).exists():
        raise BlindError(f"{out} already holds a blind run (key.json or panels/): choose a new --out")
    seed = config.seed if config.seed is not None else secrets.randbelow(2**31)
    rng = np.random.default_rng(seed)
    try:
        models = {name: load_restorer(folder) for name, folder in config.restorers.items()}
    except Exception as err:  # CheckpointError, missing folder: one line
        raise BlindError(f"cannot load a restorer: {err}") from None
    task = _task(config, models)
    for name, model in models.items():
        wanted = degrade.get_task(task).in_channels if task else model.config.in_channels
        if model.config.in_channels != wanted:
            raise BlindError(f"restorer {name} takes {model.config.in_channels} input channels but {task} gives "
                             f"{wanted}: it was trained for {model.config.task}")
    try:
        samples = list(islice(iter_samples(config.source, task), config.panels))  # never more photos than panels
    except (ValueError, OSError) as err:  # no such folder, no lq/ or gt/, unreadable image
        raise BlindError(str(err)) from None
    if not samples:
        raise BlindError(f"no images found in {config.source.root}")
    kinds = crop_kinds(config.panels, rng)
    by_image: dict[int, list[int]] = {}
    for k in range(config.panels):
        by_image.setdefault(k % len(samples), []).append(k)
    key = new_key(list(config.restorers), seed, task, config.restorers,
                  source={**config.source.describe(), "root": shown_path(config.source.root)},
                  crop=config.crop, zoom=config.zoom, niqe_on="whole image")
    (out / PANELS_DIR).mkdir(parents=True)
    try:
        _write_panels(config, models, samples, by_image, kinds, key, rng, out / PANELS_DIR, log)
    except BaseException:
        shutil.rmtree(out / PANELS_DIR)  # made above, so ours alone: a failed run leaves no half a run behind
        raise
    with (out / PANELS_DIR / FORM_FILE).open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        writer.writerows([p["panel"], "", ""] for p in key["panels"])
    atomic_write_json(out / KEY_FILE, key)
    return key


# ----------------------------------------------------------------------------------------------- judgements
@dataclass(frozen=True)
class Judgement:
    panel: str  # the panel's file name, with .png
    choice: str  # left, right or tie
    judge: str = ""


def panel_name(text: str) -> str:
    """A panel as named in a CSV (with or without ``.png``) as its file name."""
    text = text.strip()
    return text if text.lower().endswith(".png") else text + ".png"


def parse_judgements(rows: Iterable[Sequence[str]]) -> list[Judgement]:
    """Judgements from CSV rows (header first); rows with an empty choice are panels not judged yet."""
    rows = iter(rows)
    header = [h.strip().lower() for h in next(rows, [])]
    if header[:2] != ["panel", "choice"]:
        raise BlindError(f"the judgements CSV must start with the header panel,choice[,judge]; got "
                         f"{','.join(header) or 'an empty file'}")
    out = []
    for line, row in enumerate(rows, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        panel, choice = row[0].strip(), (row[1].strip().lower() if len(row) > 1 else "")
        judge = row[2].strip() if len(row) > 2 else ""
        if not panel:
            raise BlindError(f"line {line}: no panel named")
        if not choice:
            continue
        if choice not in CHOICES:
            raise BlindError(f"line {line}: choice {row[1].strip()!r} for {panel} is not left, right or tie")
        out.append(Judgement(panel_name(panel), choice, judge))
    return out


def read_judgements(path: str | Path) -> list[Judgement]:
    """A judgements CSV as saved by hand or by a spreadsheet: a UTF-8 byte-order mark is skipped, and a file
    separated by semicolons (what spreadsheets write in many locales) is read as well as one with commas."""
    path = Path(path)
    if not path.is_file():
        raise BlindError(f"no judgements file at {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise BlindError(f"{path} is not UTF-8 text: save the judgements as a CSV file") from None
    first = text.split("\n", 1)[0]
    delimiter = ";" if ";" in first and "," not in first else ","
    return parse_judgements(csv.reader(text.splitlines(), delimiter=delimiter))


def append_judgement(path: str | Path, panel: str, choice: str, judge: str = "") -> None:
    """Append one judgement (writing the header first when the file is new): the studio's blind mode records
    votes this way, in the format ``tally`` reads."""
    if choice not in CHOICES:
        raise BlindError(f"choice {choice!r} is not left, right or tie")
    path = Path(path)
    new = not path.is_file() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        if new:
            writer.writerow(CSV_HEADER)
        writer.writerow([panel_name(panel), choice, judge])


# ---------------------------------------------------------------------------------------------------- tally
def key_problem(key: dict) -> str:
    """What is missing from a key that :func:`tally` needs ("" when nothing is)."""
    restorers = key.get("restorers")
    if not isinstance(key.get("run_id"), str) or "seed" not in key or "created" not in key:
        return "no run_id, seed or created"
    if not (isinstance(restorers, list) and len(restorers) == 2
            and all(isinstance(r, dict) and isinstance(r.get("name"), str) for r in restorers)):
        return "restorers must be a list of two with names"
    names = {r["name"] for r in restorers}
    panels = key.get("panels")
    if not isinstance(panels, list):
        return "no list of panels"
    for k, entry in enumerate(panels):
        if not (isinstance(entry, dict) and isinstance(entry.get("panel"), str)
                and {entry.get("left"), entry.get("right")} == names):
            return f"panel {k} lacks its name or its two sides"
    return ""


def read_key(run_dir: str | Path) -> dict:
    """The key of a run folder, checked against its panels: a key from another run is refused."""
    run_dir = Path(run_dir)
    path = run_dir / KEY_FILE
    if not path.is_file():
        raise BlindError(f"no {KEY_FILE} in {run_dir}: give the folder that `make` wrote")
    try:
        key = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BlindError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(key, dict) or key.get("format") != KEY_FORMAT:
        raise BlindError(f"{path} is not a blind-comparison key ({KEY_FORMAT})")
    problem = key_problem(key)
    if problem:
        raise BlindError(f"{path} is damaged: {problem}")
    panels_dir = run_dir / PANELS_DIR
    if panels_dir.is_dir():
        present = {p.name for p in panels_dir.glob("*.png")}
        foreign = sorted(n for n in present if not n.startswith(key["run_id"] + "-"))
        if foreign:
            raise BlindError(f"{KEY_FILE} is from run {key['run_id']} but {panels_dir} holds panels of another run "
                             f"({foreign[0]}): the key and the panels do not belong together")
        missing = [p["panel"] for p in key["panels"] if p["panel"] not in present]
        if missing:
            raise BlindError(f"panel {missing[0]} of the key is missing from {panels_dir}"
                             + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return key


@dataclass
class Tally:
    """Wins, losses and ties of restorer ``a`` against ``b`` over a run's judgements, with the tests."""

    a: str
    b: str
    a_preferred: int = 0
    b_preferred: int = 0
    ties: int = 0
    unjudged: int = 0
    judges: int = 0
    agreement: dict[str, dict[str, int]] = field(default_factory=dict)  # metric -> {"agree", "panels"}

    @property
    def decisive(self) -> int:
        return self.a_preferred + self.b_preferred

    @property
    def p(self) -> float:
        return sign_test(self.a_preferred, self.b_preferred)


def tally(key: dict, judgements: list[Judgement]) -> Tally:
    """Join judgements with the key. A judgement of a panel the key lacks (another run's CSV) and a panel judged
    twice by one judge are refused; panels nobody judged are counted as unjudged.

    Several judges' judgements are pooled, one per (panel, judge): the sign test then treats them as
    independent, which overstates the certainty when judges agree for the same reason; the record keeps how
    many judges there were so a reader can weigh that."""
    names = [r["name"] for r in key["restorers"]]
    panels = {p["panel"]: p for p in key["panels"]}
    result = Tally(names[0], names[1], agreement={m: {"agree": 0, "panels": 0} for m in AGREEMENT_METRICS})
    seen: set[tuple[str, str]] = set()
    for j in judgements:
        entry = panels.get(j.panel)
        if entry is None:
            other = j.panel.split("-")[0]
            hint = (f" (it is from run {other}; this key is run {key['run_id']})" if other != key["run_id"]
                    else "")
            raise BlindError(f"panel {j.panel} is not in this run's key{hint}")
        if (j.panel, j.judge) in seen:
            who = f"judge {j.judge!r}" if j.judge else "the same judge"
            raise BlindError(f"panel {j.panel} is judged twice by {who}")
        seen.add((j.panel, j.judge))
        winner = winner_for(j.choice, entry["left"], entry["right"])
        if winner is None:
            result.ties += 1
        elif winner == names[0]:
            result.a_preferred += 1
        else:
            result.b_preferred += 1
        for metric, pick in (entry.get("metric_pick") or {}).items():
            if winner is not None and pick not in (None, "tie") and metric in result.agreement:
                result.agreement[metric]["panels"] += 1
                result.agreement[metric]["agree"] += int(pick == winner)
    result.unjudged = len(panels) - len({p for p, _ in seen})
    result.judges = len({j.judge for j in judgements}) if judgements else 0
    return result


def tally_record(key: dict, t: Tally, judge_kind: str, preference: float = DEFAULT_PREFERENCE) -> dict:
    """What the report reads (``pretrained/report/blind/<task>/<arm>.json``): the tally, who judged, when the
    panels were made and from which seed."""
    needed = judgements_needed(preference)
    tie_share = t.ties / (t.decisive + t.ties) if t.decisive + t.ties else 0.0
    return {"format": TALLY_FORMAT, "run_id": key["run_id"], "task": key.get("task"), "seed": key["seed"],
            "panels_created": key["created"],
            "tallied": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "restorers": [t.a, t.b], "preferred": {t.a: t.a_preferred, t.b: t.b_preferred}, "ties": t.ties,
            "unjudged": t.unjudged, "judge_kind": judge_kind, "judges": t.judges, "p": t.p,
            "needed": {"preference": preference, "alpha": DEFAULT_ALPHA, "power": DEFAULT_POWER,
                       "decisive": needed, "with_ties": with_ties(needed, tie_share) if tie_share < 1 else None},
            "agreement": t.agreement, "panels": len(key["panels"])}


def tally_lines(record: dict) -> list[str]:
    """The tally in plain words (what ``tally`` prints)."""
    a, b = record["restorers"]
    pref = record["preferred"]
    need = record["needed"]
    share = round(need["preference"] * 100)
    lines = [f"run {record['run_id']} ({record.get('task') or 'task n/a'}, seed {record['seed']}): "
             f"{pref[a] + pref[b] + record['ties']} judgements by {record['judges']} {record['judge_kind']} "
             f"judge(s), {record['unjudged']} of {record['panels']} panels unjudged",
             f"{a} preferred {pref[a]}, {b} preferred {pref[b]}, ties {record['ties']}",
             f"two-sided sign test (ties dropped, exact binomial): p = {record['p']:.3g}",
             f"to detect a {share}:{100 - share} preference (alpha {need['alpha']}, power {need['power']}): "
             f"{need['decisive']} decisive judgements (the exact sign test's power there: "
             f"{sign_test_power(need['decisive'], need['preference']):.2f})"
             + (f", about {need['with_ties']} judgements at this tie rate"
                if need.get("with_ties") not in (None, need["decisive"]) else "")]
    agree = [f"{METRIC_LABELS.get(m, m)} {v['agree']}/{v['panels']}"
             for m, v in record["agreement"].items() if v["panels"]]
    if agree:
        lines.append("metrics picking the judge's side (decisive panels): " + ", ".join(agree))
    return lines


# --------------------------------------------------------------------------------------------------- CLI
def _restorer_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FOLDER, got {text!r}")
    return name.strip(), Path(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffloss.blind", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("make", help="write blind panels and their key")
    mk.add_argument("--restorer", action="append", type=_restorer_arg, default=[], metavar="NAME=FOLDER",
                    help="a restorer folder; give exactly two")
    where = mk.add_mutually_exclusive_group(required=True)
    where.add_argument("--clean", metavar="DIR", help="clean photos, degraded for --task (image i with seed i)")
    where.add_argument("--paired", metavar="DIR", help="real pairs: DIR/lq and DIR/gt matched by file name")
    mk.add_argument("--task", choices=list(degrade.TASKS))
    mk.add_argument("--panels", type=int, default=24)
    mk.add_argument("--crop", type=int, default=DEFAULT_CROP, help="crop side in pixels before enlarging")
    mk.add_argument("--zoom", type=int, default=DEFAULT_ZOOM, help="nearest-neighbour enlargement factor")
    mk.add_argument("--seed", type=int, default=None, help="panel seed (sides, random crops); default: a fresh one")
    mk.add_argument("--limit", type=int, default=None, help="use the first N images (by file name)")
    mk.add_argument("--max-side", type=int, default=None, help="downscale images so the longer side fits")
    mk.add_argument("--out", required=True, metavar="DIR")
    ta = sub.add_parser("tally", help="join a judge's choices with a run's key")
    ta.add_argument("run_dir", metavar="DIR")
    ta.add_argument("judgements", metavar="JUDGEMENTS.csv")
    ta.add_argument("--judge-kind", default="person", choices=("person", "model", "metric"),
                    help="who judged (recorded for the report)")
    ta.add_argument("--preference", type=float, default=DEFAULT_PREFERENCE,
                    help="the split to size the test for (0.7 = 70:30)")
    ta.add_argument("--save", metavar="FILE.json", help="write the tally for the report "
                    "(pretrained/report/blind/<task>/<arm>.json)")
    args = parser.parse_args(argv)
    try:
        if args.command == "make":
            if args.clean and not args.task:
                raise BlindError("--task is required with --clean (which degradation to apply)")
            mode, root = ("synthetic", args.clean) if args.clean else ("paired", args.paired)
            try:
                source = EvalSource(mode, Path(root), task=args.task, limit=args.limit, max_side=args.max_side)
            except ValueError as err:
                raise BlindError(str(err)) from None
            names = [n for n, _ in args.restorer]
            if len(set(names)) != len(names):
                raise BlindError(f"the two restorers need different names, got {names}")
            key = make_panels(MakeConfig(dict(args.restorer), source, args.panels, args.crop, args.zoom, args.seed),
                              args.out)
            print(f"wrote {len(key['panels'])} panels to {Path(args.out) / PANELS_DIR} (give the judge this folder "
                  f"only) and the key to {Path(args.out) / KEY_FILE}; run {key['run_id']}, seed {key['seed']}")
            return 0
        key = read_key(args.run_dir)
        record = tally_record(key, tally(key, read_judgements(args.judgements)), args.judge_kind, args.preference)
        print("\n".join(tally_lines(record)))
        if args.save:
            atomic_write_json(Path(args.save), record)
            print(f"wrote {args.save}")
        return 0
    except (BlindError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
