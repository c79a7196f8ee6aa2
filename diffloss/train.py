"""One training loop for the prior and for restorers, as a generator of progress events.

``python -m diffloss.train prior ...`` trains the natural-image prior (DDPM epsilon objective).
``python -m diffloss.train restorer --task T --diffloss on|off ...`` trains a restorer.

Why one loop: the "with DiffLoss" and "without DiffLoss" arms differ in one config field, so a reader can see
the comparison is fair: every batch and every (t, eps) draw is derived from (seed, step, rank) alone, never from
the arm or from a random state that a resume could lose. The CLI prints the events with tqdm; the app turns the
same events into live curves and a Stop button.

Robustness: checkpoints are safetensors written atomically; a stopped or time-limited run saves and resumes
exactly where it stopped; a NaN/inf loss stops with a clear message and leaves the last good checkpoint intact.
Distributed: under ``torchrun`` or ``accelerate launch`` (both set RANK/WORLD_SIZE) the model is wrapped in DDP
(gloo on CPU, nccl on CUDA), each rank draws its own batches, and rank 0 writes files.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterator, Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from diffloss import checkpoint
from diffloss.signals import stop_on_signals
from diffloss.machine import device_description
from diffloss.loss import DiffLoss, DiffLossConfig

CHECKPOINT_NAME = "last.safetensors"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says at which step and where the last good checkpoint is."""


# ------------------------------------------------------------------------------------------------- configs
@dataclass
class LoopConfig:
    """What every run shares: length, optimiser, bookkeeping."""

    out: str = "runs/run"
    steps: int = 1000
    batch_size: int = 16
    lr: float = 2e-4
    warmup: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    log_every: int = 10
    save_every: int = 200
    time_limit_min: float | None = None  # stop (with a checkpoint) after this many minutes; rerun to resume
    device: str = "auto"
    threads: int | None = None
    resume: bool = True
    command: str = ""  # recorded in the card; the CLI fills it in


@dataclass
class PriorTrainConfig:
    clean: list[str] = field(default_factory=list)
    preset: str = "small"
    crop: int = 64
    max_side: int | None = None
    loop: LoopConfig = field(default_factory=LoopConfig)


@dataclass
class RestorerTrainConfig:
    task: str = "noise"
    clean: list[str] = field(default_factory=list)  # folders of clean photos, degraded on the fly
    paired: list[str] = field(default_factory=list)  # real lq/gt folders, mixed in with ``paired_weight``
    paired_exclude: list[str] = field(default_factory=list)  # file-name prefixes held out (validation scenes)
    paired_weight: float = 0.5
    crop: int = 96
    init: str | None = None  # restorer folder to fine-tune from (both arms start from the same weights)
    width: int | None = None  # restorer width when not fine-tuning (None: the architecture's default)
    prior: str | None = "pretrained/prior"
    diffloss: bool = True
    loss: DiffLossConfig = field(default_factory=DiffLossConfig)
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(lr=1e-3, batch_size=8, warmup=50))

    def loss_config(self) -> DiffLossConfig:
        """The arm is one field: ``diffloss=False`` zeroes gamma and changes nothing else."""
        return self.loss if self.diffloss else replace(self.loss, gamma=0.0)


@dataclass
class TrainEvent:
    """One thing the loop reports: a logged step, a saved checkpoint, a stop, or the end."""

    kind: str  # "step" | "checkpoint" | "stopped" | "done"
    step: int
    total_steps: int
    values: dict[str, float] = field(default_factory=dict)
    path: str | None = None
    message: str = ""


# --------------------------------------------------------------------------------------------- utilities
def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA GPU is available")
    return device


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from a tuple, e.g. (run seed, step, rank, "data"): reproducible, independent streams."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def learning_rate(step: int, cfg: LoopConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class EMA:
    """Exponential moving average of the weights: smoother models for export (BasicSR's ``params_ema``)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))  # short runs should not export the random init
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].mul_(decay).add_(v.detach().float(), alpha=1 - decay)
            else:
                self.shadow[k].copy_(v)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group that torchrun/accelerate describe in the environment (no-op when alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def weights_checksum(model: nn.Module) -> str:
    """A short hash of all parameters, to prove that every rank holds the same model."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().flatten().contiguous().view(torch.uint8).numpy().tobytes())  # any layout
    return h.hexdigest()[:16]


def logged_rows(path: Path, up_to_step: int) -> list[dict[str, str]]:
    """The rows of a run's log.csv up to ``up_to_step`` (its checkpoint's step), as written; [] without a log.

    One reader for the three that need it: a resume trims the log to its checkpoint, an export reports the recent
    loss, and the app's resumed curves go on from these rows.
    """
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [r for r in csv.DictReader(handle) if int(r["step"]) <= up_to_step]


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


# ------------------------------------------------------------------------------------------ checkpoints
def save_run_checkpoint(path: Path, model: nn.Module, ema: EMA, opt: torch.optim.Optimizer, step: int,
                        info: dict[str, Any]) -> None:
    """Model, EMA and optimiser state in one safetensors file; scalars and config in its metadata."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.shadow.items()})
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


def load_run_checkpoint(path: Path, model: nn.Module, ema: EMA, opt: torch.optim.Optimizer) -> tuple[int, dict[str, Any]]:
    """Restore what ``save_run_checkpoint`` wrote; returns (step, info)."""
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
            ema.shadow[k[4:]] = v.float()
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


# ------------------------------------------------------------------------------------------------- jobs
class StepLoss(Protocol):
    total: torch.Tensor

    def backward(self) -> None: ...

    def as_floats(self) -> dict[str, float]: ...


@dataclass
class PlainLoss:
    """A single-term loss with the same interface as ``LossTerms``."""

    total: torch.Tensor

    def backward(self) -> None:
        self.total.backward()

    def as_floats(self) -> dict[str, float]:
        return {"total": float(self.total.detach())}


class Job(Protocol):
    """What differs between training a prior and a restorer: the model, one step's loss, the export."""

    model: nn.Module
    data_summary: dict[str, Any]

    def compute(self, model: nn.Module, seed: int, measure: bool) -> StepLoss: ...

    def export(self, model: nn.Module, folder: Path, card: dict[str, Any]) -> None: ...


class PriorJob:
    """DDPM training: predict the noise added to clean crops at a uniformly drawn timestep."""

    def __init__(self, cfg: PriorTrainConfig, device: torch.device) -> None:
        from diffloss.data import CleanCropSampler, load_clean_images
        from diffloss.prior import PRIOR_PRESETS

        if cfg.preset not in PRIOR_PRESETS:
            raise ValueError(f"unknown prior preset {cfg.preset!r}; choose one of {sorted(PRIOR_PRESETS)}")
        if not cfg.clean:
            raise ValueError("give at least one --clean folder of photos to learn from")
        images = [img for folder in cfg.clean for img in load_clean_images(folder, max_side=cfg.max_side)]
        self.sampler = CleanCropSampler(images, cfg.crop)
        self.arch = PRIOR_PRESETS[cfg.preset]
        torch.manual_seed(derive_seed(cfg.loop.seed, "init"))
        prior = self.arch.build()
        self.scheduler = prior.scheduler
        self.model = prior.unet.train().requires_grad_(True).to(device)
        self.alphas = prior.alphas_cumprod.to(device)
        self.cfg = cfg
        self.data_summary = {"clean": cfg.clean, "images": len(images), "crop": cfg.crop, "preset": cfg.preset,
                             "parameters": sum(p.numel() for p in self.model.parameters())}

    def compute(self, model: nn.Module, seed: int, measure: bool) -> StepLoss:
        from diffloss import schedule

        g = torch.Generator().manual_seed(seed)
        device = self.alphas.device
        x0 = schedule.to_model_range(self.sampler.batch(self.cfg.loop.batch_size, seed)).to(device)
        t = torch.randint(0, len(self.alphas), (x0.shape[0],), generator=g).to(device)
        eps = torch.randn(x0.shape, generator=g).to(device)
        pred = model(schedule.add_noise(x0, eps, t, self.alphas), t).sample
        return PlainLoss(F.mse_loss(pred.float(), eps))

    def export(self, model: nn.Module, folder: Path, card: dict[str, Any]) -> None:
        from diffloss.prior import DiffusionPrior

        unet = self.arch.build().unet
        unet.load_state_dict(model.state_dict())
        DiffusionPrior(unet, self.scheduler, source=str(folder)).save_pretrained(folder)
        checkpoint.atomic_write_json(folder / checkpoint.CARD_FILE, card)


class RestorerJob:
    """Restorer on (degraded, clean) batches with fidelity (+ DiffLoss for the DiffLoss arm)."""

    def __init__(self, cfg: RestorerTrainConfig, device: torch.device) -> None:
        from diffloss import degrade, nets

        degrade.get_task(cfg.task)  # an unknown task fails here, before any data is loaded
        self.sampler, summary = _restorer_sampler(cfg)
        if cfg.init:
            model = nets.load_restorer(cfg.init, device=device)
            if model.config.task != cfg.task:
                raise ValueError(f"--init {cfg.init} is a {model.config.task!r} restorer, not {cfg.task!r}")
        else:
            torch.manual_seed(derive_seed(cfg.loop.seed, "init"))  # both arms start from the same weights
            model = nets.Restorer(new_restorer_config(cfg.task, cfg.width))
        self.model = model.train().to(device)
        loss_cfg = cfg.loss_config()
        self.prior = None
        if cfg.prior and (loss_cfg.gamma > 0 or loss_cfg.track_when_off):
            from diffloss.prior import DiffusionPrior

            self.prior = DiffusionPrior.from_pretrained(cfg.prior, device=device)
        elif loss_cfg.gamma > 0:
            raise ValueError("the DiffLoss arm needs a --prior folder")
        self.loss = DiffLoss(self.prior, loss_cfg) if self.prior else None
        self.cfg = cfg
        self.device = device
        self.data_summary = {**summary, "task": cfg.task, "init": cfg.init, "prior": cfg.prior,
                             "diffloss": cfg.diffloss, "loss": asdict(loss_cfg),
                             "parameters": sum(p.numel() for p in self.model.parameters())}

    def compute(self, model: nn.Module, seed: int, measure: bool) -> StepLoss:
        from diffloss.loss import fidelity_loss

        batch = self.sampler.batch(self.cfg.loop.batch_size, seed)
        restored = model(batch.net_input.to(self.device))
        gt = batch.gt.to(self.device)
        if self.loss is None:
            return PlainLoss(fidelity_loss(restored.float(), gt, self.cfg.loss.fidelity))
        g = torch.Generator().manual_seed(derive_seed(seed, "loss"))
        return self.loss(restored.float(), gt, generator=g, measure_grad_share=measure)

    def export(self, model: nn.Module, folder: Path, card: dict[str, Any]) -> None:
        from diffloss import nets

        nets.save_restorer(model, folder, card=card)


def new_restorer_config(task: str, width: int | None = None):
    """The architecture of a restorer trained from scratch for ``task`` (None width: the default)."""
    from diffloss import degrade, nets

    extra = {"width": width} if width else {}
    return nets.RestorerConfig(task=task, in_channels=degrade.get_task(task).in_channels, **extra)


def _restorer_sampler(cfg: RestorerTrainConfig) -> tuple[Any, dict[str, Any]]:
    """Synthetic pairs from clean folders, real pairs from paired folders, or a mix of both."""
    from diffloss import data

    samplers, weights, summary = [], [], {}
    if cfg.clean:
        images = [img for folder in cfg.clean for img in data.load_clean_images(folder)]
        samplers.append(data.SyntheticPairSampler(images, cfg.task, cfg.crop))
        weights.append(1.0 - cfg.paired_weight if cfg.paired else 1.0)
        summary.update(clean=cfg.clean, clean_images=len(images))
    if cfg.paired:
        for root in cfg.paired:
            names = [p.name for p in data.list_images(Path(root) / "lq")
                     if not any(p.name.startswith(prefix) for prefix in cfg.paired_exclude)]
            dataset = data.PairedFolder(root, names=names)
            samplers.append(data.PairedCropSampler(dataset, cfg.task, cfg.crop))
            weights.append((cfg.paired_weight if cfg.clean else 1.0) / len(cfg.paired))
            summary.setdefault("paired", []).append({"root": root, "pairs": len(dataset), "excluded": cfg.paired_exclude})
    if not samplers:
        raise ValueError("give --clean folders (synthetic pairs) and/or --paired folders (real pairs)")
    sampler = samplers[0] if len(samplers) == 1 else data.MixedSampler(samplers, weights)
    return sampler, summary


# ------------------------------------------------------------------------------------------------- loop
def run_loop(job: Job, loop: LoopConfig, device: torch.device, run_config: dict[str, Any]) -> Iterator[TrainEvent]:
    """The training loop, shared by every job. Yields events; closing the generator saves and stops cleanly."""
    distinfo = init_distributed(device)
    out = Path(loop.out)
    ckpt_path = out / "checkpoint" / CHECKPOINT_NAME
    model = job.model
    ema = EMA(model, loop.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=loop.lr, betas=(0.9, 0.99), weight_decay=loop.weight_decay)
    step, elapsed_before = 0, 0.0
    if loop.resume and ckpt_path.is_file():
        step, info = load_run_checkpoint(ckpt_path, model, ema, opt)
        _check_same_run(ckpt_path, info.get("config", {}), run_config)
        elapsed_before = float(info.get("wall_time_s", 0.0))
    train_model: nn.Module = model
    if distinfo.world_size > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    log = CsvLog(out / "log.csv", step) if distinfo.is_main else None
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext())
    started, last_values, recent = time.time(), {}, []
    deadline = started + loop.time_limit_min * 60 if loop.time_limit_min is not None else None
    start_step = step

    def wall() -> float:
        return elapsed_before + time.time() - started

    def save() -> str:
        if distinfo.is_main:
            info = {"wall_time_s": wall(), "config": run_config, "device": device_description(device),
                    "world_size": distinfo.world_size}
            save_run_checkpoint(ckpt_path, model, ema, opt, step, info)
        return str(ckpt_path)

    try:
        while step < loop.steps:
            if deadline is not None and time.time() >= deadline:
                yield TrainEvent("stopped", step, loop.steps, last_values, save(),
                                 f"time limit of {loop.time_limit_min} min reached; {_how_to_resume(out)}")
                return
            lr = learning_rate(step, loop)
            for group in opt.param_groups:
                group["lr"] = lr
            measure = (step + 1) % loop.log_every == 0 or step + 1 == loop.steps
            tick = time.time()
            with autocast:
                loss = job.compute(train_model, derive_seed(loop.seed, step, distinfo.rank, "data"), measure)
            value = float(loss.total.detach())
            if not math.isfinite(value):
                have = f"the last good checkpoint is {ckpt_path}" if ckpt_path.is_file() else "no checkpoint was written yet"
                raise TrainingDiverged(
                    f"loss became {value} at step {step} ({loss.as_floats()}); {have}. "
                    "Lower the learning rate or the DiffLoss weights, or check the data for NaNs."
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if loop.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), loop.grad_clip)
            opt.step()
            step += 1
            ema.update(model, step)
            recent = (recent + [value])[-50:]
            if measure:
                last_values = {"lr": lr, **loss.as_floats(),
                               "images_per_s": loop.batch_size * distinfo.world_size / max(1e-9, time.time() - tick)}
                if log is not None:
                    log.write({"step": step, "wall_s": round(wall(), 2), **last_values})
                yield TrainEvent("step", step, loop.steps, last_values)
            if step % loop.save_every == 0 and step < loop.steps:
                yield TrainEvent("checkpoint", step, loop.steps, last_values, save())
    except GeneratorExit:
        if step > start_step:
            save()
        raise
    except KeyboardInterrupt:
        path = save() if step > start_step else None
        yield TrainEvent("stopped", step, loop.steps, last_values, path, f"interrupted; {_how_to_resume(out)}")
        return

    save()
    checksums = [weights_checksum(model)]
    if distinfo.world_size > 1:
        checksums = [None] * distinfo.world_size
        dist.all_gather_object(checksums, weights_checksum(model))
    final = Path(out) / "model"
    if distinfo.is_main:
        ema_model = _ema_copy(model, ema)
        card = {
            "command": loop.command, "data": job.data_summary, "steps": step,
            "batch_size": loop.batch_size, "world_size": distinfo.world_size,
            "wall_time_s": round(wall(), 1), "device": device_description(device),
            "torch": torch.__version__, "final_loss": sum(recent) / max(1, len(recent)),
            "final_loss_note": "mean training loss over the last (up to) 50 steps",
            "last_logged": last_values, "rank_weight_checksums": checksums,
            "weights": "EMA of the training weights", "config": run_config,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        job.export(ema_model, final, card)
    yield TrainEvent("done", step, loop.steps, last_values, str(final))


def _how_to_resume(out: Path) -> str:
    return f"rerun the same command, or python -m diffloss.train resume {out}, to resume"


def _differs(saved: Any, current: Any) -> bool:
    """Settings differ, except that a field added to a config since the checkpoint was written and left at None
    (its 'off' value) is no change: an older run stays resumable after the code gains an option."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return any(_differs(saved[k], current.get(k)) if k in saved else current[k] is not None
                   for k in set(saved) | set(current))
    return saved != current


def _check_same_run(path: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
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


def export_checkpoint(run_dir: str | Path, dest: str | Path | None = None) -> Path:
    """The EMA weights of a run's last checkpoint as a model folder, before the run has finished.

    Why: a prior trained on CPU across several sessions is useful long before its last step. The card says
    ``partial`` with the steps done and planned, so nobody mistakes it for the finished model.
    """
    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoint" / CHECKPOINT_NAME
    tensors = checkpoint.load_tensors(ckpt)
    meta = read_checkpoint_meta(ckpt)
    info = json.loads(meta.get("info", "{}"))
    config, step = info.get("config", {}), int(meta.get("step", 0))
    ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    dest = Path(dest) if dest else run_dir / "export"
    card = {
        "command": config.get("loop", {}).get("command", ""), "steps": step,
        "planned_steps": config.get("loop", {}).get("steps"), "partial": step < config.get("loop", {}).get("steps", step),
        "batch_size": config.get("loop", {}).get("batch_size"), "world_size": info.get("world_size", 1),
        "wall_time_s": round(float(info.get("wall_time_s", 0.0)), 1),
        "device": info.get("device", "not recorded by this checkpoint"), "torch": torch.__version__,
        "final_loss": _recent_logged_loss(run_dir / "log.csv", step),
        "final_loss_note": "mean of the last 5 logged training losses up to this step",
        "weights": "EMA of the training weights", "config": config,
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if "preset" in config:
        from diffloss.prior import PRIOR_PRESETS, DiffusionPrior

        prior = PRIOR_PRESETS[config["preset"]].build()
        prior.unet.load_state_dict(ema)
        card["data"] = {"clean": config.get("clean"), "crop": config.get("crop"), "preset": config["preset"],
                        "parameters": prior.parameter_count()}
        DiffusionPrior(prior.unet, prior.scheduler, source=str(dest)).save_pretrained(dest)
        checkpoint.atomic_write_json(dest / checkpoint.CARD_FILE, card)
        return dest
    from diffloss import nets

    if config.get("init"):
        arch = nets.load_restorer(config["init"]).config
    else:
        arch = new_restorer_config(config["task"], config.get("width"))
    model = nets.Restorer(arch)
    model.load_state_dict(ema)
    card["data"] = {k: config.get(k) for k in ("task", "clean", "paired", "paired_exclude", "init", "prior", "diffloss")}
    nets.save_restorer(model, dest, card=card)
    return dest


def checkpoint_settings(run_dir: str | Path) -> tuple[int, PriorTrainConfig | RestorerTrainConfig]:
    """(step, settings) of a run's last checkpoint, the settings set to resume it in ``run_dir``.

    Why: a run started from the app has no command line to rerun, and a command retyped weeks later is easily
    mistyped; the checkpoint holds every setting, so a resume from it continues exactly that run (the same-run
    check agrees by construction). ``run_dir`` replaces the saved output folder: a moved run still resumes.
    """
    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoint" / CHECKPOINT_NAME
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
    loss = _settings(DiffLossConfig, saved.get("loss") or {}, ckpt)
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


def _recent_logged_loss(log_path: Path, step: int, rows: int = 5) -> float | None:
    totals = [float(r["total"]) for r in logged_rows(log_path, step)]
    return sum(totals[-rows:]) / len(totals[-rows:]) if totals else None


def _ema_copy(model: nn.Module, ema: EMA) -> nn.Module:
    import copy

    clone = copy.deepcopy(model).cpu().eval()
    clone.load_state_dict({k: v.to(clone.state_dict()[k].dtype) for k, v in ema.shadow.items()})
    return clone


def train_prior(cfg: PriorTrainConfig) -> Iterator[TrainEvent]:
    device = _setup(cfg.loop)
    return run_loop(PriorJob(cfg, device), cfg.loop, device, asdict(cfg))


def train_restorer(cfg: RestorerTrainConfig) -> Iterator[TrainEvent]:
    device = _setup(cfg.loop)
    return run_loop(RestorerJob(cfg, device), cfg.loop, device, asdict(cfg))


def _setup(loop: LoopConfig) -> torch.device:
    if loop.threads:
        torch.set_num_threads(loop.threads)
    device = pick_device(loop.device)
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    return device


# -------------------------------------------------------------------------------------------------- CLI
def _add_loop_args(p: argparse.ArgumentParser, defaults: LoopConfig) -> None:
    p.add_argument("--out", required=True, help="run folder: checkpoint/, log.csv, and model/ at the end")
    p.add_argument("--steps", type=int, default=defaults.steps)
    p.add_argument("--batch", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--warmup", type=int, default=defaults.warmup)
    p.add_argument("--ema", type=float, default=defaults.ema_decay)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--log-every", type=int, default=defaults.log_every)
    p.add_argument("--save-every", type=int, default=defaults.save_every)
    p.add_argument("--time-limit", type=float, default=None, help="minutes; saves and stops, rerun to resume")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")


def _loop_config(args: argparse.Namespace) -> LoopConfig:
    return LoopConfig(
        out=args.out, steps=args.steps, batch_size=args.batch, lr=args.lr, warmup=args.warmup, ema_decay=args.ema,
        seed=args.seed, log_every=args.log_every, save_every=args.save_every, time_limit_min=args.time_limit,
        device=args.device, threads=args.threads, resume=not args.no_resume,
        command="python -m diffloss.train " + " ".join(sys.argv[1:]),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m diffloss.train", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)

    p = sub.add_parser("prior", help="train the natural-image diffusion prior (DDPM)")
    p.add_argument("--clean", nargs="+", required=True, help="folders of clean photos")
    p.add_argument("--preset", default="small", help="prior size: base, small or tiny")
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--max-side", type=int, default=None, help="downscale photos so the longer side is at most this")
    _add_loop_args(p, LoopConfig())

    e = sub.add_parser("export", help="export a run's last checkpoint (EMA) as a model folder, marked partial")
    e.add_argument("run", help="the run folder (the --out of the training command)")
    e.add_argument("--to", default=None, help="destination folder (default: RUN/export)")

    c = sub.add_parser("resume", help="resume a stopped run with the settings its checkpoint holds (any run, "
                       "including one started from the app's Train tab)")
    c.add_argument("run", help="the run folder (the --out of the training command; for an app run, one arm: "
                   "runs/NAME/l2 or runs/NAME/diffloss)")
    c.add_argument("--steps", type=int, default=None, help="train to this step instead (extend or shorten the run)")
    c.add_argument("--time-limit", type=float, default=None, help="minutes; saves and stops, rerun to resume")
    c.add_argument("--device", default=None, help="auto, cpu or cuda (default: as the run was started)")
    c.add_argument("--threads", type=int, default=None, help="CPU threads for torch")

    r = sub.add_parser("restorer", help="train a restorer, with or without DiffLoss")
    r.add_argument("--task", required=True)
    r.add_argument("--diffloss", choices=["on", "off"], required=True)
    r.add_argument("--clean", nargs="*", default=[], help="clean photo folders for synthetic pairs")
    r.add_argument("--paired", nargs="*", default=[], help="real paired folders (lq/, gt/)")
    r.add_argument("--paired-exclude", nargs="*", default=[], help="file-name prefixes to hold out")
    r.add_argument("--paired-weight", type=float, default=0.5)
    r.add_argument("--crop", type=int, default=96)
    r.add_argument("--init", default=None, help="restorer folder to fine-tune from")
    r.add_argument("--width", type=int, default=None)
    r.add_argument("--prior", default="pretrained/prior", help="diffusers UNet2DModel folder or hub id")
    d = DiffLossConfig()
    r.add_argument("--gamma", type=float, default=d.gamma)
    r.add_argument("--lam", type=float, default=d.lam, help="lambda: weight of L_sem inside the prior term")
    r.add_argument("--released-weights", action="store_true", help="use the released code's weights (1e-3, 1e-6)")
    r.add_argument("--t-min", type=int, default=d.t_min)
    r.add_argument("--t-max", type=int, default=None)
    r.add_argument("--fidelity", choices=["mse", "l1", "charbonnier"], default=d.fidelity)
    r.add_argument("--detach-prior", action="store_true", help="reproduce the released code's no_grad bug")
    r.add_argument("--no-track", action="store_true", help="off arm: do not compute L_nat/L_sem for the log")
    r.add_argument("--prior-crop", type=int, default=None,
                   help="compute the prior terms on one random square sub-crop of this side (cheaper steps)")
    r.add_argument("--prior-samples", type=int, default=None,
                   help="compute the prior terms on a random subset of this many batch items (cheaper steps)")
    _add_loop_args(r, RestorerTrainConfig().loop)
    return parser


def config_from_args(args: argparse.Namespace) -> PriorTrainConfig | RestorerTrainConfig:
    if args.what == "resume":
        _, cfg = checkpoint_settings(args.run)
        changes = {"steps": args.steps, "time_limit_min": args.time_limit, "device": args.device,
                   "threads": args.threads}  # the loop settings a resume may change
        loop = replace(cfg.loop, **{k: v for k, v in changes.items() if v is not None})
        resumed = f"resumed with: python -m diffloss.train resume {args.run}"  # the card tells the whole story
        return replace(cfg, loop=replace(loop, command="; ".join(filter(None, [loop.command, resumed]))))
    loop = _loop_config(args)
    if args.what == "prior":
        return PriorTrainConfig(clean=args.clean, preset=args.preset, crop=args.crop, max_side=args.max_side, loop=loop)
    base = DiffLossConfig.released() if args.released_weights else DiffLossConfig(gamma=args.gamma, lam=args.lam)
    loss = replace(base, t_min=args.t_min, t_max=args.t_max, fidelity=args.fidelity, detach_prior=args.detach_prior,
                   track_when_off=not args.no_track, prior_crop=args.prior_crop,
                   prior_samples=args.prior_samples)
    return RestorerTrainConfig(
        task=args.task, clean=args.clean, paired=args.paired, paired_exclude=args.paired_exclude,
        paired_weight=args.paired_weight, crop=args.crop, init=args.init, width=args.width, prior=args.prior,
        diffloss=args.diffloss == "on", loss=loss, loop=loop,
    )


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    args = build_parser().parse_args(argv)
    stop_on_signals()  # SIGTERM (kill, a scheduler, a Space restart) and SIGINT: checkpoint, then exit
    if args.what == "export":
        print(f"exported to {export_checkpoint(args.run, args.to)}")
        return 0
    try:
        cfg = config_from_args(args)
    except checkpoint.CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    events = train_prior(cfg) if isinstance(cfg, PriorTrainConfig) else train_restorer(cfg)
    is_main = int(os.environ.get("RANK", "0")) == 0
    bar = tqdm(total=cfg.loop.steps, disable=not is_main, dynamic_ncols=True)
    step = 0
    try:
        for event in events:
            step = event.step
            bar.n = event.step
            if event.kind == "step":
                bar.set_postfix({k: f"{v:.4g}" for k, v in event.values.items() if k != "lr"}, refresh=False)
            bar.refresh()
            if event.kind in ("stopped", "done") and is_main:
                bar.write(f"{event.kind} at step {event.step}: {event.message or event.path}")
    except KeyboardInterrupt:
        # The signal landed here, between two steps (e.g. while the bar was drawn), not inside the loop: closing
        # the generator makes it save its checkpoint just the same.
        events.close()
        if is_main:
            bar.write(f"stopped at step {step}: interrupted; {_how_to_resume(Path(cfg.loop.out))}")
    except TrainingDiverged as err:
        bar.close()
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        bar.close()
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
