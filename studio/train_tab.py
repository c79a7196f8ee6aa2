"""The Train tab's work: calibrate gamma and lambda on validation photos, and train the L2 and DiffLoss arms side
by side from the same start, streaming curves; one run at a time, Stop really stops.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import gradio as gr
import torch

from diffloss import degrade, nets, pair
from diffloss.images import ImageLoadError, image_size, load_image, save_image
from diffloss.loss import DiffLossConfig, dose_form_words, part_or_all
from diffloss.paths import ARMS, PHOTOS_DIR
from diffloss.arm_gap import ArmProbe
from studio import hosting, inputs, run_budget, train_gap, visitors
from studio.models import Registry, get_registry
from studio.plots import training_figure
from studio.restorers import load_prior, load_restorer, start_entry
from studio.toasts import warn
from studio.train_settings import TrainSettings, TrainView
from studio.upload import MAX_SIDE, load_upload

CPU_CAPS = {"steps": 300, "batch": 8, "crop": 128}
GPU_CAPS = {"steps": 5000, "batch": 32, "crop": 256}
# A hosted CPU Space: one slot serves every visitor, so a run is shorter there, in steps and in time.
HOSTED_CPU_CAPS = {**CPU_CAPS, "steps": 150}
# Seconds one hosted run may hold the slot (then it stops, resumable); under a ZeroGPU call's limit (studio.gpu).
HOSTED_RUN_SECONDS = 8 * 60
_TRAIN_LOCK = threading.Lock()
_STOP = threading.Event()
_LOOPS: dict[str, Iterator] = {}  # the running Train run's two training loops, for stop_for_shutdown
# While a run holds the slot: "owner" (visitor key: who may Stop it), "run_dir" (what a shutdown exports) and,
# once its last status is on its way, "finishing" (Stop then does nothing). Emptied when the slot is freed.
_RUNNING: dict[str, Any] = {}
TRAIN_TAB = "DiffLoss Studio Train tab"  # what the arms' cards record as their command


def train_caps() -> dict[str, int]:
    """What one Train run may ask for here: a CPU run must end in minutes (fewer on a hosted CPU Space, where
    visitors take turns), a GPU run may go further."""
    if torch.cuda.is_available():
        return GPU_CAPS
    return HOSTED_CPU_CAPS if hosting.is_hosted() else CPU_CAPS


def run_seconds() -> float | None:
    """How long one run may hold the training slot: ``HOSTED_RUN_SECONDS`` on a hosted studio, unbounded on
    one's own machine."""
    return float(HOSTED_RUN_SECONDS) if hosting.is_hosted() else None


def _train_t_range(t_min: float | None, t_max: float | None, prior) -> dict[str, int | None]:
    """The Train tab's t range as DiffLossConfig fields: an empty box is the prior's band there; t max is clipped
    to the prior's schedule (its box says so), t min is taken as typed (DiffLossConfig.validate refuses one beyond
    it)."""
    return {"t_min": None if t_min in (None, "") else int(t_min),
            "t_max": None if t_max in (None, "") else min(int(t_max), prior.num_timesteps - 1)}


def _train_dose(t_weight: str | None, gradient: str | None) -> dict[str, str]:
    """The Train form's weight of each t and gradient form as DiffLossConfig fields; an empty box is the paper's
    (uniform, full). Unknown values are refused by ``DiffLossConfig.validate``, with the choices."""
    return {"t_weight": t_weight or "uniform", "gradient": gradient or "full"}


CALIBRATION_PHOTOS = 8  # clean validation photos per calibration: a second or two at 64 px on 2 CPU cores


def calibrate_weights(
    task: str, crop: float, t_min: float, t_max: float, prior_source: str | None, gamma: float, lam: float,
    nat_share: float = 0.2, sem_share: float = 0.1, start: str | None = None, t_weight: str | None = "uniform",
    gradient: str | None = "full", photos: int = CALIBRATION_PHOTOS, registry: Registry | None = None,
) -> tuple[float, float, str]:
    """(gamma, lambda, report): the weights that give L_nat and L_sem the requested shares of the gradient as a
    Train run starts, and the shares the weights typed so far would give (``diffloss.calibrate``).

    Why here: a weight means nothing without the gradient scale of the prior it multiplies (the released 1e-3
    leaves a small prior a fraction of a percent), so the Train tab measures it instead of asking for a guess.
    Measured on clean validation photos, never the training folder, degraded for the task and restored by what
    both arms start from (``start``: a restorer label, or a fresh restorer, the identity): their step 0.
    """
    from diffloss.calibrate import calibrate
    from diffloss.loss import shares_for_weights
    from diffloss.train_config import new_restorer_config

    reg = registry or get_registry()
    try:
        degrade.get_task(task)
    except ValueError as err:
        raise gr.Error(str(err)) from err
    entry = start_entry(start, task, reg)
    prior = load_prior(prior_source, reg)
    files = reg.calibration_images()[: max(1, int(photos))]
    images = []
    for path in files:
        try:
            images.append(load_image(path, max_side=MAX_SIDE))
        except (ImageLoadError, OSError) as err:
            warn(f"Calibration skips {path.name}: {err}")
    if not images:
        raise gr.Error("No clean validation photos to calibrate on: put the benchmark's clean/val beside the repo "
                       "(or point DIFFLOSS_DATASETS at it), or add clean_*.png photos to examples/.")
    side = max(16, min(int(crop), train_caps()["crop"]))
    config = DiffLossConfig(**_train_t_range(t_min, t_max, prior), **_train_dose(t_weight, gradient))
    try:
        lo, hi = config.validate(prior.num_timesteps, prior.t_band())
        model = load_restorer(entry, reg) if entry else nets.Restorer(new_restorer_config(task)).to(prior.device)
        result = calibrate(prior, model, task, images, float(nat_share),
                           float(sem_share), side, config=config)
    except ValueError as err:
        raise gr.Error(f"Cannot calibrate: {err}") from err
    new_gamma, new_lam = float(f"{result.gamma:.4g}"), float(f"{result.lam:.4g}")

    def shares(g: float, lmb: float) -> str:
        s = shares_for_weights(result.norms, g, lmb)
        return f"fidelity {s['fidelity']:.1%}, L_nat {s['nat']:.1%}, L_sem {s['sem']:.2%}"

    n = result.norms
    report = "\n".join([
        f"Measured on {len(images)} clean photos from `{files[0].parent}`: {side} px centre crops degraded for "
        f"{task}, t drawn in [{lo}, {hi}] ({dose_form_words(config.t_weight, config.gradient)}), one t and noise "
        f"per photo, restored by "
        f"{f'`{entry.label}`' if entry else 'a fresh restorer (the identity)'}, where both arms start.",
        "",
        f"- gradient norm on the image per unit weight: fidelity {n['fidelity']:.3g}, L_nat {n['nat']:.3g}, "
        f"L_sem {n['sem']:.3g}",
        f"- your weights (gamma {float(gamma):g}, lambda {float(lam):g}) give {shares(float(gamma), float(lam))}",
        f"- **calibrated** for L_nat {float(nat_share):.0%} and L_sem {float(sem_share):.0%}: gamma **{new_gamma:g}**, "
        f"lambda **{new_lam:g}** (now set above; they give {shares(new_gamma, new_lam)})",
        "",
        "Shares move as the restorer learns, and a few photos give a rough estimate: calibrate again to see its "
        "spread.",
    ])
    return new_gamma, new_lam, report


def request_stop(request: gr.Request | None = None):
    """Ask the running Train job to stop at its next step (it saves a checkpoint and keeps what it has). On a
    hosted studio only the visitor who started it may (``studio.visitors``).

    With no run going the status is left as it is (a toast says so): "Stopping..." written over a finished run's
    Done summary would outlive the state it describes, since no later step ever replaces it.
    """
    if not _TRAIN_LOCK.locked():
        warn("No training run is going: nothing to stop.")
        return gr.skip()
    if _RUNNING.get("finishing"):  # its last status is on its way: "Stopping..." must not land after it
        warn("The run is finishing: nothing left to stop.")
        return gr.skip()
    if hosting.is_hosted():
        key = visitors.visitor_key(request)
        if key is None or not _RUNNING or _RUNNING.get("owner") != key:
            return "No run of yours is going: Stop stops a run started from this page."
    _STOP.set()
    return "Stopping after the current step..."


def stop_for_shutdown(timeout: float = 30.0) -> list[str]:
    """The app is stopping (Ctrl-C) with a Train run going: close both arms' training loops, so each saves a
    checkpoint; returns the arms that could not be closed in ``timeout`` seconds (empty: nothing lost).

    Why here: once the server has closed, no request iterates the run any more, so the Stop flag is never seen;
    and a loop left to the interpreter's shutdown dies mid-step with everything since its last periodic save.
    """
    _STOP.set()
    # Read before closing: the run's stream may see the Stop, export before the loops saved and free the slot
    # (emptying _RUNNING) while the loops close; the export below, after they saved, is the one that counts.
    run_dir = _RUNNING.get("run_dir")
    stuck = pair.close_loops(_LOOPS, timeout)
    if run_dir is not None:  # what it trained stays comparable, labelled partial, as after Stop
        pair.export_stopped_arms(run_dir)
    return stuck


def _status(history: dict, totals: dict, name: str, notes: list[str], state: str) -> str:
    parts = [f"**{state}** run `{name}`"]
    for arm, points in history.items():
        step, values = points[-1] if points else (0, {})
        bar = "#" * int(20 * step / max(1, totals[arm])) + "." * (20 - int(20 * step / max(1, totals[arm])))
        loss = f"total {values['total']:.4g}" if "total" in values else ""
        prior = values.get("share_nat", 0.0) + values.get("share_sem", 0.0)
        if arm == "diffloss" and "share_nat" in values:  # measured on log steps (0 with the no_grad mistake)
            loss += f", prior's share of the gradient {prior:.0%}"
        parts.append(f"- {arm}: `[{bar}]` step {step}/{totals[arm]} {loss}")
    return "\n".join(parts + [f"- {n}" for n in notes])


FEW_PHOTOS = 8  # fewer uploaded photos than this: the arms fit them, a demonstration rather than a benchmark
MAX_PHOTOS = 200  # uploads beyond this are left out: held in memory as uint8, 200 at 1024 px are ~0.5 GB


def save_training_photos(files: list[str], dest: Path) -> tuple[int, list[str]]:
    """Uploaded photos saved into the run as PNGs (its cards then name a folder that stays with it); returns how
    many were kept and notes on what was skipped or downscaled. Each is read the way training reads it (upright,
    RGB) and kept at most ``MAX_SIDE`` px on the longer side, so one huge photo cannot exhaust memory."""
    kept, notes = 0, []
    if len(files) > MAX_PHOTOS:
        extra = len(files) - MAX_PHOTOS
        notes.append(f"{extra} photo{'s' if extra > 1 else ''} left out: at most {MAX_PHOTOS} per run")
        files = files[:MAX_PHOTOS]
    downscaled = 0
    for i, file in enumerate(files):
        src = Path(file)
        try:  # read as Compare reads an upload: upright, RGB, downscaled, refused below MIN_SIDE
            image, _ = load_upload(src, max_side=MAX_SIDE)
        except gr.Error as err:
            notes.append(f"skipped {src.name}: {err.message}")
            continue
        downscaled += max(image_size(src)) > MAX_SIDE
        save_image(image, dest / f"{i:03d}_{inputs.file_stem(src.stem) or 'photo'}.png")
        kept += 1
    if downscaled:
        notes.append(f"{downscaled} photo{'s' if downscaled > 1 else ''} downscaled to {MAX_SIDE} px on the longer side")
    return kept, notes


def _clean_folder(clean_folder: str | None, registry: Registry) -> Path:
    """The folder of clean photos on this machine to train on (typed, else the benchmark's clean/train)."""
    folder = Path(clean_folder) if clean_folder else registry.training_folder()
    if folder is None or not folder.is_dir():
        raise gr.Error("No clean photos to train on: upload a few clean photos, or give a folder of them on this "
                       "machine (the benchmark clean/train, or any folder of PNG/JPEG photos).")
    return folder


def _hosted_photos(photos: list[str] | None, clean_folder: str | None, registry: Registry) -> list[str]:
    try:
        return hosting.hosted_training_photos(photos, clean_folder, registry.training_examples())
    except ValueError as err:
        raise gr.Error(str(err)) from err


def _shipped_examples_unless_given(photos: list[str] | None, clean_folder: str | None, registry: Registry) -> list[str]:
    """The photos to save into the run: the uploads; with none uploaded, no folder typed and no benchmark
    clean/train beside the repo (a fresh clone), the shipped training photos (``examples/train/``, never Compare's
    examples), so the first click trains."""
    if photos or (clean_folder or "").strip() or registry.training_folder() is not None:
        return list(photos or [])
    return [str(p) for p in registry.training_examples()]


def _uploaded_folder(photos: list[str], run_dir: Path, notes: list[str], shipped: bool = False) -> Path:
    """The uploads (or, ``shipped``, the shipped clean examples) saved into the run, and what the status line should
    say about them."""
    kept, photo_notes = save_training_photos(list(photos), run_dir / PHOTOS_DIR)
    for note in photo_notes:
        warn(note)
    if not kept:
        raise gr.Error(f"None of the {len(photos)} uploaded files is a usable photo: " + "; ".join(photo_notes))
    plural, skipped = "s" if kept > 1 else "", min(len(photos), MAX_PHOTOS) - kept
    if shipped:
        yours = "upload photos" if hosting.is_hosted() else "upload photos or name a folder"  # hosted: no folder box
        notes.append(f"no photos given: the arms train on the {kept} clean photo{plural} shipped in `examples/train/` "
                     f"(copied into the run's `{PHOTOS_DIR}/`; Compare's examples are other photos); {yours} to "
                     "train on yours")
    else:
        notes.append(f"{kept} uploaded photo{plural}, saved in `{run_dir / PHOTOS_DIR}`"
                     + (f" ({skipped} skipped)" if skipped else ""))
    if kept < FEW_PHOTOS:
        notes.append(f"only {kept} photo{plural}: the arms will fit them; compare on other photos, as a "
                     "demonstration rather than a benchmark")
    return run_dir / PHOTOS_DIR


def new_run_name(task: str) -> str:
    """A Train run's folder name: task and start time to read, and a random tail so that no one can guess another
    visitor's run from when it started (issue #25 low 12)."""
    return f"studio-{task}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def train_pair(settings: TrainSettings, request: gr.Request | None = None,
               registry: Registry | None = None) -> Iterator[TrainView]:
    """Train the L2 and DiffLoss arms side by side (same start weights, seed, batches); yield what the tab shows
    (status, curves, the zip once done, and how far the arms' outputs have moved apart on a photo they do not
    train on). ``settings``: the form (``studio.train_settings``); below, its fields by name.

    ``prior_crop`` > 0 computes the prior terms on one random square of that side per batch, ``prior_samples`` > 0
    on that many random photos of each batch (cheaper, noisier steps: ``train_ui.PRIOR_COST_NOTE``; 0 = the whole
    crop, every photo). ``start``: a restorer label of the task to fine-tune from (both arms), or
    ``FRESH_START``/empty for a fresh restorer of ``width``. ``photos``: uploaded clean photos, used instead of
    ``clean_folder`` (a hosted Space has no folder of its visitors' photos). ``detach_prior`` computes the DiffLoss
    arm's prior terms under no_grad, as the released code did: they are logged, but the arm ends bit for bit equal
    to the L2 arm (the Done line says so), the failure mode shown on purpose.

    Closing the generator (the Stop button, or the browser going away) closes both training loops, which save
    a checkpoint; ``request_stop`` ends the run the same way from another thread. One run at a time.

    On a hosted studio the run belongs to ``request``'s visitor (gradio fills it; ``studio.visitors``), the
    visitor's and then everyone's oldest runs make room for it (``studio.run_budget``), it stops after
    ``HOSTED_RUN_SECONDS`` and, once done, keeps its models and zip but not its checkpoints and photos.
    """
    from diffloss.train_config import LoopConfig, RestorerTrainConfig

    reg = registry or get_registry()
    s = settings
    with _one_run(request) as run:
        caps, notes = train_caps(), []
        try:  # NaN, inf, a seed past 2**63, a learning rate <= 0: said here, by the box's name
            checked = inputs.train_numbers(s.steps, s.batch, s.crop, s.lr, s.gamma, s.lam, s.t_min, s.t_max, s.seed,
                                           s.prior_crop, s.prior_samples)
        except ValueError as err:
            raise gr.Error(str(err)) from err
        lr, gamma, lam, t_min, t_max, seed = (checked[k] for k in ("lr", "gamma", "lam", "t_min", "t_max", "seed"))
        values = {"steps": checked["steps"], "batch": checked["batch"], "crop": checked["crop"]}
        for key, value in values.items():
            if value < 1:
                raise gr.Error(f"{key} must be at least 1, got {value}.")
            if value > caps[key]:
                notes.append(f"{key} {value} capped at {caps[key]} on this {_machine(caps)}")
                values[key] = caps[key]
        for n in notes:
            warn(n)
        try:
            degrade.get_task(s.task)
        except ValueError as err:
            raise gr.Error(str(err)) from err
        task, clean_folder, photos = s.task, s.clean_folder, s.photos
        uploaded = bool(photos)
        if hosting.is_hosted():  # uploads or the shipped examples, never a folder on the server
            photos = _hosted_photos(photos, clean_folder, reg)
        else:
            photos = _shipped_examples_unless_given(photos, clean_folder, reg)
        folder = None if photos else _clean_folder(clean_folder, reg)  # uploads are saved once all checks pass
        entry = start_entry(s.start, task, reg)
        notes.append(f"both arms start from {f'`{entry.label}`' if entry else 'a fresh restorer'}")
        prior = load_prior(s.prior_source, reg)  # fails early, with the reason, before any work
        loss = DiffLossConfig(gamma=float(gamma), lam=float(lam), **_train_t_range(t_min, t_max, prior),
                              **_train_dose(s.t_weight, s.gradient),
                              prior_crop=part_or_all(checked["prior_crop"], values["crop"]),
                              prior_samples=part_or_all(checked["prior_samples"], values["batch"]),
                              detach_prior=bool(s.detach_prior))
        if s.detach_prior:
            notes.append("the released code's no_grad mistake is on: the DiffLoss arm's prior terms send no gradient")
        try:
            loss.validate(prior.num_timesteps, prior.t_band())
        except ValueError as err:
            raise gr.Error(str(err)) from err
        name = s.name or new_run_name(task)
        run_dir = reg.runs / name
        with run_budget.in_use(run_dir):
            evicted = run_budget.room_for_visitor(reg.runs, request)
            if evicted:
                warn(evicted)
                notes.append(evicted)
            visitors.claim(run_dir, request)
            if photos:
                folder = _uploaded_folder(photos, run_dir, notes, shipped=not uploaded)
            loop = LoopConfig(steps=values["steps"], batch_size=values["batch"], lr=float(lr),
                              warmup=min(50, values["steps"] // 10), seed=int(seed),
                              log_every=max(1, values["steps"] // 60), save_every=max(10, values["steps"] // 4),
                              resume=False)
            base = RestorerTrainConfig(task=task, clean=[str(folder)], crop=values["crop"],
                                       init=str(entry.path) if entry else None, width=None if entry else s.width,
                                       prior=str(prior.source), loss=loss, loop=loop)
            for arm, cfg in pair.arm_configs(base, run_dir, TRAIN_TAB).items():
                _start_arm(run, arm, cfg)
            probe = train_gap.new_probe(task, train_gap.probe_photo(reg, [folder]), loop.steps, loop.log_every)
            yield from _stream(run, {arm: [] for arm in ARMS}, name, run_dir, notes, task, probe)


def stopped_runs(registry: Registry | None = None, request: gr.Request | None = None) -> list[tuple[str, str]]:
    """(label, name) of the Train runs that stopped before their last step, newest first (``pair.stopped_pairs``);
    on a hosted studio only the visitor's own."""
    runs = (registry or get_registry()).runs
    return [(label, name) for label, name in pair.stopped_pairs(runs) if visitors.may_use(runs / name, request)]


def resume_pair(name: str | None, request: gr.Request | None = None,
                registry: Registry | None = None) -> Iterator[TrainView]:
    """Continue a stopped Train run where its checkpoints are, with the settings they hold; yields as ``train_pair``.

    Why: Stop, a closed browser or a Space restart save each arm's checkpoint, and without this a visitor could only
    start again. The resumed arms draw the same batches and noise as an uninterrupted run (they derive from the
    seed and step alone), so the final weights are the same; the curves go on from the run's log. On a hosted
    studio only the visitor who started the run may resume it; another visitor's run is answered as missing.
    """
    reg = registry or get_registry()
    if not name:
        raise gr.Error("Choose a stopped run to resume (the list shows runs that stopped before their last step).")
    try:
        inputs.run_name(name)  # one path component: never "..", a path, or over the file system's 255 bytes
    except ValueError as err:
        raise gr.Error(str(err)) from err
    run_dir = reg.runs / name
    if Path(name).name != name or not pair.is_pair(run_dir) or not visitors.may_use(run_dir, request):
        raise gr.Error(f"No Train run named {name!r} in {reg.runs}.")  # a name, never a path; never another's
    with _one_run(request) as run, run_budget.in_use(run_dir):
        caps, history, task = train_caps(), {}, None
        try:
            plans, notes = pair.resume_plans(run_dir, TRAIN_TAB)
        except pair.PairError as err:
            raise gr.Error(str(err)) from err
        for arm, (step, cfg) in plans.items():
            for key, value in (("batch", cfg.loop.batch_size), ("crop", cfg.crop)):
                if value > caps[key]:
                    raise gr.Error(f"The {arm} arm was started with {key} {value}, more than this {_machine(caps)} "
                                   f"allows ({caps[key]}): resume it where it was started.")
            if cfg.loop.steps > caps["steps"]:
                steps = max(step, caps["steps"])
                notes.append(f"{arm}: {cfg.loop.steps} planned steps capped at {steps} on this {_machine(caps)}")
                cfg = replace(cfg, loop=replace(cfg.loop, steps=steps))
            missing = [folder for folder in cfg.clean if not Path(folder).is_dir()]
            if missing:
                raise gr.Error(f"The photos the {arm} arm trained on are gone ({', '.join(missing)}): it cannot go on "
                               "with the same data.")
            notes.append(f"{arm}: resumed at step {step}" if step else f"{arm}: started (it had stopped before step 1)")
            if step:
                cfg = pair.with_resume_note(cfg, f"resumed in the Train tab at step {step}")
            history[arm] = pair.logged_history(run_dir / arm, step)
            _start_arm(run, arm, cfg)
            task, clean, loop = cfg.task, cfg.clean, cfg.loop
        if not run.loops:
            raise gr.Error(f"Run {name!r} has nothing to resume: both arms finished.")
        probe = train_gap.new_probe(task, train_gap.probe_photo(reg, [Path(c) for c in clean]), loop.steps,
                                    loop.log_every)
        yield from _stream(run, history, name, run_dir, notes, task, probe)


def slot_wait_text(now: float | None = None) -> str | None:
    """What a visitor who presses Train (or Resume) while another run holds the slot reads until theirs starts: how
    long that run has held it and, on a hosted studio, the most it can still hold it (a run stops after
    ``HOSTED_RUN_SECONDS``). None when the slot is free. Why: gradio's queue line only shows the average length of
    earlier runs (89.6 s after a few short ones) for a run that may take 8 minutes."""
    since = _RUNNING.get("since")
    if not _TRAIN_LOCK.locked() or since is None:
        return None
    held = max(0.0, (time.monotonic() if now is None else now) - since) / 60
    text = f"**Waiting** for the training slot: another run has held it for {held:.1f} min"
    limit = run_seconds()
    if limit is None:
        return text + "; yours starts when it ends or is stopped (one run at a time on this machine)."
    left = max(0.0, limit / 60 - held)
    return (text + f"; it stops within {left:.1f} min (a run holds the slot at most {limit / 60:g} minutes), then "
            "the next in line starts (your place shows over the curves).")


def _machine(caps: dict[str, int]) -> str:
    return "GPU" if caps is GPU_CAPS else "CPU"


@contextlib.contextmanager
def _one_run(request: gr.Request | None = None) -> Iterator[pair.PairRun]:
    """The Train slot: refuse a second run, hand out a pair run over the module-level loops, close every loop at
    the end (a no-op for a finished loop; a checkpoint for an interrupted one) and free the slot. ``request``'s
    visitor holds it (the one whose Stop counts on a hosted studio)."""
    if not _TRAIN_LOCK.acquire(blocking=False):
        raise gr.Error("A training run is already going (one at a time on this machine): wait for it to finish "
                       "or press Stop.")
    _LOOPS.clear()  # module-level: a shutdown can close them even when no request iterates this run any more
    _STOP.clear()
    _RUNNING["owner"] = visitors.visitor_key(request)
    _RUNNING["since"] = time.monotonic()  # for slot_wait_text: how long the slot has been held
    run = pair.PairRun(loops=_LOOPS, stop=_STOP)
    try:
        yield run
    finally:
        run.close()
        _RUNNING.clear()
        _TRAIN_LOCK.release()


def _start_arm(run: pair.PairRun, arm: str, cfg) -> None:
    """Start one arm's training loop; a bad setting is the arm's gr.Error."""
    try:
        run.start(arm, cfg)
    except (ValueError, RuntimeError, OSError) as err:
        raise gr.Error(f"Cannot start the {arm} arm: {err}") from err


def _stream(run: pair.PairRun, history: dict[str, list], name: str, run_dir: Path, notes: list[str],
            task: str, probe: ArmProbe | None = None) -> Iterator[TrainView]:
    """Step the arms in turn and yield the tab's view until both finish or Stop is pressed; at logged steps
    ``probe`` restores its photo with both arms (``diffloss.arm_gap``: how far apart they have moved).

    A run nobody iterates any more (the page was closed: gradio closes this generator) keeps what it trained as
    partial models, as after Stop; so does one the app's shutdown stops (``stop_for_shutdown``).
    """
    totals = run.totals
    _RUNNING["run_dir"] = run_dir
    limit = run_seconds()

    drawn: dict[int, tuple] = {}  # the gap's pictures by the number of measured steps: redrawn when it grows

    def view(status: str, archive: str | None = None) -> TrainView:
        measured = len(probe.gaps) if probe else 0
        if measured not in drawn:
            drawn.clear()
            drawn[measured] = (train_gap.gap_curve(probe), *train_gap.gap_picture(probe))
        return TrainView(status, training_figure(history), archive, *drawn[measured])

    try:
        yield view(_status(history, totals, name, notes, "Starting"))
        for events in run.rounds(None if limit is None else time.monotonic() + limit):
            for arm, event in events.items():
                points = history.setdefault(arm, [])
                if event.kind in ("step", "done") and event.values and (not points or points[-1][0] != event.step):
                    points.append((event.step, dict(event.values)))  # "done" repeats the last step's values: once
                if event.kind == "stopped":
                    notes.append(f"{arm}: {event.message}")
            _observe(probe, events, totals)
            yield view(_status(history, totals, name, notes, "Training"))
    except pair.ArmDiverged as err:
        run.close()
        if hosting.is_hosted():  # nothing to resume or compare: it would only take room in the visitor's cap
            shutil.rmtree(run_dir, ignore_errors=True)
            raise gr.Error(f"The {err.arm} arm diverged, so the run was not kept: {err}") from err
        raise gr.Error(f"The {err.arm} arm diverged: {err}") from err
    except GeneratorExit:
        run.close()  # each arm saves its checkpoint
        pair.export_stopped_arms(run_dir)
        raise
    _RUNNING["finishing"] = True  # Stop from now on would only write over the summary below (request_stop)
    if run.stopped:
        saved = "checkpoints saved, no final model yet; resume it below (Resume a stopped run)"
        stopped = (f"stopped after {limit / 60:g} minutes, the most one run may hold the training slot here, so "
                   f"other visitors get their turn: {saved}" if run.timed_out else f"stopped: {saved}")
        partial = pair.partial_models_note(pair.export_stopped_arms(run_dir), task)
        yield view(_status(history, totals, name, notes + [stopped, partial], "Stopped"))
        return
    archive = pair.zip_models(run_dir)
    if hosting.is_hosted():  # the models and the zip stay; the checkpoints and the visitor's photos go
        pair.drop_training_state(run_dir)
    done = notes + [pair.arms_difference(run_dir),
                    f"both arms saved; Compare and Inspect select them when their task is {task}"]
    yield view(_status(history, totals, name, done, "Done"), str(archive))


def _observe(probe: ArmProbe | None, events: dict, totals: dict[str, int]) -> None:
    """Both arms logged the same step this round: let the probe measure them (always at the run's last step)."""
    steps = {ev.step for ev in events.values() if ev.kind == "step" and ev.model is not None}
    if probe is None or len(steps) != 1 or set(events) != set(ARMS) or \
            any(ev.kind != "step" or ev.model is None for ev in events.values()):
        return
    step = steps.pop()
    probe.observe(step, {arm: events[arm].model for arm in ARMS}, force=step >= max(totals.values()))
