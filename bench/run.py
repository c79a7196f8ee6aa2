"""The project's speed claims, measured in one run: ``python -m bench``.

    python -m bench [--quick] [--out PATH] [--device cpu|cuda] [--repeats N] [--only P1,P2,...]

- P1  one restorer training step with DiffLoss over the same step with the fidelity loss only (full crop, and the
      prior terms on a ``prior_crop`` sub-crop, and that sub-crop on ``prior_samples`` of the batch's items), each
      crop also with the Jacobian-free gradient (``_sds``: no backward through the UNet).
      Goals (issue #13): the full crop <= 6x, the sub-crop settings <= 3x. The FLOP ratio of each arm is reported
      beside its time ratio: the prior's share of the work, which no implementation trick removes.
- P2  that DiffLoss step with the shipped prior over the same step with the paper's prior shape (ADM-256 as
      diffloss.convert_adm builds it, random weights, 552.8 M parameters). Goal: the shipped prior >= 10x cheaper.
- P3  one 512x512 image through the restorer vs diffusion-based restoration with the same prior (noise to t=400,
      50 DDIM steps back). Goal: the restorer >= 100x faster.
- P4  the studio (cold start, Compare, Inspect, L(t)), measured by ``bench/studio_speed.py``.
- P5  prior training throughput (images/s) at 64x64 with the shipped prior's architecture (no goal: a figure to
      plan training runs with).

Each time is the median of ``--repeats`` timed calls after one untimed warm-up; the arms of a ratio are timed
interleaved so that a background process slows both alike. Results go to ``bench/results/<device>.json``.
Timings are only meaningful on an otherwise idle machine (on a shared CPU set OMP_WAIT_POLICY=PASSIVE).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.timing import count_flops, median_times, write_json  # noqa: E402
from diffloss import degrade, nets  # noqa: E402
from diffloss.loss import DiffLoss, DiffLossConfig  # noqa: E402
from diffloss.machine import device_name, thread_scaling  # noqa: E402
from diffloss.prior import PRIOR_PRESETS, DiffusionPrior  # noqa: E402
from diffloss.schedule import ddim_timesteps  # noqa: E402
from diffloss.train import make_optimizer, train_step  # noqa: E402
from diffloss.train_config import LoopConfig  # noqa: E402

FIGURES = ("P1", "P2", "P3", "P4", "P5")
P1_GOALS = {"diffloss_full": 6.0, "diffloss_full_sds": 6.0}  # issue #13: the whole crop <= 6x; every sub-crop arm <= P1_SUBCROP_GOAL
P1_SUBCROP_GOAL = 3.0
PAPER_BATCH, PAPER_SIDE = 4, 256  # the released code's DiffLoss setting
PAPER_DDIM_STEPS, PAPER_T_START_FRACTION = 50, 0.4  # diffusion restoration: noise to t=400 of 1000, 50 DDIM steps
STEP_LOOP = LoopConfig(lr=1e-3)  # the optimiser (diffloss.train.make_optimizer) and the clip of a restorer step


# ------------------------------------------------------------------------------------------------ settings
@dataclass
class Settings:
    """Everything that shapes the numbers; written into the JSON so a result can be reproduced or compared."""

    device: str = "cpu"
    quick: bool = False
    repeats: int = 3
    threads: int = 2
    only: tuple[str, ...] = FIGURES
    bf16: bool = False  # autocast to bfloat16 (both arms of every ratio)
    channels_last: bool = False  # NHWC weights and inputs (both arms of every ratio)
    task: str = "noise"
    gamma: float = 0.05  # calibrated-ish DiffLoss weights: the prior terms carry a real share of the gradient
    lam: float = 0.1
    batch: int = 16  # P1
    crop: int = 128
    prior_crop: int = 64
    prior_samples: int = 4  # P1's cheapest arm: the sub-crop on this many of the batch's items
    p2_batch: int = PAPER_BATCH
    p2_side: int = PAPER_SIDE
    p3_side: int = 512
    p3_steps: int = PAPER_DDIM_STEPS  # DDIM steps actually run; the time is scaled to 50 when fewer
    prior_train_batch: int = 128  # P5
    prior_train_side: int = 64


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny models and sizes, one repeat (a smoke test, < 1 min)")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/<device>.json)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per measurement (default 3, quick 1)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's current)")
    p.add_argument("--only", default=",".join(FIGURES), help="comma-separated figures, e.g. P1,P3")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast in both arms")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format in both arms")
    p.add_argument("--batch", type=int, default=None, help="P1 batch (default 16, quick 2)")
    p.add_argument("--crop", type=int, default=None, help="P1 crop side (default 128, quick 32)")
    p.add_argument("--prior-crop", type=int, default=None, help="P1 prior sub-crop side (default 64, quick 16)")
    p.add_argument("--prior-samples", type=int, default=None, help="P1 prior subset size (default 4, quick 1)")
    p.add_argument("--p2-batch", type=int, default=None, help="P2 batch (CUDA 4, CPU 1: see the notes)")
    p.add_argument("--p2-side", type=int, default=None, help="P2 image side (CUDA 256, CPU 64)")
    p.add_argument("--p3-side", type=int, default=None, help="P3 image side (default 512, quick 64)")
    p.add_argument("--p3-steps", type=int, default=None,
                   help="P3 DDIM steps actually run (CUDA 50, CPU 5 scaled linearly to 50)")
    p.add_argument("--prior-train-batch", type=int, default=None, help="P5 batch (CUDA 128, CPU 16)")
    return p


def _pick(value: Any, quick: Any, cpu: Any, cuda: Any, is_quick: bool, on_cuda: bool) -> Any:
    """An explicit option wins; otherwise the quick, CPU or CUDA default."""
    if value is not None:
        return value
    return quick if is_quick else (cuda if on_cuda else cpu)


def settings_from_args(args: argparse.Namespace) -> Settings:
    only = tuple(dict.fromkeys(name.strip().upper() for name in args.only.split(",") if name.strip()))
    unknown = [name for name in only if name not in FIGURES]
    if unknown:
        raise SystemExit(f"unknown figure(s) {unknown}; choose from {', '.join(FIGURES)}")
    q, cuda = args.quick, args.device == "cuda"
    return Settings(
        device=args.device, quick=q, repeats=_pick(args.repeats, 1, 3, 3, q, cuda),
        threads=args.threads or torch.get_num_threads(), only=only, bf16=args.bf16,
        channels_last=args.channels_last,
        batch=_pick(args.batch, 2, 16, 16, q, cuda), crop=_pick(args.crop, 32, 128, 128, q, cuda),
        prior_crop=_pick(args.prior_crop, 16, 64, 64, q, cuda),
        prior_samples=_pick(args.prior_samples, 1, 4, 4, q, cuda),
        p2_batch=_pick(args.p2_batch, 1, 1, PAPER_BATCH, q, cuda),
        p2_side=_pick(args.p2_side, 32, 64, PAPER_SIDE, q, cuda),
        p3_side=_pick(args.p3_side, 64, 512, 512, q, cuda),
        p3_steps=_pick(args.p3_steps, 2, 5, PAPER_DDIM_STEPS, q, cuda),
        prior_train_batch=_pick(args.prior_train_batch, 2, 16, 128, q, cuda),
        prior_train_side=32 if q else 64,
    )


# ------------------------------------------------------------------------------------------------- results
@dataclass
class Check:
    """One number against its goal; ``op`` None for a figure that has no goal."""

    name: str
    value: float
    unit: str
    op: str | None = None
    goal: float | None = None

    @property
    def met(self) -> bool | None:
        if self.op is None or self.goal is None:
            return None
        return {"<=": self.value <= self.goal, ">=": self.value >= self.goal, "<": self.value < self.goal}[self.op]

    def goal_text(self) -> str:
        return "" if self.op is None else f"{self.op} {self.goal:g}{'x' if self.unit == 'x' else ' ' + self.unit}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit, "goal": self.goal_text() or None,
                "goal_value": self.goal, "met": self.met}


@dataclass
class Figure:
    """A measured figure: median times of its arms, the checks derived from them, and how it was measured."""

    key: str
    title: str
    times_s: dict[str, float] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    measure_wall_s: float = 0.0
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.skipped:
            return {"title": self.title, "skipped": self.skipped}
        return {"title": self.title, "times_s": self.times_s, "checks": [c.to_json() for c in self.checks],
                "goal_met": all(c.met is not False for c in self.checks), "details": self.details,
                "measure_wall_s": round(self.measure_wall_s, 2)}


@dataclass
class Context:
    """What the figures share: settings, device, the shipped (or stand-in) prior and restorer, and the notes."""

    settings: Settings
    device: torch.device
    prior: DiffusionPrior
    prior_label: str
    prior_preset: str
    restorer: nets.Restorer
    restorer_label: str
    notes: list[str] = field(default_factory=list)

    def autocast(self) -> ContextManager:
        if self.settings.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def layout(self, x: torch.Tensor | nn.Module) -> Any:
        """channels_last when asked for; applied to every model and input so both arms see the same layout."""
        return x.to(memory_format=torch.channels_last) if self.settings.channels_last else x


# ------------------------------------------------------------------------------------------------- machine
def device_slug(device: torch.device) -> str:
    """``cpu``, or the GPU name as a file name, e.g. ``nvidia-h100-80gb-hbm3``."""
    return slugify(device_name(device)) if device.type == "cuda" else "cpu"


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "cuda"


def git_commit() -> dict[str, Any] | None:
    """HEAD and whether the tree had changes: a number measured on uncommitted code should say so."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
        # earlier results files do not make the measured code dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)bench/results"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": dirty}


# ------------------------------------------------------------------------------------------------ models
def shipped_prior_preset(folder: Path) -> str:
    """The preset the shipped prior was trained as (its card says), so P5 trains that architecture."""
    with contextlib.suppress(OSError, ValueError):
        card = json.loads((folder / "card.json").read_text())
        preset = card.get("config", {}).get("preset") or card.get("data", {}).get("preset")
        if preset in PRIOR_PRESETS:
            return preset
    return "small"


def load_prior(settings: Settings, device: torch.device, notes: list[str]) -> tuple[DiffusionPrior, str, str]:
    """(prior, label, preset): the shipped prior, a random 'small' one when none is shipped, 'tiny' in quick mode."""
    folder = REPO / "pretrained" / "prior"
    torch.manual_seed(0)
    if settings.quick:
        notes.append("quick mode: a random 'tiny' prior stands in for the shipped one; all sizes are tiny")
        return PRIOR_PRESETS["tiny"].build().to(device), "random 'tiny' prior (quick)", "tiny"
    if (folder / "config.json").is_file():
        return DiffusionPrior.from_pretrained(folder, device=device), "shipped prior (pretrained/prior)", \
            shipped_prior_preset(folder)
    notes.append("no shipped prior at pretrained/prior: a random 'small' prior (time depends on shape, not weights)")
    return PRIOR_PRESETS["small"].build().to(device), "random 'small' prior", "small"


def load_restorer(task: str, device: torch.device, notes: list[str]) -> tuple[nets.Restorer, str]:
    """The shipped restorer for the task (either arm: they share the architecture), else a fresh default one."""
    from diffloss.train_config import new_restorer_config
    from diffloss.family import shipped_restorers

    arms = shipped_restorers(REPO / "pretrained").get(task, {})
    if arms:
        arm, folder = next(iter(arms.items()))
        return nets.load_restorer(folder, device=device), f"shipped {task} {arm}"
    notes.append(f"no shipped restorer for task {task!r}: a freshly initialised Restorer of the default "
                 "architecture (its speed depends on the architecture, not the weights)")
    torch.manual_seed(0)
    return nets.Restorer(new_restorer_config(task)).to(device), f"fresh default {task} restorer"


def paper_scale_prior(quick: bool) -> tuple[DiffusionPrior, str]:
    """The paper's prior shape with random weights: guided-diffusion's ADM-256 unconditional model (552.8 M params)
    exactly as ``python -m diffloss.convert_adm --preset 256-uncond`` builds it, without its download.

    Random weights cost the same as trained ones. 6 output channels as ADM (eps and the learned variance); the
    wrapper keeps the first 3. Quick mode keeps the layout (6 levels, attention at the 3 lowest, scale-shift
    norm, 6 outputs) with the narrowest widths ADM's 32-group norms allow.
    """
    from dataclasses import replace

    from diffloss.convert_adm import ADM_PRESETS, build_prior

    cfg = ADM_PRESETS["256-uncond"]
    if quick:
        cfg = replace(cfg, num_channels=32, num_head_channels=32)
    label = "ADM-256 layout with tiny widths, random weights (quick)" if quick else \
        "ADM-256 (converter preset 256-uncond), random weights"
    torch.manual_seed(0)
    return build_prior(cfg, source=label), label


@dataclass(frozen=True)
class Batch:
    """A degraded batch and the clean images it came from."""

    degraded: degrade.Degraded
    gt: torch.Tensor

    @property
    def net_input(self) -> torch.Tensor:
        return self.degraded.net_input

    @property
    def lq(self) -> torch.Tensor:
        return self.degraded.lq


def make_batch(task: str, batch: int, side: int, seed: int = 0) -> Batch:
    """A degraded batch of smooth random images: cost does not depend on content, and no dataset is needed."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 3, max(2, side // 8), max(2, side // 8), generator=g)
    clean = torch.nn.functional.interpolate(low, size=(side, side), mode="bicubic", align_corners=False).clamp(0, 1)
    return Batch(degrade.make_pair(task, clean, g), clean)


# --------------------------------------------------------------------------------------------- train steps
def restorer_step(ctx: Context, prior: DiffusionPrior, config: DiffLossConfig, batch: Batch,
                  ) -> Callable[[], None]:
    """One restorer training step as training takes it (``diffloss.train.train_step``: forward and loss under
    autocast, backward, gradient clip, AdamW step). Data loading and the EMA are left out on purpose: both arms pay
    them alike, and leaving them out makes the ratio about the loss. Each arm trains its own copy of the restorer.
    """
    model = ctx.layout(copy.deepcopy(ctx.restorer).train().requires_grad_(True))
    opt = make_optimizer(model, STEP_LOOP)
    loss = DiffLoss(prior, config)
    net_input = ctx.layout(batch.net_input.to(ctx.device))
    gt = batch.gt.to(ctx.device)

    def compute():
        g = torch.Generator().manual_seed(0)  # the same (t, eps, sub-crop) every call: equal work per call
        return loss(model(net_input).float(), gt, generator=g, measure_grad_share=False)

    return lambda: train_step(model, opt, compute, STEP_LOOP.grad_clip, ctx.autocast())


def diffloss_config(ctx: Context, **overrides: Any) -> DiffLossConfig:
    return DiffLossConfig(gamma=ctx.settings.gamma, lam=ctx.settings.lam, report_grad_share=False, **overrides)


# ------------------------------------------------------------------------------------------------- figures
def figure_p1(ctx: Context) -> Figure:
    """DiffLoss step / fidelity-only step: what a user pays per step for the prior terms."""
    s = ctx.settings
    batch = make_batch(s.task, s.batch, s.crop)
    crop_arm = f"diffloss_crop{s.prior_crop}"
    configs = {
        "fidelity_only": DiffLossConfig.off(track_when_off=False, report_grad_share=False),
        "diffloss_full": diffloss_config(ctx),
        "diffloss_full_sds": diffloss_config(ctx, gradient="sds"),  # Jacobian-free: no backward through the UNet
        crop_arm: diffloss_config(ctx, prior_crop=s.prior_crop),
        f"{crop_arm}_sds": diffloss_config(ctx, prior_crop=s.prior_crop, gradient="sds"),
        f"{crop_arm}_samples{s.prior_samples}": diffloss_config(ctx, prior_crop=s.prior_crop,
                                                               prior_samples=s.prior_samples),
    }
    steps = {name: restorer_step(ctx, ctx.prior, cfg, batch) for name, cfg in configs.items()}
    times = median_times(steps, s.repeats, ctx.device)
    # Counted after the timing: a step run under torch's FLOP counter left the next ones ~10 % slower here.
    flops = {name: count_flops(step) for name, step in steps.items()}
    arms = [name for name in configs if name != "fidelity_only"]
    checks = [Check(f"{name} / fidelity_only", times[name] / times["fidelity_only"], "x", "<=",
                    P1_GOALS.get(name, P1_SUBCROP_GOAL)) for name in arms]
    checks += [Check(f"{name} / fidelity_only FLOPs", flops[name] / flops["fidelity_only"], "x") for name in arms]
    return Figure("P1", "restorer training step: DiffLoss over fidelity only", times, checks, {
        "gflop_per_step": {name: round(n / 1e9, 3) for name, n in flops.items()},
        "batch": s.batch, "crop": s.crop, "prior_crop": s.prior_crop, "prior_samples": s.prior_samples,
        "gamma": s.gamma, "lam": s.lam,
        "prior": ctx.prior_label, "restorer": ctx.restorer_label, "optimizer": "AdamW(wd=0) = Adam, clip 1.0",
    })


def figure_p2(ctx: Context) -> Figure:
    """The same DiffLoss step with the shipped prior vs a paper-scale one: why a small prior is the point."""
    s = ctx.settings
    big, big_label = paper_scale_prior(s.quick)
    big.to(ctx.device)
    ctx.layout(big.unet)
    params = big.parameter_count()
    print(f"  P2 paper-scale prior: {big_label}, {params / 1e6:.1f} M parameters", flush=True)
    reduced = (s.p2_batch, s.p2_side) != (PAPER_BATCH, PAPER_SIDE)
    batch = make_batch(s.task, s.p2_batch, s.p2_side)
    config = diffloss_config(ctx)
    times = median_times({"shipped_prior": restorer_step(ctx, ctx.prior, config, batch),
                          "paper_scale_prior": restorer_step(ctx, big, config, batch)}, s.repeats, ctx.device)
    ratio = times["paper_scale_prior"] / times["shipped_prior"]
    if reduced and not s.quick:
        ctx.notes.append(reduced_p2_note(s, params, times["paper_scale_prior"]))
    figure = Figure("P2", "DiffLoss step: paper-scale prior over shipped prior", times,
                    [Check("paper_scale_prior / shipped_prior", ratio, "x", ">=", 10.0)], {
                        "batch": s.p2_batch, "side": s.p2_side, "reduced_from_paper_setting": reduced,
                        "paper_setting": {"batch": PAPER_BATCH, "side": PAPER_SIDE},
                        "shipped_prior": ctx.prior_label, "shipped_prior_parameters": ctx.prior.parameter_count(),
                        "paper_scale_prior": big_label, "paper_scale_prior_parameters": params,
                        "paper_scale_out_channels": big.unet.config.out_channels,
                    })
    del big
    if ctx.device.type == "cuda":
        torch.cuda.empty_cache()
    return figure


def reduced_p2_note(s: Settings, params: int, big_step_s: float) -> str:
    """Why P2 ran below the released setting, with this run's own time scaled to it (pixels x batch)."""
    scale = PAPER_BATCH * PAPER_SIDE**2 / (s.p2_batch * s.p2_side**2)
    return (f"P2 reduced to batch {s.p2_batch} at {s.p2_side}x{s.p2_side} (the released code used batch "
            f"{PAPER_BATCH} at {PAPER_SIDE}x{PAPER_SIDE}): the backward pass through the {params / 1e6:.0f} M-parameter"
            f" prior at that size needs many GB of activations, and this run's {big_step_s:.1f} s step scaled to the "
            f"{scale:.0f}x more batch pixels suggests ~{big_step_s * scale / 60:.0f} min per step here; both arms "
            "use the reduced size, so the ratio compares priors, not image sizes (on CUDA the released setting is "
            "the default)")


def figure_p3(ctx: Context) -> Figure:
    """One image through the restorer vs diffusion-based restoration with the same prior (noise, DDIM back)."""
    s = ctx.settings
    d = make_batch(s.task, 1, s.p3_side)
    t_start = round(PAPER_T_START_FRACTION * ctx.prior.num_timesteps)  # 400 of 1000
    run_forwards = len(ddim_timesteps(t_start, s.p3_steps))
    full_forwards = len(ddim_timesteps(t_start, PAPER_DDIM_STEPS))
    model = ctx.layout(ctx.restorer.eval())
    net_input, lq = ctx.layout(d.net_input.to(ctx.device)), ctx.layout(d.lq.to(ctx.device))

    def restorer() -> None:
        with ctx.autocast():
            nets.restore(model, net_input)

    def diffusion() -> None:
        with ctx.autocast():
            ctx.prior.purify(lq, t_start, s.p3_steps, generator=torch.Generator().manual_seed(0))

    measured = median_times({"restorer": restorer, "diffusion_run": diffusion}, s.repeats, ctx.device)
    scale = full_forwards / run_forwards
    times = {"restorer": measured["restorer"], f"diffusion_{run_forwards}_steps": measured["diffusion_run"],
             f"diffusion_{full_forwards}_steps": measured["diffusion_run"] * scale}
    if scale != 1:
        ctx.notes.append(f"P3: the DDIM walk ran {run_forwards} steps and its time was scaled linearly to "
                         f"{full_forwards} (one prior forward per step); --p3-steps {PAPER_DDIM_STEPS} runs them all")
    ratio = times[f"diffusion_{full_forwards}_steps"] / times["restorer"]
    return Figure("P3", f"restore one {s.p3_side}x{s.p3_side} image: diffusion over restorer", times,
                  [Check("diffusion / restorer", ratio, "x", ">=", 100.0)], {
                      "side": s.p3_side, "t_start": t_start, "ddim_steps_run": run_forwards,
                      "ddim_steps_reported": full_forwards, "scaled": scale != 1, "prior": ctx.prior_label,
                      "restorer": ctx.restorer_label,
                  })


def figure_p4(ctx: Context) -> Figure:
    """The studio's own figures, measured by bench/studio_speed.py (not duplicated here)."""
    from bench import studio_speed

    s = ctx.settings
    title = "studio: cold start, Compare 512, Inspect 256, L(t)"
    if s.quick:
        return Figure("P4", title, skipped="skipped in quick mode")
    result = studio_speed.main(["--repeats", str(s.repeats), "--threads", str(s.threads), "--task", s.task])
    ctx.notes.extend(f"P4: {note}" for note in result.get("notes", []))
    checks = [Check(key, float(result[key]), "s", "<", goal) for key, goal in studio_speed.GOALS.items()]
    times = {c.name: c.value for c in checks}
    for key in ("ui_ready_s", "page_ready_s", "inspect_256_new_t_s", "inspect_256_reweight_s"):  # no goals: how the parts behave
        times[key] = float(result[key])
    return Figure("P4", title, times, checks,
                  {"measured_by": "bench/studio_speed.py", "studio_device": result.get("device")})


def figure_p5(ctx: Context) -> Figure:
    """Images/s of a prior training step, through diffloss.train.PriorJob (its data sampling included)."""
    from diffloss.images import save_image
    from diffloss.train import PriorJob, PriorTrainConfig

    s = ctx.settings
    with tempfile.TemporaryDirectory() as tmp:
        g = torch.Generator().manual_seed(0)
        for i in range(4):  # PriorJob reads a folder of photos; smooth random ones cost the same
            low = torch.rand(1, 3, 16, 16, generator=g)
            img = torch.nn.functional.interpolate(low, size=(2 * s.prior_train_side,) * 2, mode="bicubic")
            save_image(img.clamp(0, 1)[0], Path(tmp) / f"{i}.png")
        cfg = PriorTrainConfig(clean=[tmp], preset=ctx.prior_preset, crop=s.prior_train_side,
                               loop=LoopConfig(batch_size=s.prior_train_batch, device=str(ctx.device)))
        job = PriorJob(cfg, ctx.device)
    model = ctx.layout(job.model)
    opt = make_optimizer(model, cfg.loop)
    seeds = itertools.count()

    def step() -> None:
        train_step(model, opt, lambda: job.compute(model, next(seeds), False), cfg.loop.grad_clip, ctx.autocast())

    times = median_times({"prior_train_step": step}, s.repeats, ctx.device)
    rate = s.prior_train_batch / times["prior_train_step"]
    return Figure("P5", f"prior training throughput at {s.prior_train_side}x{s.prior_train_side}", times,
                  [Check("images_per_s", rate, "images/s")], {
                      "preset": ctx.prior_preset, "batch": s.prior_train_batch, "side": s.prior_train_side,
                      "parameters": sum(p.numel() for p in model.parameters()),
                  })


MEASURE: dict[str, Callable[[Context], Figure]] = {
    "P1": figure_p1, "P2": figure_p2, "P3": figure_p3, "P4": figure_p4, "P5": figure_p5,
}


# ------------------------------------------------------------------------------------------------ report
def print_table(figures: list[Figure]) -> None:
    """One line per time and per check; the JSON has the same numbers with their settings."""
    print(f"\n{'fig':<4}{'measurement':<40}{'value':>14}  {'goal':<12}{'met'}")
    for fig in figures:
        if fig.skipped:
            print(f"{fig.key:<4}{fig.title} ({fig.skipped})")
            continue
        for name, seconds in fig.times_s.items():
            if fig.key != "P4":  # P4's times are its checks
                print(f"{fig.key:<4}{name:<40}{seconds:>12.4f} s")
        for c in fig.checks:
            met = {True: "yes", False: "NO", None: ""}[c.met]
            unit = "x" if c.unit == "x" else " " + c.unit
            print(f"{fig.key:<4}{c.name:<40}{c.value:>12.2f}{unit:<2}  {c.goal_text():<12}{met}")


def report(ctx: Context, figures: list[Figure], scaling: dict[str, Any] | None = None) -> dict[str, Any]:
    s = ctx.settings
    return {
        "device": device_name(ctx.device), "device_type": ctx.device.type, "threads": torch.get_num_threads(),
        "thread_scaling": scaling,  # CPU: what the extra threads gave before and after the figures (shared VMs)
        "torch": torch.__version__, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git": git_commit(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "settings": asdict(s), "notes": ctx.notes,
        "figures": {f.key: f.to_json() for f in figures},
        "not_selected": [key for key in FIGURES if key not in s.only],
    }


def make_context(s: Settings) -> Context:
    device = torch.device(s.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but no CUDA GPU is available")
    torch.set_num_threads(s.threads)
    notes: list[str] = []
    prior, prior_label, preset = load_prior(s, device, notes)
    restorer, restorer_label = load_restorer(s.task, device, notes)
    ctx = Context(s, device, prior, prior_label, preset, restorer, restorer_label, notes)
    ctx.layout(prior.unet)
    if s.bf16 or s.channels_last:
        flags = [name for name, on in (("bf16 autocast", s.bf16), ("channels_last", s.channels_last)) if on]
        notes.append(f"applied to both arms of every figure: {', '.join(flags)}")
    return ctx


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    s = settings_from_args(args)
    ctx = make_context(s)
    print(f"bench on {device_name(ctx.device)} ({torch.get_num_threads()} threads), torch {torch.__version__}; "
          f"prior: {ctx.prior_label}; restorer: {ctx.restorer_label}", flush=True)
    scaling = {"before": thread_scaling(s.threads)} if ctx.device.type == "cpu" else None
    if scaling:
        print(f"thread scaling now: x{scaling['before']['speedup']} on {s.threads} threads (matmul)", flush=True)
    figures = []
    for key in (k for k in FIGURES if k in s.only):
        start = time.perf_counter()
        figure = MEASURE[key](ctx)
        figure.measure_wall_s = time.perf_counter() - start
        print(f"  {key} done in {figure.measure_wall_s:.1f} s", flush=True)
        figures.append(figure)
    print_table(figures)
    if ctx.notes:
        print("\nnotes:\n" + "\n".join(f"- {note}" for note in ctx.notes))
    if scaling:
        scaling["after"] = thread_scaling(s.threads)
    result = report(ctx, figures, scaling)
    out = write_json(args.out or REPO / "bench" / "results" / f"{device_slug(ctx.device)}.json", result)
    print(f"\nwrote {out}")
    return result


if __name__ == "__main__":
    main()
