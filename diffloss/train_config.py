"""The settings of a training run, as explicit dataclasses: what the CLI parses, a checkpoint stores and a resume
reads back.

Why a module of its own: the loop (``diffloss.train``), the run folder (``diffloss.run_folder``: a checkpoint
holds these settings and a resume rebuilds them) and the two-arm pair (``diffloss.pair``) all need them, and none
of those should import another just for a dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from diffloss.loss import DiffLossConfig


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
    # "auto": bf16 autocast on CUDA, float32 on a CPU (bf16 was far slower on a CPU without AMX:
    # bench/results/bf16-cpu.md); "bf16" or "fp32" to choose.
    precision: str = "auto"
    resume: bool = True
    command: str = ""  # recorded in the card; the CLI fills it in


@dataclass
class PriorTrainConfig:
    clean: list[str] = field(default_factory=list)
    preset: str = "small"  # the architecture (ignored when ``init`` gives one)
    crop: int = 64
    max_side: int | None = None
    init: str | None = None  # a prior folder to continue training from (its architecture and weights)
    # Training timesteps are drawn uniformly from [t_min, t_max] (None: the schedule's last): a prior used as a
    # loss in a band of noise levels only needs to be good there (bench/results/prior-probes.md).
    t_min: int = 0
    t_max: int | None = None
    weighting: str = "eps"  # "eps": plain eps MSE; "min-snr": weighted by min(SNR, snr_gamma) / SNR
    snr_gamma: float = 5.0
    augment: bool = False  # 90-degree rotations and half-size copies of the photos, besides left-right flips
    holdout_every: int = 0  # every k-th photo left out of training (monitoring); 0: train on all
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


@dataclass(frozen=True)
class CpuDefaults:
    """What a restorer run starts with on a CPU unless told otherwise: the Train tab's boxes there, and the command
    line's defaults there (``python -m diffloss.train pair|restorer``). Why: a DiffLoss step on the whole 96 px crop
    of 8 photos costs minutes per 20 steps on a small CPU; at 4 photos of 64 px it costs about 0.6 s on one core.

    The prior sees the whole crop of every photo, although that step costs 10-11x a fidelity step (bench P1): the
    cheaper settings (``prior_crop``, ``prior_samples``: 2.2-3.8x) trained worse than the whole crop in every seed
    measured, at the Train tab's default weights and at the family's strong dose, and moved the arm further from
    L2 in a direction that did not help (bench/results/subcrop-quality-tab-default.md)."""

    batch: int = 4
    crop: int = 64


CPU_DEFAULTS = CpuDefaults()


def new_restorer_config(task: str, width: int | None = None):
    """The architecture of a restorer trained from scratch for ``task``: its layout (``nets.TASK_LAYOUTS``) and
    width (None: the default)."""
    from diffloss import degrade, nets

    extra = {"width": width} if width else {}
    return nets.RestorerConfig(task=task, in_channels=degrade.get_task(task).in_channels,
                               **nets.TASK_LAYOUTS.get(task, {}), **extra)
