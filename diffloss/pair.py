"""Two arms trained side by side: the L2 arm and the DiffLoss arm from the same start, seed and batches.

A pair is a folder ``RUN/`` holding one run folder per arm (``RUN/l2``, ``RUN/diffloss``; ``diffloss.paths``).
This module starts the two training loops, steps them in turn (so both curves grow together and a stop leaves both
at about the same step), stops and closes them (each saves a checkpoint), reports how far each arm got, plans a
resume from the arms' checkpoints, zips the finished models and says how far the arms' weights ended apart.

Why in the library: the Train tab (``studio.train_tab``) and ``python -m diffloss.train pair`` are two front ends
of the same experiment; the UI adds only caps, uploads and messages.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from diffloss.checkpoint import CARD_FILE, MODEL_FILE, CheckpointError, load_tensors
from diffloss.paths import ARMS, CHECKPOINT_DIR, PARTIAL, PHOTOS_DIR, REPO, RunFolder, public_json
from diffloss.run_folder import checkpoint_settings, export_checkpoint, logged_rows
from diffloss.train import TrainEvent, TrainingDiverged, train_restorer
from diffloss.train_config import RestorerTrainConfig

NOT_STARTED = "not started"  # an arm whose loop was closed before its first step: nothing saved, nothing lost
DIVERGED = "diverged"  # an arm whose checkpoint holds non-finite or absurd weights: never offered for resume


class PairError(ValueError):
    """A pair cannot be started or resumed; the message says why and what to do."""


class ArmDiverged(TrainingDiverged):
    """One arm's loss became NaN/inf; ``arm`` says which (the message is the loop's)."""

    def __init__(self, arm: str, err: TrainingDiverged) -> None:
        super().__init__(str(err))
        self.arm = arm


def arm_command(command: str, arm: str) -> str:
    """What an arm's card records as its command: the pair's front end and the arm."""
    return f"{command} ({arm} arm)"


def arm_configs(base: RestorerTrainConfig, run_dir: str | Path, command: str) -> dict[str, RestorerTrainConfig]:
    """Both arms' settings from one: identical except ``diffloss`` and the output folder (the fairness rule)."""
    return {arm: replace(base, diffloss=arm == "diffloss",
                         loop=replace(base.loop, out=str(Path(run_dir) / arm), command=arm_command(command, arm)))
            for arm in ARMS}


class PairRun:
    """The training loops of one pair, stepped in turn; ``stop`` ends them between two rounds.

    ``loops`` and ``stop`` may be shared with another thread (the app's shutdown closes the loops of a run that no
    request iterates any more, see ``close_loops``).
    """

    def __init__(self, loops: dict[str, Iterator[TrainEvent]] | None = None,
                 stop: threading.Event | None = None) -> None:
        self.loops = {} if loops is None else loops
        self.stop = stop or threading.Event()
        self.totals: dict[str, int] = {}
        self.stopped = False
        self.timed_out = False  # stopped by ``rounds``' deadline, not by ``stop``

    def start(self, arm: str, cfg: RestorerTrainConfig) -> None:
        """Start one arm's loop (its data, model and prior load here: a bad setting fails now, not mid-run)."""
        self.loops[arm] = train_restorer(cfg)
        self.totals[arm] = cfg.loop.steps

    def rounds(self, deadline: float | None = None) -> Iterator[dict[str, TrainEvent]]:
        """One event per unfinished arm per round, until both finish or ``stop`` is set (then ``stopped``), or
        ``time.monotonic()`` passes ``deadline`` (then ``stopped`` and ``timed_out``): the arms save and stop."""
        active = dict(self.loops)
        while active:
            late = deadline is not None and time.monotonic() >= deadline
            if self.stop.is_set() or late:
                for gen in active.values():
                    gen.close()
                self.stopped, self.timed_out = True, late and not self.stop.is_set()
                return
            events = {}
            for arm in list(active):
                try:
                    events[arm] = next(active[arm])
                except StopIteration:
                    del active[arm]
                except TrainingDiverged as err:
                    raise ArmDiverged(arm, err) from err
            yield events

    def close(self) -> None:
        """Close every loop: a no-op for a finished loop, a checkpoint for an interrupted one."""
        for gen in self.loops.values():
            gen.close()
        self.loops.clear()


def close_loops(loops: dict[str, Iterator[TrainEvent]], timeout: float = 30.0) -> list[str]:
    """Close loops that may be stepping in another thread (each saves a checkpoint); returns the arms that could
    not be closed within ``timeout`` seconds (empty: nothing lost)."""
    pending = dict(loops)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for arm, loop in list(pending.items()):
            try:
                loop.close()  # GeneratorExit inside the loop: it saves a checkpoint and returns
            except ValueError:  # "generator already executing": a step in the run's own thread; retry after it
                continue
            del pending[arm]
        if pending:
            time.sleep(0.05)
    return sorted(pending)


# --------------------------------------------------------------------------------------------- progress
def arm_checkpoint(arm_dir: Path) -> tuple[int, RestorerTrainConfig] | None:
    """(step, settings) of an arm's checkpoint; None when it has none (closed before its first step);
    CheckpointError when it cannot be read."""
    if not RunFolder(arm_dir).checkpoint.is_file():
        return None
    return checkpoint_settings(arm_dir)


def arm_diverged(arm_dir: Path) -> str | None:
    """Why an unfinished arm's checkpoint holds the weights of a diverged run (None: they are sane)."""
    from diffloss.divergence import checkpoint_diverged

    return checkpoint_diverged(RunFolder(arm_dir).checkpoint)


def arm_progress(arm_dir: Path) -> str | None:
    """'finished', 'STEP/STEPS' for a stopped arm, NOT_STARTED (no checkpoint), DIVERGED, None (one that cannot
    be read)."""
    if RunFolder(arm_dir).model.is_dir():
        return "finished"
    try:
        saved = arm_checkpoint(arm_dir)
        if saved is not None and arm_diverged(arm_dir):  # weights run off to 1e30: not worth resuming
            return DIVERGED
    except CheckpointError:
        return None
    return NOT_STARTED if saved is None else f"{saved[0]}/{saved[1].loop.steps}"


def stopped_pairs(runs: Path) -> list[tuple[str, str]]:
    """(label, name) of the pairs in ``runs`` that stopped before their last step, newest first; the label says how
    far each arm got, e.g. ``studio-noise-0101 (l2 40/200, diffloss 38/200)``."""
    if not runs.is_dir():
        return []
    found = []
    for run in sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True):
        progress = {arm: arm_progress(run / arm) for arm in ARMS if (run / arm).is_dir()}
        if DIVERGED in progress.values():  # its resume would be refused: not offered
            continue
        if any(state not in ("finished", NOT_STARTED, None) for state in progress.values()):  # one arm has steps
            shown = ", ".join(f"{arm} {state}" for arm, state in progress.items() if state)
            found.append((f"{run.name} ({shown})", run.name))
    return found


def is_pair(run_dir: Path) -> bool:
    return any((run_dir / arm).is_dir() for arm in ARMS)


def logged_history(arm_dir: Path, step: int) -> list[tuple[int, dict[str, float]]]:
    """The curve points an arm logged up to ``step`` (its log.csv), so a resumed pair's curves go on from them."""
    return [(int(r["step"]), {k: float(v) for k, v in r.items() if k not in ("step", "wall_s") and v not in ("", None)})
            for r in logged_rows(RunFolder(arm_dir).log, step)]


# ----------------------------------------------------------------------------------------------- resume
def resume_plans(run_dir: Path, command: str) -> tuple[dict[str, tuple[int, RestorerTrainConfig]], list[str]]:
    """(step, settings) of each arm to go on, and notes on the arms kept as they were.

    An arm with no checkpoint stopped before its first step (a shutdown between the two arms' first steps): it
    starts at step 0 with its sibling's settings and its own arm (``command`` names the front end for its card),
    which is how the pair was made.
    """
    plans, notes, saved, unsaved = {}, [], {}, []
    for arm in ARMS:
        arm_dir = run_dir / arm
        try:
            found = arm_checkpoint(arm_dir)
        except CheckpointError as err:
            raise PairError(f"Cannot resume the {arm} arm: {err}") from err
        if found is not None:
            diverged = None if RunFolder(arm_dir).model.is_dir() else arm_diverged(arm_dir)
            if diverged:
                raise PairError(f"The {arm} arm diverged before it stopped ({diverged}): start a new run, with a "
                                "smaller learning rate or gamma.")
            saved[arm] = found
        if RunFolder(arm_dir).model.is_dir():
            notes.append(f"{arm}: had finished; kept as it was")
        elif arm in saved:
            plans[arm] = saved[arm]
        else:
            unsaved.append(arm)
    for arm in unsaved:
        if not saved:
            raise PairError(f"Run {run_dir.name!r} has no checkpoint: it stopped before its first step; start it again.")
        sibling = next(iter(saved.values()))[1]
        loop = replace(sibling.loop, out=str(run_dir / arm), command=arm_command(command, arm))
        plans[arm] = (0, replace(sibling, diffloss=arm == "diffloss", loop=loop))
    return {arm: plans[arm] for arm in ARMS if arm in plans}, notes


def with_resume_note(cfg: RestorerTrainConfig, note: str) -> RestorerTrainConfig:
    """The settings with ``note`` appended to the card's command: the card tells the whole story."""
    command = "; ".join(filter(None, [cfg.loop.command, note]))
    return replace(cfg, loop=replace(cfg.loop, command=command))


# ----------------------------------------------------------------------------------------------- results


def export_stopped_arms(run_dir: Path) -> dict[str, int | str]:
    """Each unfinished arm's last checkpoint exported as a model (``RUN/<arm>/export``, its card says partial);
    returns the step exported per arm, or why an arm could not be (a text).

    Why: a stopped pair could not be compared until resumed; its checkpoints hold the EMA weights so far, which
    a learner can compare right away, labelled with their step so nobody takes them for the finished models.
    """
    exported: dict[str, int | str] = {}
    for arm in ARMS:
        folder = RunFolder(run_dir / arm)
        if folder.model.is_dir() or not folder.checkpoint.is_file():
            continue
        try:
            export_checkpoint(folder.root)
            exported[arm] = partial_step(folder.export)
        except (CheckpointError, OSError, KeyError, RuntimeError, ValueError) as err:
            exported[arm] = f"not exported ({type(err).__name__}: {err})"
    return exported


def partial_step(model_dir: Path) -> int:
    """The training step an exported (partial) model holds, from its card."""
    return int(json.loads((model_dir / CARD_FILE).read_text())["steps"])


def partial_models_note(exported: dict[str, int | str], task: str) -> str:
    """One status line on a stopped pair's exported arms: where they can be compared, and under which label."""
    if not exported:
        return "nothing to compare yet: no arm had saved a step"
    shown = ", ".join(f"{arm} at step {v}" if isinstance(v, int) else f"{arm} {v}" for arm, v in exported.items())
    return (f"its arms as they are now ({shown}) can be compared: Compare and Inspect list them for {task} as "
            f"\"... ({PARTIAL}, step N)\"")


def zip_models(run_dir: Path) -> Path:
    """run_dir/<name>.zip holding l2/model and diffloss/model (safetensors + config + card, the card's paths made
    relative: ``runs/NAME/...`` or the repository's, never the server's folders)."""
    staging = run_dir / "_download"
    if staging.exists():
        shutil.rmtree(staging)
    for arm in ARMS:
        if RunFolder(run_dir / arm).model.is_dir():
            shutil.copytree(RunFolder(run_dir / arm).model, staging / arm)
            card = staging / arm / CARD_FILE
            if card.is_file():  # a download leaves the server: its cards name no server folder
                roots = {run_dir.parent: "runs/", REPO: ""}
                card.write_text(json.dumps(public_json(json.loads(card.read_text()), roots), indent=2))
    archive = shutil.make_archive(str(run_dir / run_dir.name), "zip", root_dir=staging)
    shutil.rmtree(staging)
    return Path(archive)


def drop_training_state(run_dir: Path) -> list[Path]:
    """Remove what only training needed from a pair: each finished arm's checkpoint folder (its model/ is
    written) and, once both arms finished, the uploaded photos. Returns what was removed.

    Why: on a hosted studio a finished run keeps its final models and zip; its checkpoints (several times the
    models' size, optimizer state included) and a visitor's photos are not kept beyond the run. An unfinished arm
    keeps its checkpoint: it can still be resumed.
    """
    removed = []
    finished = [RunFolder(run_dir / arm).model.is_dir() for arm in ARMS if (run_dir / arm).is_dir()]
    for arm in ARMS:
        arm_dir = RunFolder(run_dir / arm)
        if arm_dir.model.is_dir() and (arm_dir.root / CHECKPOINT_DIR).is_dir():
            shutil.rmtree(arm_dir.root / CHECKPOINT_DIR)
            removed.append(arm_dir.root / CHECKPOINT_DIR)
    if finished and all(finished) and (run_dir / PHOTOS_DIR).is_dir():
        shutil.rmtree(run_dir / PHOTOS_DIR)
        removed.append(run_dir / PHOTOS_DIR)
    return removed


def arms_difference(run_dir: Path) -> str:
    """How far the DiffLoss arm's weights ended from the L2 arm's: what the prior's gradient did, in one number.

    Why: with the released code's no_grad mistake the answer is 'not at all', bit for bit, however large gamma is;
    a curve of L_nat going down cannot show that, the weights can.
    """
    try:
        l2, dl = (load_tensors(RunFolder(run_dir / arm).model / MODEL_FILE) for arm in ARMS)
    except (CheckpointError, OSError) as err:
        return f"the arms' weights could not be compared ({err})"
    if l2.keys() != dl.keys() or any(l2[k].shape != dl[k].shape for k in l2):
        return "the arms have different architectures: their weights are not comparable"
    largest = max((float((l2[k].float() - dl[k].float()).abs().max()) for k in l2 if l2[k].numel()), default=0.0)
    if largest == 0.0:
        return ("the DiffLoss arm's weights are identical to the L2 arm's, bit for bit: the prior sent no gradient "
                "(the released code's no_grad mistake does exactly this)")
    return f"the DiffLoss arm's weights differ from the L2 arm's by up to {largest:.3g} (largest change of any weight)"
