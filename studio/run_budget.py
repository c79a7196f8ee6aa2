"""How much of the disk runs/ may take on a hosted studio, in total and per visitor; the oldest runs go first.

Why: every Train run and every uploaded zip writes a run folder, and a Space's disk is small and shared by all
its visitors. Before a visitor's new run is written, their own oldest runs are removed until they hold fewer than
``visitor_runs`` runs weighing under ``visitor_bytes``, then their address's (every session from one client address
together, ``address_runs`` and ``address_bytes``), then anyone's oldest until runs/ holds fewer than
``total_runs`` weighing under ``total_bytes``. A run in use (training, being unpacked) is never removed, nor another
visitor's run younger than an hour: when only those could make room, the newcomer is refused with the time to
retry (a flood of uploads from fresh sessions cannot push out someone's work). The caps
make room for one more run; a finished run is small (its checkpoints go, ``diffloss.pair.drop_training_state``).
On one's own machine nothing is evicted: the researcher owns the disk.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from studio import hosting, visitors


@dataclass(frozen=True)
class RunBudget:
    """The caps on runs/ (bytes and run folders), for all visitors together and for one."""

    total_bytes: int = 3 * 2**30
    total_runs: int = 100
    visitor_bytes: int = 400 * 2**20  # a finished pair weighs ~10 MB, a running one up to ~100 MB
    visitor_runs: int = 5
    address_bytes: int = 800 * 2**20  # every session from one client address together (tabs, reloads, scripts)
    address_runs: int = 10


BUDGET = RunBudget()
PROTECTED_SECONDS = 3600.0  # another visitor's run younger than this is never removed to make room for a newcomer


@dataclass(frozen=True)
class RunRecord:
    """One run folder as eviction sees it."""

    path: Path
    owner: str | None
    mtime: float
    size: int
    address: str | None = None
    weightless: bool = False  # holds no weights at all: what a Train run that failed at its start leaves


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder`` (links not followed; files vanishing meanwhile count 0)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def scan(runs: Path) -> list[RunRecord]:
    """Every run folder in ``runs`` with its owner, age and size."""
    if not runs.is_dir():
        return []
    records = []
    for path in runs.iterdir():
        if path.is_dir() and not path.is_symlink():
            records.append(RunRecord(path, visitors.owner_of(path), path.stat().st_mtime, folder_bytes(path),
                                     visitors.address_of(path), not holds_weights(path)))
    return records


def holds_weights(run_dir: Path) -> bool:
    """Any ``*.safetensors`` (a model or a checkpoint) anywhere in the run, links not followed."""
    for _root, _dirs, files in os.walk(run_dir):
        if any(name.endswith(".safetensors") for name in files):
            return True
    return False


@dataclass(frozen=True)
class RoomPlan:
    """What making room for one more run takes: the runs to remove (oldest first), or, when other visitors' young
    runs fill the store, only the weightless ones removed and the seconds until the oldest of those young runs turns
    ``PROTECTED_SECONDS`` old."""

    evict: list[Path]
    retry_in: float | None = None
    full: str = "store"  # what is full when retry_in is set: "store" (runs/) or "address" (the visitor's address)


def plan_room(records: list[RunRecord], budget: RunBudget, owner: str | None, keep: set[Path],
              now: float | None = None, address: str | None = None) -> RoomPlan:
    """The runs to remove, oldest first, so that ``owner`` may add one run within ``budget``.

    Never chosen: ``keep`` (runs in use; the caps may then be exceeded), and another visitor's run younger than
    ``PROTECTED_SECONDS`` (their work is not removed for someone else's); when the caps cannot be met without those,
    the plan removes nothing and says when to retry. Runs owned by nobody (made on the command line) and the
    owner's own runs go by age alone. A visitor's run holding no weights, not in use, is always removed (a Train
    run that failed at its start). Between the visitor's cap and the store's: the cap of ``address`` (every
    session from one client address), met the same way (its other sessions' young runs are not removed: the
    newcomer waits)."""
    now = time.time() if now is None else now
    oldest_first = sorted(records, key=lambda r: r.mtime)
    # A visitor's run with no weights that nothing is using failed before its first save: it goes first, whoever
    # made it and however young (it would otherwise count in its owner's cap and the store's for nothing)
    dead = [r.path for r in oldest_first if r.weightless and r.owner is not None and r.path not in keep]
    evicted: list[Path] = list(dead)
    protected: list[RunRecord] = []

    def trim(pool: list[RunRecord], max_runs: int, max_bytes: int, spare_others: bool) -> bool:
        alive = [r for r in pool if r.path not in evicted]
        count, size = len(alive), sum(r.size for r in alive)
        for record in alive:
            if count < max_runs and size < max_bytes:
                return True
            if record.path in keep:
                continue
            if spare_others and record.owner not in (None, owner) and now - record.mtime < PROTECTED_SECONDS:
                protected.append(record)
                continue
            evicted.append(record.path)
            count, size = count - 1, size - record.size
        return count < max_runs and size < max_bytes

    def retry_in() -> float:
        return max(1.0, PROTECTED_SECONDS - (now - min(r.mtime for r in protected)))

    if owner is not None:
        trim([r for r in oldest_first if r.owner == owner], budget.visitor_runs, budget.visitor_bytes, False)
    if address is not None:
        if not trim([r for r in oldest_first if r.address == address], budget.address_runs, budget.address_bytes,
                    True) and protected:
            return RoomPlan(dead, retry_in(), "address")
    if not trim(oldest_first, budget.total_runs, budget.total_bytes, True) and protected:
        return RoomPlan(dead, retry_in())
    return RoomPlan(evicted)


def to_evict(records: list[RunRecord], budget: RunBudget, owner: str | None, keep: set[Path],
             now: float | None = None, address: str | None = None) -> list[Path]:
    """The runs ``plan_room`` removes (none when the store is full of other visitors' young runs)."""
    return plan_room(records, budget, owner, keep, now, address).evict


class StoreFull(Exception):
    """runs/ (or the visitor's address's share of it) is full of others' runs younger than an hour: nothing of
    theirs is removed for a newcomer."""

    def __init__(self, retry_in: float, full: str = "store", budget: RunBudget | None = None) -> None:
        self.retry_in = retry_in
        budget = budget or BUDGET
        minutes = max(1, math.ceil(retry_in / 60))
        wait = f"try again in {minutes} minute{'s' if minutes > 1 else ''}."
        if full == "address":
            super().__init__(f"Your address already holds {budget.address_runs} recent runs or "
                             f"{budget.address_bytes // 2**20} MB here (other tabs or sessions), kept for an hour: {wait}")
        else:
            super().__init__(f"This studio's run store is full of other visitors' recent runs ({budget.total_runs} "
                             f"runs or {budget.total_bytes // 2**30} GB in all), which are kept for an hour: {wait}")


_IN_USE: set[Path] = set()
_IN_USE_LOCK = threading.Lock()
_MAKE_ROOM_LOCK = threading.Lock()


@contextlib.contextmanager
def in_use(run_dir: Path) -> Iterator[None]:
    """Mark ``run_dir`` as in use (a run training, a zip being unpacked): ``make_room`` leaves it alone."""
    path = Path(run_dir)
    with _IN_USE_LOCK:
        _IN_USE.add(path)
    try:
        yield
    finally:
        with _IN_USE_LOCK:
            _IN_USE.discard(path)


def make_room(runs: Path, owner: str | None, budget: RunBudget | None = None, address: str | None = None) -> list[str]:
    """Remove the runs ``plan_room`` chooses (their names are returned, oldest first); StoreFull, after removing
    only weightless runs, when other visitors' young runs fill the store."""
    with _MAKE_ROOM_LOCK:  # two newcomers at once must not both count the same free place
        with _IN_USE_LOCK:
            keep = set(_IN_USE)
        plan = plan_room(scan(Path(runs)), budget or BUDGET, owner, keep, address=address)
        for path in plan.evict:
            shutil.rmtree(path, ignore_errors=True)
        if plan.retry_in is not None:
            raise StoreFull(plan.retry_in, plan.full, budget)
    return [p.name for p in plan.evict]


def room_for_visitor(runs: Path, request: Any = None) -> str | None:
    """On a hosted studio, before a visitor's new run is written: ``make_room`` for them (``request``'s visitor,
    else the current gradio event's); returns a note naming the visitor's own runs that went (never another's),
    or None. On one's own machine nothing is removed."""
    if not hosting.is_hosted():
        return None
    import gradio as gr

    key = visitors.visitor_key(request)
    mine = {p.name for p in visitors.runs_of(runs, key)}
    try:
        gone = [name for name in make_room(runs, key, address=visitors.address_key(request)) if name in mine]
    except StoreFull as err:
        raise gr.Error(str(err)) from err
    if not gone:
        return None
    return (f"your older run{'s' if len(gone) > 1 else ''} {', '.join(f'`{n}`' for n in gone)} removed to make "
            f"room (at most {BUDGET.visitor_runs} runs and {BUDGET.visitor_bytes // 2**20} MB per visitor here)")
