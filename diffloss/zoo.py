"""What ``pretrained/`` holds, how to load it by task and arm, and the one command that rebuilds it.

    python -m diffloss.zoo build --quick        # 2 CPU cores, under 2 hours
    python -m diffloss.zoo build                # the full recipe (meant for a CUDA GPU)
    python -m diffloss.zoo report               # pretrained/REPORT.md + report.json

The build is a list of steps, each a training run of ``diffloss.train`` in ``runs/zoo/<recipe>/``:
the prior; then per task an L2 base, a calibration of gamma/lambda on ``clean/val`` (the weights that give
L_nat and L_sem the recipe's share of the gradient), and two arms fine-tuned from the same base for the same
steps with the same seed: ``l2`` (fidelity only) and ``diffloss`` (fidelity + DiffLoss). A step whose model
exists is skipped and a step that was interrupted resumes from its checkpoint, so rerunning the command after any
stop continues where it stopped. Finished models are installed into ``pretrained/`` (restorers in fp16) with
cards that say the command, data, steps, time and device.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from diffloss import checkpoint, train
from diffloss.loss import DiffLossConfig
from diffloss.paths import ARMS, REPO, TASK_ORDER
SOTS_VAL_SCENES = ("1430", "1431", "1432", "1433", "1434")


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
    arm_crop: int | None = None  # both arms' crop (None: same as the base); smaller makes DiffLoss cheap on CPU
    batch_size: int = 8
    base_steps: int = 600
    arm_steps: int = 300
    base_lr: float = 1e-3
    arm_lr: float = 3e-4
    nat_share: float = 0.2  # calibration target: L_nat's share of the gradient on the restored image
    sem_share: float = 0.1
    calibration_images: int = 8


@dataclass(frozen=True)
class Recipe:
    name: str
    prior: PriorRecipe
    restorer: RestorerRecipe
    tasks: tuple[str, ...] = TASK_ORDER
    seed: int = 0


RECIPES: dict[str, Recipe] = {
    # A DiffLoss step with the small prior took 3.4 s at batch 8, 96 px on one CPU thread (L2: 0.42 s), so the
    # quick arms train on 64 px crops (~0.44x the prior's work); the base still sees 96 px.
    "quick": Recipe("quick", PriorRecipe(), RestorerRecipe(arm_crop=64)),
    "full": Recipe(
        "full",
        PriorRecipe(preset="base", batch_size=128, steps=20000, lr=2e-4),
        RestorerRecipe(crop=128, batch_size=32, base_steps=20000, arm_steps=5000, base_lr=1e-3, arm_lr=2e-4,
                       calibration_images=16),
    ),
}


@dataclass(frozen=True)
class ZooPaths:
    """Where data is read, runs are written and finished models are installed (all options, never hard-coded)."""

    datasets: Path = REPO.parent / "shared" / "datasets"
    runs: Path = REPO / "runs" / "zoo"
    pretrained: Path = REPO / "pretrained"

    @property
    def clean_train(self) -> Path:
        return self.datasets / "clean" / "train"

    @property
    def clean_val(self) -> Path:
        return self.datasets / "clean" / "val"

    @property
    def sots(self) -> Path:
        return self.datasets / "haze" / "sots_indoor"

    def prior_dir(self) -> Path:
        return self.pretrained / "prior"

    def restorer_dir(self, task: str, arm: str) -> Path:
        return self.pretrained / "restorers" / task / arm


# ---------------------------------------------------------------------------------------------- loading
def shipped_restorers(pretrained: Path = ZooPaths().pretrained) -> dict[str, dict[str, Path]]:
    """task -> arm -> folder, for every restorer folder in ``pretrained/restorers`` that has weights."""
    found: dict[str, dict[str, Path]] = {}
    root = Path(pretrained) / "restorers"
    for task in TASK_ORDER:
        for arm in ARMS:
            folder = root / task / arm
            if (folder / checkpoint.MODEL_FILE).is_file():
                found.setdefault(task, {})[arm] = folder
    return found


# ---------------------------------------------------------------------------------------------- building
@dataclass
class Step:
    """One unit of the build: a name for the log, whether it is done, and how to do it."""

    name: str
    done: Callable[[], bool]
    run: Callable[[], None]


def _drain(events: Iterator[train.TrainEvent], log: Callable[[str], None], name: str) -> train.TrainEvent:
    last = None
    for event in events:
        last = event
        if event.kind in ("checkpoint", "stopped", "done"):
            log(f"[{name}] {event.kind} at step {event.step}/{event.total_steps} {event.message}".rstrip())
    if last is None or last.kind != "done":
        raise RuntimeError(f"[{name}] stopped before the end; rerun the build to resume")
    return last


def _loop(out: Path, steps: int, batch: int, lr: float, seed: int, device: str, command: str,
          time_limit: float | None) -> train.LoopConfig:
    return train.LoopConfig(out=str(out), steps=steps, batch_size=batch, lr=lr, warmup=min(200, steps // 10 + 1),
                            seed=seed, log_every=25, save_every=max(50, steps // 10), device=device,
                            command=command, time_limit_min=time_limit)


def _task_data(task: str, paths: ZooPaths) -> dict:
    """Haze mixes the real SOTS pairs (validation scenes held out) with synthetic haze; the rest is synthetic."""
    data = {"clean": [str(paths.clean_train)]}
    if task == "haze" and paths.sots.is_dir():
        data.update(paired=[str(paths.sots)], paired_exclude=list(SOTS_VAL_SCENES))
    return data


def plan(recipe: Recipe, paths: ZooPaths, device: str = "auto", time_limit: float | None = None,
         log: Callable[[str], None] = print, command: str | None = None) -> list[Step]:
    """The build as an ordered list of steps; ``build`` runs the ones not done yet.

    ``command`` is what the cards record (the CLI passes its own argv, options included).
    """
    work = paths.runs / recipe.name
    command = command or f"python -m diffloss.zoo build{' --quick' if recipe.name == 'quick' else ''}"
    pr, rr = recipe.prior, recipe.restorer
    steps: list[Step] = []

    def train_prior() -> None:
        cfg = train.PriorTrainConfig(clean=[str(paths.clean_train)], preset=pr.preset, crop=pr.crop,
                                     loop=_loop(work / "prior", pr.steps, pr.batch_size, pr.lr, recipe.seed, device,
                                                command, time_limit))
        _drain(train.train_prior(cfg), log, "prior")
        install_prior(work / "prior" / "model", paths, log)

    steps.append(Step("prior", lambda: (paths.prior_dir() / "config.json").is_file(), train_prior))

    for task in recipe.tasks:
        base = work / task / "base"

        def train_base(task: str = task, base: Path = base) -> None:
            cfg = train.RestorerTrainConfig(task=task, crop=rr.crop, prior=None, diffloss=False,
                                            loss=DiffLossConfig.off(track_when_off=False),
                                            loop=_loop(base, rr.base_steps, rr.batch_size, rr.base_lr, recipe.seed,
                                                       device, command, time_limit), **_task_data(task, paths))
            _drain(train.train_restorer(cfg), log, f"{task}/base")

        steps.append(Step(f"{task}/base", lambda base=base: (base / "model" / checkpoint.MODEL_FILE).is_file(), train_base))

        def calibrate_task(task: str = task, base: Path = base) -> None:
            calibration = run_calibration(task, base / "model", paths, rr)
            checkpoint.atomic_write_json(base.parent / "calibration.json", calibration)
            log(f"[{task}/calibrate] gamma={calibration['gamma']:.4g} lambda={calibration['lam']:.4g}")

        steps.append(Step(f"{task}/calibrate", lambda base=base: (base.parent / "calibration.json").is_file(), calibrate_task))

        for arm in ARMS:
            def train_arm(task: str = task, arm: str = arm, base: Path = base) -> None:
                calibration = json.loads((base.parent / "calibration.json").read_text())
                # The L2 arm skips logging L_nat/L_sem (saves prior passes on CPU); its loss is fidelity either way.
                loss = DiffLossConfig(gamma=calibration["gamma"], lam=calibration["lam"], track_when_off=False)
                cfg = train.RestorerTrainConfig(
                    task=task, crop=rr.arm_crop or rr.crop, init=str(base / "model"), prior=str(paths.prior_dir()),
                    diffloss=arm == "diffloss", loss=loss,
                    loop=_loop(base.parent / arm, rr.arm_steps, rr.batch_size, rr.arm_lr, recipe.seed + 1, device,
                               command, time_limit), **_task_data(task, paths))
                _drain(train.train_restorer(cfg), log, f"{task}/{arm}")
                install_restorer(base.parent / arm / "model", paths.restorer_dir(task, arm), calibration, recipe, log,
                                 base=base / "model", command=command)

            steps.append(Step(f"{task}/{arm}",
                              lambda task=task, arm=arm: (paths.restorer_dir(task, arm) / checkpoint.MODEL_FILE).is_file(),
                              train_arm))
    return steps


def build(recipe: Recipe, paths: ZooPaths, device: str = "auto", time_limit: float | None = None,
          only: list[str] | None = None, log: Callable[[str], None] = print, command: str | None = None) -> None:
    """Run every step that is not done yet (``only``: step names or task names to restrict to)."""
    for step in plan(recipe, paths, device, time_limit, log, command):
        if only and step.name not in only and step.name.split("/")[0] not in only:
            continue
        if step.done():
            log(f"[{step.name}] already built, skipped")
            continue
        log(f"[{step.name}] building")
        step.run()


def run_calibration(task: str, base_model: Path, paths: ZooPaths, rr: RestorerRecipe) -> dict:
    """gamma/lambda for the recipe's gradient shares, measured on clean/val restored by the L2 base."""
    from diffloss.calibrate import calibrate
    from diffloss.images import list_images, load_image
    from diffloss.nets import load_restorer
    from diffloss.prior import DiffusionPrior

    prior = DiffusionPrior.from_pretrained(paths.prior_dir())
    images = [load_image(p) for p in list_images(paths.clean_val)[: rr.calibration_images]]
    result = calibrate(prior, load_restorer(base_model), task, images, rr.nat_share, rr.sem_share,
                       crop=rr.arm_crop or rr.crop)  # measured at the crop the arms train on
    return {**asdict(result), "data": str(paths.clean_val), "restorer": str(base_model),
            "note": "weights solved so that L_nat and L_sem carry the target shares of the gradient on validation "
                    "images restored by the L2 base (diffloss.calibrate)"}


def install_prior(model_dir: Path, paths: ZooPaths, log: Callable[[str], None] = print) -> None:
    """Copy the trained prior into pretrained/prior, add the validation numbers and samples.png to its card."""
    from diffloss import prior_check
    from diffloss.data import load_clean_images
    from diffloss.prior import DiffusionPrior
    from PIL import Image

    dest = paths.prior_dir()
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model_dir, tmp)
    prior = DiffusionPrior.from_pretrained(tmp)
    crops = prior_check.validation_crops(load_clean_images(paths.clean_val), crop=64, per_image=2)
    errors = prior_check.noise_prediction_error(prior, crops)
    Image.fromarray(prior_check.sample_sheet(prior, crops[:4])).save(tmp / "samples.png")
    card = json.loads((tmp / checkpoint.CARD_FILE).read_text())
    card["validation"] = {"data": str(paths.clean_val), "crops": len(crops), "crop": 64,
                          "eps_mse": {str(k): v for k, v in errors.items()},
                          "note": "mean squared error of the predicted noise; 1.0 = predicting zero"}
    checkpoint.atomic_write_json(tmp / checkpoint.CARD_FILE, card)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    log(f"[prior] installed in {dest}: eps MSE {errors}")


def install_restorer(model_dir: Path, dest: Path, calibration: dict, recipe: Recipe,
                     log: Callable[[str], None] = print, base: Path | None = None, command: str | None = None) -> None:
    """Store a finished arm in fp16 (halves the size; the report measures it as shipped).

    The card gains the recipe, the calibration and a summary of the L2 base it was fine-tuned from, so it says
    the whole history of the weights: base steps and time, then the arm's own.
    """
    from diffloss.nets import load_restorer, save_restorer

    card = json.loads((model_dir / checkpoint.CARD_FILE).read_text())
    card.update(recipe=recipe.name, calibration=calibration, storage="float16")
    if command:
        card["command"] = command
    base_card_path = (base or Path()) / checkpoint.CARD_FILE
    if base is not None and base_card_path.is_file():
        b = json.loads(base_card_path.read_text())
        card["base"] = {"steps": b.get("steps"), "wall_time_s": b.get("wall_time_s"), "device": b.get("device"),
                        "batch_size": b.get("batch_size"), "crop": b.get("config", {}).get("crop"),
                        "lr": b.get("config", {}).get("loop", {}).get("lr"), "final_loss": b.get("final_loss"),
                        "loss": "fidelity only (mse)"}
    save_restorer(load_restorer(model_dir), dest, card=card, dtype=torch.float16)
    log(f"[install] {dest}")


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
    for q in (b, sub.add_parser("report", help="write pretrained/REPORT.md and report.json")):
        q.add_argument("--datasets", default=str(ZooPaths().datasets))
        q.add_argument("--runs", default=str(ZooPaths().runs))
        q.add_argument("--pretrained", default=str(ZooPaths().pretrained))
    args = p.parse_args(argv)
    paths = ZooPaths(Path(args.datasets), Path(args.runs), Path(args.pretrained))
    if args.cmd == "report":
        from diffloss.zoo_report import write_report

        write_report(paths)
        return 0
    recipe = RECIPES["quick" if args.quick else "full"]
    command = "python -m diffloss.zoo " + " ".join(sys.argv[1:] if argv is None else argv)
    if not paths.clean_train.is_dir():
        p.error(f"clean training photos not found at {paths.clean_train} (use --datasets)")
    if args.plan:
        for step in plan(recipe, paths, args.device, command=command):
            print(f"{'done' if step.done() else 'todo'}  {step.name}")
        return 0
    build(recipe, paths, args.device, args.time_limit, args.only, command=command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
