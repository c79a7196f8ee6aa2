"""Compare's blind test: the two chosen arms' outputs as A and B in a random order, no names, no metrics; the
visitor picks A, B or "can't tell", then sees who was who, the metrics on that photo and the running tally.

Why: a metric can reward what a person sees as an artefact (issue #24: NIQE called the grainy arm more natural).
The key, the sides and the tally are ``diffloss.blind``'s, so a vote here counts exactly as a judgement of a
``python -m diffloss.blind make`` panel does.

Where votes go: on one's own machine, appended under the runs folder (``<runs>/blind/<task>-<run id>/``, a key
and a ``judgements.csv`` that ``python -m diffloss.blind tally`` reads: a teacher collects a class's votes there);
on a hosted studio only in the visitor's page (a ``gr.State``), at most ``MAX_SESSION_PANELS`` of them, never
written to a file and never seen by another visitor.

Plain values in (labels, paths, the session's state), HxWx3 uint8 arrays and markdown out; tested without a
browser.
"""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from diffloss import blind
from diffloss.checkpoint import atomic_write_json
from diffloss.images import to_uint8_numpy
from diffloss.metrics import HIGHER_IS_BETTER
from diffloss.paths import REPO
from diffloss.viz import enlarge
from studio import hosting, upload
from studio.models import Registry, get_registry
from studio.restorers import load_named_restorer, restorer_entry, run_restorer

SOURCES = ("a random crop of an example", "a whole example", "the photo in Compare's photo box")
CHOICES = {"A": "left", "B": "right", "can't tell": "tie"}  # the visitor's words -> the tally's
MAX_SESSION_PANELS = 200  # votes one page keeps (hosted: all it keeps); the next vote starts a new count
BLIND_DIR = "blind"  # under the runs folder, on one's own machine only
JUDGEMENTS_FILE = "judgements.csv"
REVEALED_METRICS = ("psnr", "ssim", "haarpsi", "mdsi", "ms_gmsd")  # measured on the judged crop (no NIQE: < 192 px)


def new_session() -> dict:
    """A page's blind-test state: the key being filled, the votes, the photo waiting for a vote."""
    return {"key": None, "votes": [], "pending": None, "draws": 0, "folder": None}


@dataclass
class BlindPhoto:
    """One photo to judge: the outputs as A and B, the ground truth beside them, what to do next."""

    a: np.ndarray
    b: np.ndarray
    truth: np.ndarray
    prompt: str
    state: dict

    def as_tuple(self) -> tuple:
        return self.a, self.b, self.truth, self.prompt, self.state


def _example_rows(task: str, registry: Registry) -> list[list[str | None]]:
    """The examples a blind photo can come from for ``task``: clean photos (degraded for it) and the task's real
    pairs; a degraded photo without its ground truth cannot be scored, so it is left out."""
    rows = upload.example_rows(registry.example_images())
    out = []
    for path, row_task, mode, gt in rows:
        if mode == upload.MODES[0]:  # a clean photo: degraded for the task, its truth known
            out.append([path, task, mode, None])
        elif row_task == task and gt:
            out.append([path, task, mode, gt])
    return out


def _case(source: str, task: str, rng: np.random.Generator, photo: str | None, mode: str | None,
          ground_truth: str | None, seed: int, registry: Registry) -> tuple[upload.Case, str, int]:
    """The degraded input and its truth for the chosen source; (case, where it came from, degradation seed)."""
    if source == SOURCES[2]:
        if not photo:
            raise gr.Error("No photo in Compare's photo box: upload one there, or choose an example as the source.")
        case = upload.prepare_case(photo, task, mode or upload.MODES[0], seed, gt_path=ground_truth)
        if case.gt is None:
            raise gr.Error("A blind test needs the ground truth to score the choice: choose 'degrade it for me' or "
                           "a real pair with its ground truth for the photo above, or an example as the source.")
        return case, "the photo in Compare's photo box", seed
    rows = _example_rows(task, registry)
    if not rows:
        raise gr.Error(f"No example photo can be judged for {task}: upload a clean photo in Compare's photo box and "
                       "choose it as the source.")
    path, _, row_mode, gt = rows[int(rng.integers(len(rows)))]
    drawn_seed = int(rng.integers(2**31))
    return upload.prepare_case(path, task, row_mode, drawn_seed, gt_path=gt), Path(path).name, drawn_seed


def _fresh_key(names: list[str], task: str, registry: Registry) -> dict:
    folders = None if hosting.is_hosted() else {
        name: restorer_entry(name, task, arm, registry).path for name, arm in zip(names, ("L2 arm", "DiffLoss arm"))}
    return blind.new_key(names, secrets.randbelow(2**31), task, folders, source="DiffLoss Studio blind test",
                         crop=blind.DEFAULT_CROP, zoom=blind.DEFAULT_ZOOM)


def next_photo(state: dict | None, task: str, l2_label: str | None, dl_label: str | None, source: str = SOURCES[0],
               photo: str | None = None, mode: str | None = None, ground_truth: str | None = None,
               seed: float = 0, registry: Registry | None = None) -> BlindPhoto:
    """Restore the next photo with both arms and show them as A and B, the sides drawn from the key's seed and
    the number of draws (recorded with the panel), so an order can be checked afterwards but not guessed."""
    reg = registry or get_registry()
    state = copy.deepcopy(state) if state else new_session()
    if not l2_label or not dl_label:
        raise gr.Error("Choose both arms in Compare (L2 arm and DiffLoss arm) first.")
    if l2_label == dl_label:
        raise gr.Error("Both arm boxes name the same restorer: a blind test needs two different ones.")
    if source not in SOURCES:
        raise gr.Error(f"Choose the photo's source: {', '.join(SOURCES)}.")
    names = [l2_label, dl_label]
    key = state["key"]
    if key is None or key["task"] != task or [r["name"] for r in key["restorers"]] != names \
            or len(key["panels"]) >= MAX_SESSION_PANELS:  # another pair, or the count is full: a new count
        key = _fresh_key(names, task, reg)
        state.update(key=key, votes=[], folder=None)
    draw = state["draws"]
    rng = np.random.default_rng([key["seed"], draw])
    case, origin, photo_seed = _case(source, task, rng, photo, mode, ground_truth, int(seed or 0), reg)
    models = {name: load_named_restorer(name, task, arm, reg) for name, arm in zip(names, ("L2 arm", "DiffLoss arm"))}
    outs = {name: run_restorer(m, case.net_input).float().clamp(0, 1) for name, m in models.items()}
    truth = case.gt
    h, w = truth.shape[-2:]
    if source == SOURCES[0]:
        side = min(blind.DEFAULT_CROP, h, w)
        top, left = blind.random_window(h, w, side, rng)
        zoom, kind = blind.DEFAULT_ZOOM, blind.RANDOM
    else:
        (top, left), side, zoom, kind = (0, 0), None, 1, "whole image"
    crop = (lambda t: t[:, top:top + side, left:left + side]) if side else (lambda t: t)
    crops = {n: crop(o) for n, o in outs.items()}
    truth_crop = crop(truth)
    sides = blind.draw_sides(names, rng)
    state["pending"] = blind.panel_entry(key, len(key["panels"]), crops, truth_crop, *sides, image=origin,
                                         seed=photo_seed, y=top, x=left, side=side or [h, w], kind=kind, draw=draw)
    state["draws"] = draw + 1

    def shown(t: torch.Tensor) -> np.ndarray:
        return enlarge(to_uint8_numpy(t), zoom)

    where = f"a {side} px crop (shown {zoom}x, nearest neighbour)" if side else "the whole photo"
    prompt = (f"**Which looks better, A or B?** {where.capitalize()} of {origin}, degraded for {task}; the ground "
              "truth is on the right. The names, the metrics and the tally show after your choice.")
    return BlindPhoto(shown(crops[sides[0]]), shown(crops[sides[1]]), shown(truth_crop), prompt, state)


def _votes_folder(state: dict, registry: Registry) -> Path:
    key = state["key"]
    return registry.runs / BLIND_DIR / f"{key['task']}-{key['run_id']}"


def vote(state: dict | None, choice: str, judge: str = "", registry: Registry | None = None) -> tuple[str, dict]:
    """Record the visitor's choice for the photo on show; (the reveal as markdown, the new state).

    Locally the key and the vote are written under the runs folder at once (a page closed later loses nothing);
    hosted, nothing is written: the state is the only record."""
    if choice not in CHOICES:
        raise gr.Error(f"Choose one of: {', '.join(CHOICES)}.")
    if not state or state.get("pending") is None:
        raise gr.Error("Press 'Next photo' first: there is no photo waiting for a vote.")
    reg = registry or get_registry()
    state = copy.deepcopy(state)
    key, entry = state["key"], state.pop("pending")
    state["pending"] = None
    key["panels"].append(entry)
    judge = " ".join((judge or "").split())[:40].lstrip("=+-@")  # one short line for a CSV cell, never a formula
    state["votes"].append([entry["panel"], CHOICES[choice], judge])
    lines = []
    if not hosting.is_hosted():
        folder = _votes_folder(state, reg)
        atomic_write_json(folder / blind.KEY_FILE, key)  # the key first: a vote is never without its key
        blind.append_judgement(folder / JUDGEMENTS_FILE, entry["panel"], CHOICES[choice], judge)
        state["folder"] = str(folder)
        here = _local_path(folder)
        lines.append(f"Saved to `{here}`; tally every vote there (a class's, each with its name) with "
                     f"`python -m diffloss.blind tally {here} {here}/{JUDGEMENTS_FILE}`.")
    else:
        lines.append(f"Kept in this page only ({len(state['votes'])} of at most {MAX_SESSION_PANELS} votes): "
                     "nothing is written on the server, and no other visitor sees it.")
    return "\n\n".join([reveal(entry, choice), session_tally(state), *lines]), state


def _local_path(path: Path) -> str:
    """A folder on one's own machine as its user types it: relative to the repository when inside it."""
    return path.relative_to(REPO).as_posix() if REPO in path.parents else str(path)


def reveal(entry: dict, choice: str) -> str:
    """Who was A and who was B, what the visitor chose, and the metrics on the judged photo."""
    a, b = entry["left"], entry["right"]
    chosen = {"A": f"A (`{a}`)", "B": f"B (`{b}`)", "can't tell": "can't tell"}[choice]
    rows = ["| metric | A | B | better |", "| --- | --- | --- | --- |"]
    for m in REVEALED_METRICS:
        va, vb = entry["metrics"][a].get(m), entry["metrics"][b].get(m)
        if va is None or vb is None:
            continue
        pick = entry["metric_pick"].get(m)
        better = "A" if pick == a else "B" if pick == b else "equal"
        label = f"{blind.METRIC_LABELS.get(m, m)} ({'higher' if HIGHER_IS_BETTER[m] else 'lower'} is better)"
        rows.append(f"| {label} | {_number(va)} | {_number(vb)} | {better} |")
    return "\n".join([f"**A was `{a}`, B was `{b}`.** You chose {chosen}.", "", *rows])


def _number(value) -> str:
    return "inf" if value == "inf" else f"{float(value):.4g}"


def session_tally(state: dict) -> str:
    """The running tally of this count's votes, in ``python -m diffloss.blind tally``'s words."""
    key = state["key"]
    judgements = [blind.Judgement(blind.panel_name(p), c, j) for p, c, j in state["votes"]]
    record = blind.tally_record(key, blind.tally(key, judgements), "person")
    return "**Running tally** (" + ", ".join(f"`{n}`" for n in record["restorers"]) + ")\n\n" + "\n".join(
        f"- {line}" for line in blind.tally_lines(record))
