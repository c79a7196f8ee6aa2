"""What ``pretrained/`` holds, how to load it by task and arm, and the one command that rebuilds it.

    python -m diffloss.zoo build --quick        # the 2-CPU-core recipe (resumable; run it with --time-limit)
    python -m diffloss.zoo build                # the full recipe (meant for a CUDA GPU)
    python -m diffloss.zoo report               # pretrained/REPORT.md + report.json

The zoo is an experiment: per task one L2 **base** restorer, trained until its validation curve is flat, then a
**dose-response family** of arms fine-tuned from that base with the same seed, the same batches and the same
steps, differing only in how much of the gradient the diffusion prior carries and where (the arms are listed
once, in ``diffloss.family.FAMILY``), plus one control: the L2 arm again with another seed, which says how far
training noise alone moves the output. Optional arms (the released code's weights) are built after every task's
required ones. The weights for a share are solved from the gradient norms measured through the base on training
photos (``diffloss.calibrate``), never on the validation photos the report uses.

Every step is a training run of ``diffloss.train`` in ``<runs>/<recipe>/``; a step whose model exists is
skipped and an interrupted one resumes from its checkpoint, so rerunning the command continues where it stopped.
Finished models are installed into ``pretrained/`` (restorers in fp16) with cards that say the command, data,
steps, time and device.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shutil
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import torch

from diffloss import checkpoint, train
from diffloss.loss import DiffLossConfig, weights_for_shares
from diffloss.family import BUILD_ORDER, FAMILY, SOTS_VAL_SCENES, ArmSpec, ZooPaths
from diffloss.paths import TASK_ORDER
from diffloss.provenance import default_roots, portable_card


# Every weight in pretrained/ is stored in this dtype (issue #13: at most 120 MB in all); loading computes in float32.
SHIPPED_DTYPE = torch.float16
SHIPPED_STORAGE = str(SHIPPED_DTYPE).removeprefix("torch.")  # what a card says: "float16"


@dataclass(frozen=True)
class PriorRecipe:
    preset: str = "small"
    crop: int = 64
    batch_size: int = 16
    steps: int = 1500
    lr: float = 3e-4


@dataclass(frozen=True)
class RestorerRecipe:
    crop: int = 96  # the L2 base's crop
    arm_crop: int | None = None  # the arms' crop (None: same as the base); smaller makes DiffLoss cheap on CPU
    # Tasks whose arms keep the base's crop all the same: the synthetic haze field is drawn per crop, so a small
    # crop trains on haze that varies faster than in the photos it is used on (bench/results/zoo-haze-crop.md).
    base_crop_tasks: tuple[str, ...] = ()
    batch_size: int = 8
    base_steps: int = 1500
    # A base with nothing to continue from (no previous L2 arm, or one of another architecture) needs more steps
    # than one that continues; None: base_steps either way.
    fresh_base_steps: int | None = None
    # Tasks whose base continues for other than base_steps, as (task, steps) pairs.
    task_base_steps: tuple[tuple[str, int], ...] = ()
    arm_steps: int = 200
    # Tasks whose arms train on other than ``batch_size`` items a step, as (task, batch) pairs: a larger batch
    # lowers the training noise between two seeds more than it changes what the prior moves
    # (bench/results/zoo-haze-arm-batch.md).
    task_arm_batch: tuple[tuple[str, int], ...] = ()
    base_lr: float = 5e-4
    arm_lr: float = 3e-4
    # "previous": the base continues from the L2 arm pretrained/ held when the build started (a snapshot is
    # kept in the run folder, so a resume never reads the new arm), unless that arm's architecture is not the
    # task's (``train.new_restorer_config``); None: a fresh restorer.
    base_init: str | None = None
    calibration_images: int = 8  # training photos, evenly spread (the validation photos stay unseen)
    val_images: int = 8  # clean/val photos for the base's validation curve
    val_crop: int = 128
    val_points: int = 10  # points on the validation curve

    def arm_crop_for(self, task: str) -> int:
        """The crop a task's arms (and their calibration) train on."""
        return self.crop if self.arm_crop is None or task in self.base_crop_tasks else self.arm_crop

    def arm_batch_for(self, task: str) -> int:
        """The batch a task's arms train on: its own entry or ``batch_size`` (the base's)."""
        return dict(self.task_arm_batch).get(task, self.batch_size)

    def continued_base_steps(self, task: str) -> int:
        """The steps of a task's base that continues from a previous arm: its own entry or ``base_steps``."""
        return dict(self.task_base_steps).get(task, self.base_steps)

    def base_steps_for(self, task: str, init: str | None) -> int:
        """The base's steps: the continued steps when it continues from ``init``, ``fresh_base_steps`` from
        scratch."""
        if init or self.fresh_base_steps is None:
            return self.continued_base_steps(task)
        return self.fresh_base_steps


@dataclass(frozen=True)
class Recipe:
    name: str
    prior: PriorRecipe
    restorer: RestorerRecipe
    tasks: tuple[str, ...] = TASK_ORDER
    seed: int = 0


RECIPES: dict[str, Recipe] = {
    # 2 CPU cores: the base goes on from the previous zoo's L2 arm at 96 px; the arms train on 64 px crops, where
    # a DiffLoss step with the small prior costs several L2 steps at 96 px (bench/results/zoo-cpu.md).
    # The arms' lr is high (3e-3, cosine-decayed over 200 steps): at 3e-4 even a 99 % prior share moved the
    # output less than training noise does (bench/results/zoo-visibility-probe.md), and so did 1e-3 over 600 steps
    # (bench/results/zoo-arm-regime.md).
    # A task whose layout changed (sr4) starts its base over, for 8000 steps (bench/results/zoo-sr4-layout.md).
    # Haze's arms take batch 16: at 8, two L2 seeds landed further apart than any prior arm from l2
    # (bench/results/zoo-haze-arm-batch.md).
    # The 2026-12 bases continue for 300 steps from the 2026-11 L2 arms, whose bases had trained 900 to 8000
    # steps until their curves were flat (haze's and lowlight's 3000: bench/results/zoo-haze-base-probe.md):
    # enough to give every arm of a task one fresh base on the new build's machine and seed.
    "quick": Recipe("quick", PriorRecipe(),
                    RestorerRecipe(arm_crop=64, base_crop_tasks=("haze",), base_init="previous", base_steps=300,
                                   fresh_base_steps=8000, task_arm_batch=(("haze", 16),), arm_lr=3e-3)),
    "full": Recipe(
        "full",
        PriorRecipe(preset="base", batch_size=128, steps=20000, lr=2e-4),
        RestorerRecipe(crop=128, batch_size=32, base_steps=20000, arm_steps=5000, base_lr=1e-3, arm_lr=2e-4,
                       calibration_images=16),
    ),
}


# ---------------------------------------------------------------------------------------------- building
@dataclass
class Step:
    """One unit of the build: a name for the log, whether it is done, and how to do it."""

    name: str
    done: Callable[[], bool]
    run: Callable[[], None]


def _drain(events: Iterator[train.TrainEvent], log: Callable[[str], None], name: str,
           on_checkpoint: Callable[[train.TrainEvent], None] | None = None) -> train.TrainEvent:
    last = None
    for event in events:
        last = event
        if event.kind in ("checkpoint", "stopped", "done"):
            log(f"[{name}] {event.kind} at step {event.step}/{event.total_steps} {event.message}".rstrip())
        if event.kind == "checkpoint" and on_checkpoint is not None:
            on_checkpoint(event)
    if last is None or last.kind != "done":
        raise RuntimeError(f"[{name}] stopped before the end; rerun the build to resume")
    return last


def _loop(out: Path, steps: int, batch: int, lr: float, seed: int, device: str, command: str,
          time_limit: float | None, threads: int | None = None, save_every: int | None = None,
          log_every: int = 25) -> train.LoopConfig:
    return train.LoopConfig(out=str(out), steps=steps, batch_size=batch, lr=lr, warmup=min(200, steps // 10 + 1),
                            seed=seed, log_every=log_every, save_every=save_every or max(50, steps // 10),
                            device=device, command=command, time_limit_min=time_limit, threads=threads)


def _task_data(task: str, paths: ZooPaths) -> dict:
    """Haze mixes the real SOTS pairs (validation scenes held out) with synthetic haze; the rest is synthetic."""
    data = {"clean": [str(paths.clean_train)]}
    if task == "haze" and paths.sots.is_dir():
        data.update(paired=[str(paths.sots)], paired_exclude=list(SOTS_VAL_SCENES))
    return data


def arm_weights(arm: ArmSpec, calibration: dict) -> tuple[float, float]:
    """(gamma, lambda) for an arm: fixed, zero for the L2 arm, or solved for its shares from measured norms."""
    if arm.weights is not None:
        return arm.weights
    if not arm.uses_prior:
        return 0.0, 0.0
    return weights_for_shares(calibration["norms"][arm.dose_key], arm.nat_share, arm.sem_share)


def arm_dose(arm: ArmSpec, num_timesteps: int) -> DiffLossConfig:
    """The arm's dose (band, t weights, gradient) at unit weights: what its calibration measures through."""
    t_max = None if arm.t_max is None else min(arm.t_max, num_timesteps - 1)  # a small test prior: < 1000 steps
    return DiffLossConfig(band=arm.band, t_max=t_max,
                          t_weight=arm.t_weight, gradient=arm.gradient)


def arm_loss_config(arm: ArmSpec, calibration: dict) -> DiffLossConfig:
    gamma, lam = arm_weights(arm, calibration)
    # The L2 arm skips L_nat/L_sem entirely (no prior passes); its loss is fidelity either way.
    dose = arm_dose(arm, int(calibration.get("num_timesteps", 1000)))
    return dataclasses.replace(dose, gamma=gamma, lam=lam if gamma else 0.1, track_when_off=False)


def validation_images(paths: ZooPaths, count: int) -> list[torch.Tensor]:
    from diffloss.images import list_images, load_image

    return [load_image(p) for p in list_images(paths.clean_val)[:count]]


def validation_psnr(model: torch.nn.Module, task: str, images: list[torch.Tensor], crop: int) -> tuple[float, float]:
    """(mean PSNR of the restored, of the degraded input) on centre crops degraded with seeds 0..n-1."""
    from diffloss import degrade
    from diffloss.images import centre_crop
    from diffloss.metrics import psnr

    spec = degrade.get_task(task)
    out, inp = [], []
    model.eval()
    for i, img in enumerate(images):
        clean = degrade.crop_to_multiple(centre_crop(img, crop), spec.size_multiple)[None]
        pair = degrade.make_pair(task, clean, i)
        with torch.no_grad():
            restored = model(pair.net_input).clamp(0, 1)
        shown = pair.lq if pair.lq.shape == clean.shape else pair.net_input[:, :3]
        out.append(psnr(restored[0], clean[0]))
        inp.append(psnr(shown[0].clamp(0, 1), clean[0]))
    return sum(out) / len(out), sum(inp) / len(inp)


def read_curve(path: Path) -> list[dict[str, float]]:
    """The rows of a base's ``val_curve.csv`` (empty when it has none)."""
    if not path.is_file():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


class ValidationCurve:
    """The base's validation PSNR at every checkpoint (EMA weights, as exported), in ``val_curve.csv``."""

    FIELDS = ("step", "psnr", "input_psnr")

    def __init__(self, path: Path, model: torch.nn.Module, task: str, images: list[torch.Tensor], crop: int) -> None:
        self.path, self.model, self.task, self.images, self.crop = path, model, task, images, crop

    def rows(self) -> list[dict[str, float]]:
        return read_curve(self.path)

    def record(self, step: int, state: dict[str, torch.Tensor] | None = None) -> None:
        rows = [r for r in self.rows() if r["step"] < step]
        if state is not None:
            self.model.load_state_dict(state)
        value, base = validation_psnr(self.model, self.task, self.images, self.crop)
        rows.append({"step": step, "psnr": round(value, 4), "input_psnr": round(base, 4)})
        lines = [",".join(self.FIELDS)] + [",".join(f"{r[k]:g}" for k in self.FIELDS) for r in rows]
        checkpoint.atomic_write_text(self.path, "\n".join(lines) + "\n")

    def from_checkpoint(self, event: train.TrainEvent) -> None:
        tensors = checkpoint.load_tensors(Path(event.path))
        self.record(event.step, {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})


def curve_is_flat(rows: list[dict[str, float]], tolerance_db: float = 0.1) -> bool | None:
    """Flat = the last fifth of the curve gains less than ``tolerance_db`` (None with too few points)."""
    if len(rows) < 5:
        return None
    tail = rows[-max(2, len(rows) // 5):]
    return tail[-1]["psnr"] - tail[0]["psnr"] < tolerance_db


def plan(recipe: Recipe, paths: ZooPaths, device: str = "auto", time_limit: float | None = None,
         log: Callable[[str], None] = print, command: str | None = None, threads: int | None = None) -> list[Step]:
    """The build as an ordered list of steps; ``build`` runs the ones not done yet.

    Per task: base, calibration, then the required arms; every optional arm comes after all tasks.
    ``command`` is what the cards record (the CLI passes its own argv, options included).
    """
    work = paths.runs / recipe.name
    command = command or f"python -m diffloss.zoo build{' --quick' if recipe.name == 'quick' else ''}"
    pr, rr = recipe.prior, recipe.restorer
    steps: list[Step] = []

    def train_prior() -> None:
        cfg = train.PriorTrainConfig(clean=[str(paths.clean_train)], preset=pr.preset, crop=pr.crop,
                                     loop=_loop(work / "prior", pr.steps, pr.batch_size, pr.lr, recipe.seed, device,
                                                command, time_limit, threads))
        _drain(train.train_prior(cfg), log, "prior")
        install_prior(work / "prior" / "model", paths, log)

    steps.append(Step("prior", lambda: (paths.prior_dir() / "config.json").is_file(), train_prior))
    optional: list[Step] = []

    for task in recipe.tasks:
        base = work / task / "base"
        installed = partial(_task_installed, paths, recipe, task)

        def train_base(task: str = task, base: Path = base) -> None:
            init = snapshot_base_init(task, rr, paths, base.parent / "init", log)
            base_steps = rr.base_steps_for(task, init)
            cfg = train.RestorerTrainConfig(task=task, crop=rr.crop, prior=None, diffloss=False, init=init,
                                            loss=DiffLossConfig.off(track_when_off=False),
                                            loop=_loop(base, base_steps, rr.batch_size, rr.base_lr, recipe.seed,
                                                       device, command, time_limit, threads,
                                                       save_every=max(1, base_steps // rr.val_points)),
                                            **_task_data(task, paths))
            from diffloss import nets

            model = nets.load_restorer(init) if init else nets.Restorer(train.new_restorer_config(task))
            curve = ValidationCurve(base / "val_curve.csv", model, task,
                                    validation_images(paths, rr.val_images), rr.val_crop)
            if not curve.rows():
                curve.record(0)  # the starting point
            _drain(train.train_restorer(cfg), log, f"{task}/base", on_checkpoint=curve.from_checkpoint)
            curve.record(base_steps, nets.load_restorer(base / "model").state_dict())
            log(f"[{task}/base] validation PSNR {curve.rows()[0]['psnr']:.2f} -> {curve.rows()[-1]['psnr']:.2f} dB "
                f"(input {curve.rows()[-1]['input_psnr']:.2f}); flat: {curve_is_flat(curve.rows())}")

        steps.append(Step(f"{task}/base", lambda base=base, installed=installed: _run_done(base) or installed(),
                          train_base))

        def calibrate_task(task: str = task, base: Path = base) -> None:
            calibration = run_calibration(task, base / "model", paths, rr)
            checkpoint.atomic_write_json(base.parent / "calibration.json", calibration)
            weights = {arm.name: arm_weights(arm, calibration) for arm in FAMILY if arm.uses_prior}
            log(f"[{task}/calibrate] " + "; ".join(f"{name}: gamma={gamma:.4g} lambda={lam:.4g}"
                                                   for name, (gamma, lam) in weights.items()))

        steps.append(Step(f"{task}/calibrate", lambda base=base, installed=installed:
                          (base.parent / "calibration.json").is_file() or installed(), calibrate_task))

        for arm in sorted(FAMILY, key=lambda a: BUILD_ORDER.index(a.name)):
            def train_arm(task: str = task, arm: ArmSpec = arm, base: Path = base) -> None:
                calibration = json.loads((base.parent / "calibration.json").read_text())
                cfg = train.RestorerTrainConfig(
                    task=task, crop=rr.arm_crop_for(task), init=str(base / "model"), prior=str(paths.prior_dir()),
                    diffloss=arm.uses_prior, loss=arm_loss_config(arm, calibration),
                    loop=_loop(base.parent / arm.name, rr.arm_steps, rr.arm_batch_for(task), rr.arm_lr,
                               recipe.seed + 1 + arm.seed_offset, device, command, time_limit, threads, log_every=10),
                    **_task_data(task, paths))
                _drain(train.train_restorer(cfg), log, f"{task}/{arm.name}")
                if arm.shipped:
                    install_restorer(base.parent / arm.name / "model", paths.restorer_dir(task, arm.name), calibration,
                                     recipe, log, base=base, command=command, arm=arm, paths=paths)

            step = Step(f"{task}/{arm.name}", partial(_arm_done, paths, recipe, task, arm, base), train_arm)
            (optional if arm.optional else steps).append(step)
    return steps + optional


def _run_done(folder: Path) -> bool:
    return (folder / "model" / checkpoint.MODEL_FILE).is_file()


def _task_installed(paths: ZooPaths, recipe: Recipe, task: str) -> bool:
    """Every shipped arm of the task's family is in pretrained/, installed by this recipe: a fresh clone's build
    then trains nothing for the task (no base for arms it already has)."""
    return all(_installed_by(paths.restorer_dir(task, a.name), recipe, task)
               for a in FAMILY if a.shipped and not a.optional)


def _arm_done(paths: ZooPaths, recipe: Recipe, task: str, arm: ArmSpec, base: Path) -> bool:
    """A shipped arm: installed by this recipe. An unshipped one (the control) lives in the run folder; when the
    family is installed but its base run is gone, it is left out, as it could no longer share the arms' base."""
    if arm.shipped:
        return _installed_by(paths.restorer_dir(task, arm.name), recipe, task)
    return _run_done(base.parent / arm.name) or (_task_installed(paths, recipe, task) and not _run_done(base))


def _installed_by(folder: Path, recipe: Recipe, task: str) -> bool:
    """An arm counts as built only when this recipe, with the task's settings, installed it (not an older zoo's)."""
    if not (folder / checkpoint.MODEL_FILE).is_file():
        return False
    card = checkpoint.read_json(folder / checkpoint.CARD_FILE) if (folder / checkpoint.CARD_FILE).is_file() else {}
    return (card.get("recipe") == recipe.name and card.get("recipe_settings") == recipe_settings(recipe, task)
            and "arm" in card)


def recipe_settings(recipe: Recipe, task: str) -> dict:
    """What a card records of the recipe that built its task, so a changed recipe rebuilds the arms it changes.

    Per task: the arms' crop and batch and the base's steps are this task's (``base_crop_tasks``,
    ``task_arm_batch`` and ``task_base_steps`` themselves are not recorded), so moving another task to the base's
    crop, another batch or other steps leaves this one built.
    The family's arms are part of it: every arm of a task must come from one base, so an arm added to the family
    rebuilds the task (base, calibration and all arms) rather than hanging a new arm on a different base.
    """
    family = [[a.name, a.nat_share, a.sem_share, a.t_max, a.weights, a.seed_offset]
              + ([] if a.paper_dose else [a.band, a.t_weight, a.gradient])  # the 2026-11 cards list no dose
              for a in FAMILY if not a.optional]
    restorer = dataclasses.asdict(recipe.restorer)
    del restorer["base_crop_tasks"], restorer["task_base_steps"], restorer["task_arm_batch"]
    restorer["arm_crop"] = recipe.restorer.arm_crop_for(task)
    restorer["arm_batch"] = recipe.restorer.arm_batch_for(task)
    restorer["base_steps"] = recipe.restorer.continued_base_steps(task)
    settings = {"seed": recipe.seed, **restorer, "family": family}
    return json.loads(json.dumps(settings))  # as a card holds it (tuples become lists), so the two compare equal


def snapshot_base_init(task: str, rr: RestorerRecipe, paths: ZooPaths, snapshot: Path,
                       log: Callable[[str], None] = print) -> str | None:
    """The folder the base starts from; for "previous", a copy of the shipped L2 arm taken once (None, a fresh
    restorer, when there is none or it has another architecture than the task's: a changed layout starts over)."""
    if rr.base_init is None:
        return None
    if rr.base_init != "previous":
        return rr.base_init
    if not (snapshot / checkpoint.MODEL_FILE).is_file():
        source = paths.restorer_dir(task, "l2")
        if not (source / checkpoint.MODEL_FILE).is_file():
            log(f"[{task}/base] no previous L2 arm in {source}; starting from a fresh restorer")
            return None
        if _architecture(source) != train.new_restorer_config(task).to_dict():
            log(f"[{task}/base] the previous L2 arm has another architecture than the task's; "
                "starting from a fresh restorer")
            return None
        tmp = snapshot.with_name(snapshot.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
        tmp.rename(snapshot)
    return str(snapshot)


def _architecture(folder: Path) -> dict:
    from diffloss.nets import RestorerConfig

    return RestorerConfig.from_dict(checkpoint.read_json(folder / checkpoint.CONFIG_FILE)).to_dict()


def build(recipe: Recipe, paths: ZooPaths, device: str = "auto", time_limit: float | None = None,
          only: list[str] | None = None, log: Callable[[str], None] = print, command: str | None = None,
          threads: int | None = None, optional: bool = True) -> None:
    """Run every step that is not done yet (``only``: step or task names; ``optional``: the optional arms too)."""
    names_optional = {f"{t}/{a.name}" for t in recipe.tasks for a in FAMILY if a.optional}
    for step in plan(recipe, paths, device, time_limit, log, command, threads):
        if only and step.name not in only and step.name.split("/")[0] not in only:
            continue
        if not optional and step.name in names_optional:
            continue
        if step.done():
            log(f"[{step.name}] already built, skipped")
            continue
        log(f"[{step.name}] building")
        step.run()


def calibration_images(paths: ZooPaths, count: int) -> list[torch.Tensor]:
    """``count`` training photos spread evenly over the folder (both sources), never a validation photo."""
    from diffloss.images import list_images, load_image

    files = list_images(paths.clean_train)
    stride = max(1, len(files) // count)
    return [load_image(p) for p in files[::stride][:count]]


def run_calibration(task: str, base_model: Path, paths: ZooPaths, rr: RestorerRecipe) -> dict:
    """Unit-weight gradient norms through the L2 base, per dose the family uses (``ArmSpec.dose_key``), and the
    timesteps each dose drew (the prior's band resolved)."""
    from diffloss.calibrate import measure_norms
    from diffloss.nets import load_restorer
    from diffloss.prior import DiffusionPrior

    prior = DiffusionPrior.from_pretrained(paths.prior_dir())
    restorer = load_restorer(base_model)
    images = calibration_images(paths, rr.calibration_images)
    norms, ranges = {}, {}
    for arm in FAMILY:
        key = arm.dose_key
        if arm.uses_prior and arm.weights is None and key not in norms:
            cfg = arm_dose(arm, prior.num_timesteps)
            norms[key] = measure_norms(prior, restorer, task, images, crop=rr.arm_crop_for(task), config=cfg)
            ranges[key] = list(cfg.validate(prior.num_timesteps, prior.t_band()))
    return {"norms": norms, "t_ranges": ranges, "images": len(images), "data": "clean/train (evenly spread photos)",
            "num_timesteps": prior.num_timesteps,
            "crop": rr.arm_crop_for(task),
            "note": "unit-weight gradient norms of fidelity, L_nat and L_sem on training photos restored by the L2 "
                    "base; each arm's weights are solved from them for its target shares (diffloss.calibrate)"}


def install_prior(model_dir: Path, paths: ZooPaths, log: Callable[[str], None] = print) -> None:
    """Copy the trained prior into pretrained/prior in ``SHIPPED_DTYPE`` (as every shipped weight), add the
    validation numbers and samples.png to its card, and its band (``diffloss.prior_band``) measured on the training
    photos its run held out (never the validation photos: the band is a choice, the validation numbers a report)."""
    from diffloss import prior_band, prior_check, viz
    from diffloss.data import load_clean_images
    from diffloss.prior import DiffusionPrior, PriorLoadError
    from PIL import Image

    dest = paths.prior_dir()
    try:  # the prior this one replaces: its curve is drawn beside the new one's
        replaced = DiffusionPrior.from_pretrained(dest) if (dest / "config.json").is_file() else None
    except PriorLoadError:
        replaced = None
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model_dir, tmp)
    DiffusionPrior.from_pretrained(tmp).save_pretrained(tmp, dtype=SHIPPED_DTYPE)
    prior = DiffusionPrior.from_pretrained(tmp)  # measured as it is shipped
    crops = prior_check.validation_crops(load_clean_images(paths.clean_val), crop=64, per_image=2)
    errors = prior_check.noise_prediction_error(prior, crops, prior_check.CARD_TIMESTEPS)
    Image.fromarray(prior_check.sample_sheet(prior, crops[:4])).save(tmp / "samples.png")
    card = json.loads((tmp / checkpoint.CARD_FILE).read_text())
    card["storage"] = SHIPPED_STORAGE
    (tmp / prior_band.BAND_FILE).unlink(missing_ok=True)
    band = measure_band(prior, card, paths, replaced)
    if isinstance(band, dict):
        prior_band.write_band(tmp, band["band"], band["curve"], band["data"])
        curves = {"this prior": band["curve"], **({"the prior it replaced": band["replaced"]} if replaced else {})}
        Image.fromarray(viz.prior_curve_figure(curves, (band["band"].t_min, band["band"].t_max))).save(
            tmp / "curve.png")
        card["band"] = {"t_min": band["band"].t_min, "t_max": band["band"].t_max, "why": band["band"].why,
                        "rule": prior_band.RULE, "data": band["data"], "figure": "curve.png"}
        if replaced is not None:
            card["band"]["replaced_prior_curve"] = {str(t): row for t, row in band["replaced"].items()}
    else:
        card.pop("band", None)
        log(f"[prior] no band ({band}): doses draw t over the whole schedule")
    card["validation"] = {"data": str(paths.clean_val), "crops": len(crops), "crop": 64,
                          "eps_mse": {str(k): v for k, v in errors.items()},
                          "note": "mean squared error of the predicted noise; 1.0 = predicting zero"}
    checkpoint.atomic_write_json(tmp / checkpoint.CARD_FILE, shipped_card(card, paths))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    log(f"[prior] installed in {dest}: eps MSE {errors}")


def measure_band(prior, card: dict, paths: ZooPaths, replaced=None) -> dict | str:
    """The prior's band and the curve it was read from, on the training photos its run held out (``holdout_every``
    in its card's config), or why there is none (no photo held out; a curve no t passes). ``replaced``: another
    prior measured on the same crops (its curve under "replaced")."""
    from diffloss import prior_band, prior_check

    every = int((card.get("config") or {}).get("holdout_every") or 0)
    if every < 2:
        return "its run held out no training photos to measure the band on"
    crops, data = prior_check.held_out_crops(paths.clean_train, every)
    timesteps = prior_band.curve_timesteps(prior.num_timesteps)
    curve = prior_check.band_curve(prior, crops, timesteps)
    band = prior_band.band_or_reason(curve)
    if isinstance(band, str):
        return band
    other = {"replaced": prior_check.band_curve(replaced, crops, timesteps)} if replaced is not None else {}
    return {"band": band, "curve": curve, **other, "data": data}


def install_restorer(model_dir: Path, dest: Path, calibration: dict, recipe: Recipe,
                     log: Callable[[str], None] = print, base: Path | None = None, command: str | None = None,
                     arm: ArmSpec | None = None, paths: ZooPaths | None = None) -> None:
    """Store a finished arm in fp16 (halves the size; the report measures it as shipped).

    The card gains the recipe, the arm (its target shares, t range and the weights they gave), the calibration
    and a summary of the L2 base run it was fine-tuned from (with its validation curve and what the base itself
    started from), so it says the whole history of the weights.
    """
    from diffloss.nets import load_restorer, save_restorer

    model = load_restorer(model_dir)
    card = json.loads((model_dir / checkpoint.CARD_FILE).read_text())
    card.update(recipe=recipe.name, recipe_settings=recipe_settings(recipe, model.config.task),
                calibration=calibration, storage=SHIPPED_STORAGE)
    if arm is not None:
        gamma, lam = arm_weights(arm, calibration)
        card["arm"] = {"name": arm.name, "about": arm.about, "nat_share": arm.nat_share, "sem_share": arm.sem_share,
                       "t_max": arm.t_max, "gamma": gamma, "lam": lam, "dose": arm.dose_words(),
                       "t_range": (calibration.get("t_ranges") or {}).get(arm.dose_key)}
    if command:
        card["command"] = command
    if base is not None and (base / "model" / checkpoint.CARD_FILE).is_file():
        card["base"] = base_summary(base)
    save_restorer(model, dest, card=shipped_card(card, paths or ZooPaths()), dtype=SHIPPED_DTYPE)
    log(f"[install] {dest}")


def shipped_card(card: dict, paths: ZooPaths) -> dict:
    """A card as ``pretrained/`` ships it: data by dataset-relative paths, the build's runs and pretrained folders
    as ``runs/zoo/`` and ``pretrained/`` (``diffloss.provenance``), never the build machine's own folders."""
    return portable_card(card, paths.datasets, {**default_roots(), paths.runs: "runs/zoo/",
                                                paths.pretrained: "pretrained/"})


def base_summary(base: Path) -> dict:
    """What a card says of the L2 base run: its training, its validation curve, and where it started."""
    b = json.loads((base / "model" / checkpoint.CARD_FILE).read_text())
    summary = {"steps": b.get("steps"), "wall_time_s": b.get("wall_time_s"), "device": b.get("device"),
               "batch_size": b.get("batch_size"), "crop": b.get("config", {}).get("crop"),
               "lr": b.get("config", {}).get("loop", {}).get("lr"), "final_loss": b.get("final_loss"),
               "loss": "fidelity only (mse)"}
    curve = read_curve(base / "val_curve.csv")
    if curve:
        summary["validation_curve"] = curve
        summary["validation_flat"] = curve_is_flat(curve)
    init = b.get("config", {}).get("init")
    init_card = Path(init) / checkpoint.CARD_FILE if init else None
    if init_card is not None and init_card.is_file():
        previous = json.loads(init_card.read_text())
        summary["started_from"] = {"what": "the previous zoo's L2 arm", "steps": previous.get("steps"),
                                   "wall_time_s": previous.get("wall_time_s"), "base": previous.get("base")}
    return summary


# ------------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffloss.zoo", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="train whatever pretrained/ is missing (resumable)")
    b.add_argument("--quick", action="store_true", help="the 2-CPU-core recipe (default: full, for a GPU)")
    b.add_argument("--only", nargs="*", default=None, help="step or task names, e.g. prior noise haze/base")
    b.add_argument("--device", default="auto")
    b.add_argument("--time-limit", type=float, default=None, help="minutes per training step before it pauses")
    b.add_argument("--plan", action="store_true", help="list the steps and whether each is done, then exit")
    b.add_argument("--threads", type=int, default=None, help="CPU threads per training run")
    b.add_argument("--no-optional", action="store_true", help="skip the optional arms (the released weights)")
    r = sub.add_parser("report", help="write pretrained/REPORT.md and report.json")
    r.add_argument("--tasks", nargs="*", default=None,
                   help="measure only these tasks, keeping the others from the existing report.json")
    r.add_argument("--blind-only", action="store_true",
                   help="measure nothing: rewrite the report with the blind judgements in pretrained/report/blind "
                        "(python -m diffloss.blind tally ... --save), every task's numbers kept from report.json")
    r.add_argument("--summary", action="store_true",
                   help="print the at-a-glance table of the existing report.json (for the README) and exit")
    i = sub.add_parser("install-prior", help="install a trained prior folder (a run's model or export) as "
                       "pretrained/prior: float16, its validation numbers, sample sheet and band")
    i.add_argument("folder")
    for q in (b, r, i):
        q.add_argument("--datasets", default=str(ZooPaths().datasets))
        q.add_argument("--runs", default=str(ZooPaths().runs))
        q.add_argument("--pretrained", default=str(ZooPaths().pretrained))
    args = p.parse_args(argv)
    paths = ZooPaths(Path(args.datasets), Path(args.runs), Path(args.pretrained))
    if args.cmd == "report":
        from diffloss.zoo_report import REPORT_JSON, ReportError, summary_lines, write_report

        if args.summary:
            report = paths.pretrained / REPORT_JSON
            if not report.is_file():
                p.error(f"no {REPORT_JSON} in {paths.pretrained}: run the report first")
            print("\n".join(summary_lines(json.loads(report.read_text()))))
            return 0
        try:
            write_report(paths, tasks=() if args.blind_only else tuple(args.tasks) if args.tasks else None)
        except ReportError as err:
            p.exit(2, f"python -m diffloss.zoo report: {err}\n")
        return 0
    if args.cmd == "install-prior":
        if not (Path(args.folder) / "config.json").is_file():
            p.error(f"no prior in {args.folder} (looked for config.json)")
        install_prior(Path(args.folder), paths)
        return 0
    recipe = RECIPES["quick" if args.quick else "full"]
    given = list(sys.argv[1:] if argv is None else argv)
    # The data folder is always named (a card shows it as $DIFFLOSS_DATASETS): the default one is this machine's.
    named = any(a == "--datasets" or a.startswith("--datasets=") for a in given)
    command = "python -m diffloss.zoo " + " ".join(given + ([] if named else ["--datasets", str(paths.datasets)]))
    if not paths.clean_train.is_dir():
        p.error(f"clean training photos not found at {paths.clean_train} (use --datasets)")
    if args.plan:
        for step in plan(recipe, paths, args.device, command=command, threads=args.threads):
            print(f"{'done' if step.done() else 'todo'}  {step.name}")
        return 0
    build(recipe, paths, args.device, args.time_limit, args.only, command=command, threads=args.threads,
          optional=not args.no_optional)
    return 0


if __name__ == "__main__":
    sys.exit(main())
