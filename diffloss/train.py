"""One training loop for the prior and for restorers, as a generator of progress events, and its one step.

``python -m diffloss.train prior|restorer|pair|resume|export ...`` is the command line (``diffloss.train_cli``);
this module is what it runs. Read it top to bottom: the events, the utilities, the two jobs (what differs between
training a prior and a restorer), ``train_step`` (one optimisation step, also what ``bench`` times) and
``run_loop`` (steps, logs, checkpoints, stops). Files on disk are ``diffloss.run_folder``'s business.

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

import contextlib
import copy
import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from diffloss.checkpoint import CARD_FILE, atomic_write_json
from diffloss.loss import DiffLoss
from diffloss.machine import device_description
from diffloss.paths import RunFolder
from diffloss.run_folder import CsvLog, check_same_run, how_to_resume, load_run_checkpoint, model_card, \
    save_run_checkpoint
from diffloss.train_config import LoopConfig, PriorTrainConfig, RestorerTrainConfig, new_restorer_config

__all__ = ["LoopConfig", "PriorTrainConfig", "RestorerTrainConfig", "TrainEvent", "TrainingDiverged",
           "new_restorer_config", "run_loop", "train_prior", "train_restorer", "train_step"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says at which step and where the last good checkpoint is."""


@dataclass
class TrainEvent:
    """One thing the loop reports: a logged step, a saved checkpoint, a stop, or the end."""

    kind: str  # "step" | "checkpoint" | "stopped" | "done"
    step: int
    total_steps: int
    values: dict[str, float] = field(default_factory=dict)
    path: str | None = None
    message: str = ""
    # "step" events: the net being trained (its live weights), for a caller that measures it between steps (the
    # Train tab restores a fixed photo with both arms); read it under no_grad, never step it.
    model: nn.Module | None = field(default=None, repr=False, compare=False)


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


PRIOR_WEIGHTINGS = ("eps", "min-snr")


class PriorJob:
    """DDPM training: predict the noise added to clean crops at a timestep drawn uniformly from the band."""

    def __init__(self, cfg: PriorTrainConfig, device: torch.device) -> None:
        from diffloss.data import CleanCropSampler, holdout_split, load_clean_images, with_downscaled_copies
        from diffloss.prior import PRIOR_PRESETS, DiffusionPrior

        if cfg.preset not in PRIOR_PRESETS:
            raise ValueError(f"unknown prior preset {cfg.preset!r}; choose one of {sorted(PRIOR_PRESETS)}")
        if cfg.weighting not in PRIOR_WEIGHTINGS:
            raise ValueError(f"unknown weighting {cfg.weighting!r}; choose one of {list(PRIOR_WEIGHTINGS)}")
        if not cfg.clean:
            raise ValueError("give at least one --clean folder of photos to learn from")
        photos = [img for folder in cfg.clean for img in load_clean_images(folder, max_side=cfg.max_side)]
        photos, self.held_out = holdout_split(photos, cfg.holdout_every)
        images = with_downscaled_copies(photos, min_side=cfg.crop) if cfg.augment else photos
        self.sampler = CleanCropSampler(images, cfg.crop, rotate=cfg.augment)
        torch.manual_seed(derive_seed(cfg.loop.seed, "init"))
        prior = DiffusionPrior.from_pretrained(cfg.init) if cfg.init else PRIOR_PRESETS[cfg.preset].build()
        self.scheduler = prior.scheduler
        self.model = prior.unet.train().requires_grad_(True).to(device)
        self.alphas = prior.alphas_cumprod.to(device)
        last = len(self.alphas) - 1
        self.t_max = last if cfg.t_max is None else cfg.t_max
        if not 0 <= cfg.t_min <= self.t_max <= last:
            raise ValueError(f"the training band [{cfg.t_min}, {cfg.t_max}] must lie within [0, {last}]")
        self.cfg = cfg
        self.data_summary = {"clean": cfg.clean, "images": len(photos), "held_out": len(self.held_out),
                             "augmented_images": len(images), "crop": cfg.crop,
                             "preset": None if cfg.init else cfg.preset, "init": cfg.init,
                             "t_band": [cfg.t_min, self.t_max], "weighting": cfg.weighting,
                             "parameters": sum(p.numel() for p in self.model.parameters())}

    def compute(self, model: nn.Module, seed: int, measure: bool) -> StepLoss:
        from diffloss import schedule

        g = torch.Generator().manual_seed(seed)
        device = self.alphas.device
        x0 = schedule.to_model_range(self.sampler.batch(self.cfg.loop.batch_size, seed)).to(device)
        t = torch.randint(self.cfg.t_min, self.t_max + 1, (x0.shape[0],), generator=g).to(device)
        eps = torch.randn(x0.shape, generator=g).to(device)
        pred = model(schedule.add_noise(x0, eps, t, self.alphas), t).sample
        per_sample = (pred.float() - eps).pow(2).flatten(1).mean(1)
        if self.cfg.weighting == "min-snr":
            per_sample = per_sample * schedule.min_snr_weight(self.alphas, t, self.cfg.snr_gamma)
        return PlainLoss(per_sample.mean())

    def export(self, model: nn.Module, folder: Path, card: dict[str, Any]) -> None:
        from diffusers import UNet2DModel

        from diffloss.prior import DiffusionPrior

        unet = UNet2DModel.from_config(model.config)
        unet.load_state_dict(model.state_dict())
        DiffusionPrior(unet, self.scheduler, source=str(folder)).save_pretrained(folder)
        atomic_write_json(folder / CARD_FILE, card)


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
                             # the timesteps drawn, resolved: "the prior's band" names no numbers on its own
                             "t_range": list(self.loss.t_range) if self.loss else None,
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


# --------------------------------------------------------------------------------------------------- step
def make_optimizer(model: nn.Module, loop: LoopConfig) -> torch.optim.Optimizer:
    """AdamW with betas (0.9, 0.99): the optimiser of every job (weight decay 0 by default, i.e. Adam)."""
    return torch.optim.AdamW(model.parameters(), lr=loop.lr, betas=(0.9, 0.99), weight_decay=loop.weight_decay)


class NonFiniteLoss(ValueError):
    """``train_step`` refused a NaN/inf loss before it touched the weights."""

    def __init__(self, loss: StepLoss) -> None:
        self.value = float(loss.total.detach())
        self.terms = loss.as_floats()
        super().__init__(f"loss became {self.value} ({self.terms})")


PRECISIONS = ("auto", "fp32", "bf16")


def autocast_for(device: torch.device, precision: str = "auto") -> ContextManager:
    """The mixed-precision context a run trains under: bf16 autocast where asked, or by default on CUDA only."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(model: nn.Module, opt: torch.optim.Optimizer, compute: Callable[[], StepLoss], grad_clip: float,
               autocast: ContextManager | None = None) -> StepLoss:
    """One optimisation step: the loss (``compute()``, under ``autocast``), backward, gradient clip, optimiser step.

    A non-finite loss raises ``NonFiniteLoss`` before the weights change, so the last good state is kept. The
    loop and ``bench`` both step through here: the step the bench times is the step training takes.
    """
    with autocast or contextlib.nullcontext():
        loss = compute()
    if not math.isfinite(float(loss.total.detach())):
        raise NonFiniteLoss(loss)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return loss


# ------------------------------------------------------------------------------------------------- loop
def run_loop(job: Job, loop: LoopConfig, device: torch.device, run_config: dict[str, Any]) -> Iterator[TrainEvent]:
    """The training loop, shared by every job. Yields events; closing the generator saves and stops cleanly."""
    distinfo = init_distributed(device)
    out = Path(loop.out)
    files = RunFolder(out)
    model = job.model
    ema = EMA(model, loop.ema_decay)
    opt = make_optimizer(model, loop)
    step, elapsed_before = 0, 0.0
    if loop.resume and files.checkpoint.is_file():
        step, info = load_run_checkpoint(files.checkpoint, model, ema.shadow, opt)
        check_same_run(files.checkpoint, info.get("config", {}), run_config)
        elapsed_before = float(info.get("wall_time_s", 0.0))
    train_model: nn.Module = model
    if distinfo.world_size > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    log = CsvLog(files.log, step) if distinfo.is_main else None
    autocast = autocast_for(device, loop.precision)
    started, last_values, recent = time.time(), {}, []
    deadline = started + loop.time_limit_min * 60 if loop.time_limit_min is not None else None
    start_step = step

    def wall() -> float:
        return elapsed_before + time.time() - started

    def info() -> dict[str, Any]:
        return {"wall_time_s": wall(), "config": run_config,
                "device": device_description(device), "world_size": distinfo.world_size}

    def save() -> str:
        if distinfo.is_main:
            save_run_checkpoint(files.checkpoint, model, ema.shadow, opt, step, info())
        return str(files.checkpoint)

    try:
        while step < loop.steps:
            if deadline is not None and time.time() >= deadline:
                yield TrainEvent("stopped", step, loop.steps, last_values, save(),
                                 f"time limit of {loop.time_limit_min} min reached; {how_to_resume(out)}")
                return
            lr = learning_rate(step, loop)
            for group in opt.param_groups:
                group["lr"] = lr
            # The first step too: a run shows its losses, shares and pace at once, not after log_every steps.
            measure = step == 0 or (step + 1) % loop.log_every == 0 or step + 1 == loop.steps
            seed = derive_seed(loop.seed, step, distinfo.rank, "data")
            tick = time.time()
            try:
                loss = train_step(model, opt, lambda: job.compute(train_model, seed, measure), loop.grad_clip,
                                  autocast)
            except NonFiniteLoss as err:
                have = (f"the last good checkpoint is {files.checkpoint}" if files.checkpoint.is_file()
                        else "no checkpoint was written yet")
                raise TrainingDiverged(
                    f"loss became {err.value} at step {step} ({err.terms}); {have}. "
                    "Lower the learning rate or the DiffLoss weights, or check the data for NaNs."
                ) from None
            step += 1
            ema.update(model, step)
            recent = (recent + [float(loss.total.detach())])[-50:]
            if measure:
                last_values = {"lr": lr, **loss.as_floats(),
                               "images_per_s": loop.batch_size * distinfo.world_size / max(1e-9, time.time() - tick)}
                if log is not None:
                    log.write({"step": step, "wall_s": round(wall(), 2), **last_values})
                yield TrainEvent("step", step, loop.steps, last_values, model=model)
            if step % loop.save_every == 0 and step < loop.steps:
                yield TrainEvent("checkpoint", step, loop.steps, last_values, save())
    except GeneratorExit:
        if step > start_step:
            save()
        raise
    except KeyboardInterrupt:
        path = save() if step > start_step else None
        yield TrainEvent("stopped", step, loop.steps, last_values, path, f"interrupted; {how_to_resume(out)}")
        return

    save()
    checksums = [weights_checksum(model)]
    if distinfo.world_size > 1:
        checksums = [None] * distinfo.world_size
        dist.all_gather_object(checksums, weights_checksum(model))
    if distinfo.is_main:
        card = model_card(run_config, job.data_summary, step, info(), sum(recent) / max(1, len(recent)),
                          "mean training loss over the last (up to) 50 steps", last_logged=last_values,
                          rank_weight_checksums=checksums, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        job.export(_ema_copy(model, ema), files.model, card)
    yield TrainEvent("done", step, loop.steps, last_values, str(files.model))


def _ema_copy(model: nn.Module, ema: EMA) -> nn.Module:
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


if __name__ == "__main__":  # ``python -m diffloss.train ...``: the command line lives in diffloss.train_cli
    # Handed over by name, not imported: the loop never depends on its own command line (which imports the loop
    # and diffloss.pair), so the library's import graph has no cycle (tests/test_module_graph.py).
    import runpy
    import sys

    sys.exit(runpy.run_module("diffloss.train_cli")["main"]())
