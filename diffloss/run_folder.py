"""What a training run leaves on disk and how it is read back: the checkpoint format, the CSV log, the same-run
check, the settings a resume rebuilds, the model card, and the export of a partial model.

Why apart from the loop: the loop (``diffloss.train``) only calls ``save``/``load`` and writes log rows; everything
about files (their layout in ``diffloss.paths.RunFolder``, their format, what survives a resume) is here, and the
CLI, the two-arm pair and the app read runs through these functions without importing the loop.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffloss import checkpoint
from diffloss.loss import DiffLossConfig
from diffloss.paths import RunFolder
from diffloss.train_config import LoopConfig, PriorTrainConfig, RestorerTrainConfig, new_restorer_config


# ------------------------------------------------------------------------------------------------------ log
def logged_rows(path: Path, up_to_step: int) -> list[dict[str, str]]:
    """The rows of a run's log.csv up to ``up_to_step`` (its checkpoint's step), as written; [] without a log.

    One reader for the three that need it: a resume trims the log to its checkpoint, an export reports the recent
    loss, and the app's resumed curves go on from these rows.
    """
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [r for r in csv.DictReader(handle) if int(r["step"]) <= up_to_step]


def recent_logged_loss(log_path: Path, step: int, rows: int = 5) -> float | None:
    """Mean of the last ``rows`` logged training losses up to ``step`` (None without a log)."""
    totals = [float(r["total"]) for r in logged_rows(log_path, step)]
    return sum(totals[-rows:]) / len(totals[-rows:]) if totals else None


class CsvLog:
    """Append-only CSV of every logged term; on resume, rows past the checkpoint are dropped (no duplicates)."""

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fields: list[str] | None = None
        if path.is_file() and resume_step > 0:
            rows = logged_rows(path, resume_step)
            if rows:
                self.fields = list(rows[0].keys())
                self._rewrite(rows)
            else:
                path.unlink()
        elif path.is_file():
            path.unlink()

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)

    def write(self, row: dict[str, float]) -> None:
        if self.fields is None:
            self.fields = list(row.keys())
            with open(self.path, "w", newline="") as handle:
                csv.DictWriter(handle, fieldnames=self.fields).writeheader()
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore").writerow(row)


# ----------------------------------------------------------------------------------------------- checkpoint
def save_run_checkpoint(path: Path, model: nn.Module, ema: dict[str, torch.Tensor], opt: torch.optim.Optimizer,
                        step: int, info: dict[str, Any]) -> None:
    """Model, EMA and optimiser state in one safetensors file; scalars and config in its metadata."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.items()})
    opt_state = opt.state_dict()
    scalars: dict[str, dict[str, float]] = {}
    for idx, state in opt_state["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.dim() > 0:
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = float(value)
    meta = {"step": str(step), "info": json.dumps(info), "param_groups": json.dumps(opt_state["param_groups"]),
            "optim_scalars": json.dumps(scalars)}
    checkpoint.atomic_save_tensors(path, tensors, metadata=meta)


def read_checkpoint_meta(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata() or {}


def load_run_checkpoint(path: Path, model: nn.Module, ema: dict[str, torch.Tensor],
                        opt: torch.optim.Optimizer) -> tuple[int, dict[str, Any]]:
    """Restore what ``save_run_checkpoint`` wrote (``ema`` is filled in place); returns (step, info)."""
    tensors = checkpoint.load_tensors(path)
    meta = read_checkpoint_meta(path)
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    except RuntimeError as err:
        raise checkpoint.CheckpointError(
            f"{path} was written by a run with a different model; use a new --out or delete it ({err})"
        ) from err
    for k, v in tensors.items():
        if k.startswith("ema."):
            ema[k[4:]] = v.float()
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    for idx, scalars in json.loads(meta.get("optim_scalars", "{}")).items():
        for key, value in scalars.items():
            state.setdefault(int(idx), {})[key] = torch.tensor(value)
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    return int(meta["step"]), json.loads(meta.get("info", "{}"))


def how_to_resume(out: Path) -> str:
    return f"rerun the same command, or python -m diffloss.train resume {out}, to resume"


def _differs(saved: Any, current: Any) -> bool:
    """Settings differ, except that a field added to a config since the checkpoint was written and left at None
    (its 'off' value) is no change: an older run stays resumable after the code gains an option."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return any(_differs(saved[k], current.get(k)) if k in saved else current[k] is not None
                   for k in set(saved) | set(current))
    return saved != current


def check_same_run(path: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint written with other settings (task, arm, weights, data...).

    Only the loop settings (steps, time limit, device, threads, command) may change between resumes: extending a
    run is fine, silently continuing another experiment is not.
    """
    current = json.loads(json.dumps(current))  # tuples -> lists, as stored
    changed = sorted(k for k in set(saved) | set(current) if k != "loop" and _differs(saved.get(k), current.get(k)))
    if saved and changed:
        details = "; ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise checkpoint.CheckpointError(
            f"{path} belongs to a run with other settings ({details}). Use a new --out, or --no-resume to start over."
        )


# ---------------------------------------------------------------------------------------------- resume settings
def checkpoint_settings(run_dir: str | Path) -> tuple[int, PriorTrainConfig | RestorerTrainConfig]:
    """(step, settings) of a run's last checkpoint, the settings set to resume it in ``run_dir``.

    Why: a run started from the app has no command line to rerun, and a command retyped weeks later is easily
    mistyped; the checkpoint holds every setting, so a resume from it continues exactly that run (the same-run
    check agrees by construction). ``run_dir`` replaces the saved output folder: a moved run still resumes.
    """
    run_dir = Path(run_dir)
    ckpt = RunFolder(run_dir).checkpoint
    if not ckpt.is_file():
        raise checkpoint.CheckpointError(f"no checkpoint to resume in {run_dir} (looked for {ckpt})")
    try:
        meta = read_checkpoint_meta(ckpt)
        step, saved = int(meta["step"]), json.loads(meta.get("info", "{}")).get("config")
    except Exception as err:  # a torn file or foreign metadata: one readable reason, nothing changed
        raise checkpoint.CheckpointError(f"{ckpt} is not a readable training checkpoint ({type(err).__name__}: "
                                         f"{err})") from err
    if not isinstance(saved, dict) or not isinstance(saved.get("loop"), dict):
        raise checkpoint.CheckpointError(f"{ckpt} holds no training settings to resume from; rerun its command")
    loop = replace(_settings(LoopConfig, saved["loop"], ckpt), out=str(run_dir), resume=True)
    if "preset" in saved:
        return step, replace(_settings(PriorTrainConfig, saved, ckpt), loop=loop)
    saved_loss = saved.get("loss") or {}
    # a run saved before the prior's band existed drew t from t_min..t_max over the whole schedule: it goes on so
    saved_loss = saved_loss if "band" in saved_loss else {**saved_loss, "band": "all"}
    loss = _settings(DiffLossConfig, saved_loss, ckpt)
    return step, replace(_settings(RestorerTrainConfig, saved, ckpt), loss=loss, loop=loop)


def _settings(cls: type, values: dict[str, Any], path: Path) -> Any:
    """A config dataclass from saved values (nested configs left at their defaults for the caller to set);
    a setting this code does not know is refused: resuming without it would silently train something else."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise checkpoint.CheckpointError(f"{path} was written with settings this version does not know "
                                         f"({', '.join(unknown)}); resume it with the version that started it")
    nested = {f.name for f in fields(cls) if f.name in ("loss", "loop")}
    return cls(**{k: v for k, v in values.items() if k not in nested})


# ------------------------------------------------------------------------------------------------ card, export
def model_card(config: dict[str, Any], data: dict[str, Any], steps: int, info: dict[str, Any], final_loss: float | None,
               final_loss_note: str, **extra: Any) -> dict[str, Any]:
    """The card.json of a model a run produced (finished or exported): the command, data, steps, time, device and
    every setting, so a model file can always say how it was made. ``info`` is what a checkpoint records
    (wall_time_s, device, world_size); ``extra`` adds what only one kind of card has."""
    loop = config.get("loop", {})
    return {
        "command": loop.get("command", ""), "data": data, "steps": steps, "batch_size": loop.get("batch_size"),
        "world_size": info.get("world_size", 1), "wall_time_s": round(float(info.get("wall_time_s", 0.0)), 1),
        "device": info.get("device", "not recorded by this checkpoint"), "torch": torch.__version__,
        "final_loss": final_loss, "final_loss_note": final_loss_note, "weights": "EMA of the training weights",
        "config": config, **extra,
    }


def export_checkpoint(run_dir: str | Path, dest: str | Path | None = None) -> Path:
    """The EMA weights of a run's last checkpoint as a model folder, before the run has finished.

    Why: a prior trained on CPU across several sessions is useful long before its last step. The card says
    ``partial`` with the steps done and planned, so nobody mistakes it for the finished model.
    """
    run = RunFolder(run_dir)
    tensors = checkpoint.load_tensors(run.checkpoint)
    meta = read_checkpoint_meta(run.checkpoint)
    info = json.loads(meta.get("info", "{}"))
    config, step = info.get("config", {}), int(meta.get("step", 0))
    planned = config.get("loop", {}).get("steps")
    ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    dest = Path(dest) if dest else run.export

    def card(data: dict[str, Any]) -> dict[str, Any]:
        return model_card(config, data, step, info, recent_logged_loss(run.log, step),
                          "mean of the last 5 logged training losses up to this step", planned_steps=planned,
                          partial=step < (planned if planned is not None else step),
                          exported=time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    if "preset" in config:
        from diffloss.prior import PRIOR_PRESETS, DiffusionPrior

        prior = PRIOR_PRESETS[config["preset"]].build()
        prior.unet.load_state_dict(ema)
        data = {"clean": config.get("clean"), "crop": config.get("crop"), "preset": config["preset"],
                "parameters": prior.parameter_count()}
        DiffusionPrior(prior.unet, prior.scheduler, source=str(dest)).save_pretrained(dest)
        checkpoint.atomic_write_json(dest / checkpoint.CARD_FILE, card(data))
        return dest
    from diffloss import nets

    arch = nets.load_restorer(config["init"]).config if config.get("init") else new_restorer_config(
        config["task"], config.get("width"))
    model = nets.Restorer(arch)
    model.load_state_dict(ema)
    data = {k: config.get(k) for k in ("task", "clean", "paired", "paired_exclude", "init", "prior", "diffloss")}
    nets.save_restorer(model, dest, card=card(data))
    return dest
