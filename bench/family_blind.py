"""The shipped family judged blind: every prior arm against ``l2`` on clean/val, every task, with neutral set names.

    python -m bench.family_blind make --work /work/runs/blind-family --judges /work/runs/blind-judges \
        --panels 16 --seed 2612
    # give each judge only folders of /work/runs/blind-judges (set-01, set-02, ...); each fills set-NN/judgements.csv
    python -m bench.family_blind tally --work /work/runs/blind-family --judges /work/runs/blind-judges \
        --judge-kind model --save pretrained/report/blind
    python -m diffloss.zoo report --blind-only

``make`` runs ``diffloss.blind.make_panels`` once per task and arm (``WORK/TASK-ARM``: panels and key) and copies
each panels folder to ``JUDGES/set-NN``, the sets in an order shuffled by the seed, so a folder's name says neither
task nor arm; the map from sets to runs stays in ``WORK/sets.json``, never beside the panels. ``tally`` reads each
set's filled form, joins it with its run's key (``diffloss.blind.tally``) and saves the record where the report
reads it (``pretrained/report/blind/TASK/ARM.json``), as ``python -m diffloss.blind tally --save`` does.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from diffloss import blind
from diffloss.checkpoint import atomic_write_json
from diffloss.evaluate import EvalSource
from diffloss.family import FAMILY, ZooPaths, shipped_restorers
from diffloss.paths import TASK_ORDER

SETS_FILE = "sets.json"
BRIEF_FILE = "INSTRUCTIONS.md"
# What a judge reads (written beside the sets): the task without a hint of which side is which or what was trained.
JUDGE_BRIEF = """# Judging restored images blind

Each folder `set-NN` holds panels (PNG) and a form, `judgements.csv`. A panel shows three crops of one photo, enlarged
without smoothing and labelled above: "left" and "right" are two restorations of the same degraded photo, "ground
truth" is the photo before it was degraded. Which restoration would a careful person prefer as a copy of the ground
truth: closer to it, with fewer artefacts (grain, streaks left in, blotches, grids, colour casts, blur)?

For every panel, fill in the form's `choice` column with `left` or `right`, or `tie` only when you truly cannot
tell; put your name in `judge`. Write every choice down before looking at anything else;
there is no key here, and nothing else in these folders tells which restoration is which.
"""


def arms_to_judge(pretrained: Path) -> list[tuple[str, str, Path, Path]]:
    """(task, arm, l2 folder, arm folder) for every shipped arm with a prior, in task and family order."""
    prior_arms = [a.name for a in FAMILY if a.uses_prior and a.shipped]
    found = shipped_restorers(pretrained)
    return [(task, arm, found[task]["l2"], found[task][arm]) for task in TASK_ORDER if "l2" in found.get(task, {})
            for arm in prior_arms if arm in found[task]]


def make(work: Path, judges: Path, paths: ZooPaths, panels: int, seed: int, limit: int, max_side: int) -> dict:
    runs = arms_to_judge(paths.pretrained)
    if not runs:
        raise blind.BlindError(f"no shipped arm with a prior beside an l2 arm in {paths.pretrained}")
    order = np.random.default_rng(seed).permutation(len(runs))
    sets = {}
    for n, i in enumerate(order, 1):
        task, arm, l2, folder = runs[i]
        source = EvalSource("synthetic", paths.clean_val, task=task, limit=limit, max_side=max_side)
        run = work / f"{task}-{arm}"
        blind.make_panels(blind.MakeConfig({"l2": l2, arm: folder}, source, panels, seed=seed + n), run,
                          log=lambda _: None)
        name = f"set-{n:02d}"
        shutil.copytree(run / blind.PANELS_DIR, judges / name)
        sets[name] = {"run": run.name, "task": task, "arm": arm}
        print(f"{name}: {panels} panels")
    atomic_write_json(work / SETS_FILE, sets)
    (judges / BRIEF_FILE).write_text(JUDGE_BRIEF)
    return sets


def tally(work: Path, judges: Path, judge_kind: str, save: Path | None) -> list[dict]:
    sets = json.loads((work / SETS_FILE).read_text())
    records = []
    for name, where in sets.items():
        key = blind.read_key(work / where["run"])
        record = blind.tally_record(key, blind.tally(key, blind.read_judgements(judges / name / blind.FORM_FILE)),
                                    judge_kind)
        records.append({**where, **record})
        print(f"{where['task']} {where['arm']}: " + "; ".join(blind.tally_lines(record)[:2]))
        if save is not None:
            atomic_write_json(save / where["task"] / f"{where['arm']}.json", record)
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    mk, ta = sub.add_parser("make"), sub.add_parser("tally")
    for q in (mk, ta):
        q.add_argument("--work", required=True, help="runs and keys (never shown to a judge)")
        q.add_argument("--judges", required=True, help="the judges' copies: set-NN folders of panels")
    mk.add_argument("--panels", type=int, default=16, help="panels per task and arm")
    mk.add_argument("--seed", type=int, required=True)
    mk.add_argument("--limit", type=int, default=24, help="clean/val photos per task (the first N by name)")
    mk.add_argument("--max-side", type=int, default=256)
    mk.add_argument("--datasets", default=str(ZooPaths().datasets))
    mk.add_argument("--pretrained", default=str(ZooPaths().pretrained))
    ta.add_argument("--judge-kind", default="person", choices=("person", "model", "metric"))
    ta.add_argument("--save", default=None, help="the report's blind folder (pretrained/report/blind)")
    args = p.parse_args(argv)
    work, judges = Path(args.work), Path(args.judges)
    try:
        if args.cmd == "make":
            paths = ZooPaths(Path(args.datasets), pretrained=Path(args.pretrained))
            make(work, judges, paths, args.panels, args.seed, args.limit, args.max_side)
        else:
            tally(work, judges, args.judge_kind, Path(args.save) if args.save else None)
    except (blind.BlindError, ValueError, OSError) as err:
        print(f"error: {err}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
