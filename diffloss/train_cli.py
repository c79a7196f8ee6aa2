"""The command line of training: ``python -m diffloss.train prior|restorer|pair|resume|export ...``.

    python -m diffloss.train prior --clean PHOTOS --out runs/prior
    python -m diffloss.train restorer --task noise --diffloss on --clean PHOTOS --out runs/noise-dl
    python -m diffloss.train pair --task noise --clean PHOTOS --out runs/noise-pair    # both arms, as the Train tab
    python -m diffloss.train resume runs/noise-dl        # one run, or a pair folder: both its arms
    python -m diffloss.train export runs/prior           # a partial model from the last checkpoint

Only parsing and printing live here: the loop is ``diffloss.train``, files are ``diffloss.run_folder``, the pair
is ``diffloss.pair``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import torch.distributed as dist

from diffloss.checkpoint import CheckpointError
from diffloss.loss import DiffLossConfig, part_or_all
from diffloss.paths import RunFolder
from diffloss.provenance import make_card_portable
from diffloss.run_folder import checkpoint_settings, export_checkpoint, how_to_resume
from diffloss.signals import stop_on_signals
from diffloss.train import TrainEvent, TrainingDiverged, train_prior, train_restorer
from diffloss.train_config import CPU_DEFAULTS, LoopConfig, PriorTrainConfig, RestorerTrainConfig

PROG = "python -m diffloss.train"


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
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="auto: bf16 autocast on CUDA, float32 on a CPU (default)")
    p.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")


def _add_restorer_args(r: argparse.ArgumentParser) -> None:
    r.add_argument("--task", required=True)
    r.add_argument("--clean", nargs="*", default=[], help="clean photo folders for synthetic pairs")
    r.add_argument("--paired", nargs="*", default=[], help="real paired folders (lq/, gt/)")
    r.add_argument("--paired-exclude", nargs="*", default=[], help="file-name prefixes to hold out")
    r.add_argument("--paired-weight", type=float, default=0.5)
    r.add_argument("--crop", type=int, default=None, help=f"training crop side (default: {CPU_DEFAULTS.crop} on a "
                   f"CPU, as the Train tab; {RestorerTrainConfig.crop} with CUDA)")
    r.add_argument("--init", default=None, help="restorer folder to fine-tune from")
    r.add_argument("--width", type=int, default=None)
    r.add_argument("--prior", default="pretrained/prior", help="diffusers UNet2DModel folder or hub id")
    d = DiffLossConfig()
    r.add_argument("--gamma", type=float, default=d.gamma)
    r.add_argument("--lam", type=float, default=d.lam, help="lambda: weight of L_sem inside the prior term")
    r.add_argument("--released-weights", action="store_true", help="use the released code's weights (1e-3, 1e-6)")
    r.add_argument("--band", choices=["prior", "all"], default=None,
                   help="where t is drawn: the prior's band (stored with it; default) or the whole schedule (the "
                   "paper's range; the default with --released-weights)")
    r.add_argument("--t-min", type=int, default=None, help="first timestep (default: the band's)")
    r.add_argument("--t-max", type=int, default=None, help="last timestep (default: the band's)")
    r.add_argument("--fidelity", choices=["mse", "l1", "charbonnier"], default=d.fidelity)
    r.add_argument("--detach-prior", action="store_true", help="reproduce the released code's no_grad bug")
    r.add_argument("--no-track", action="store_true", help="off arm: do not compute L_nat/L_sem for the log")
    r.add_argument("--prior-crop", type=int, default=None,
                   help="compute the prior terms on one random square sub-crop of this side (cheaper, noisier steps; "
                   "default and 0: the whole crop)")
    r.add_argument("--prior-samples", type=int, default=None,
                   help="compute the prior terms on a random subset of this many batch items (cheaper, noisier "
                   "steps; default and 0: every item)")
    r.add_argument("--t-weight", choices=["uniform", "sigma2", "x0"], default=d.t_weight,
                   help="weight of each t: uniform (the paper), sigma2 = 1 - alpha_bar, x0 = (1 - alpha_bar)/alpha_bar")
    r.add_argument("--gradient", choices=["full", "sds"], default=d.gradient,
                   help="full: through the UNet (the paper); sds: Jacobian-free score distillation (cheaper)")
    r.add_argument("--per-sample-norm", action="store_true", help="each sample's prior gradient scaled to one length")
    r.add_argument("--grad-cap", type=float, default=None,
                   help="the prior's gradient norm at most this times the fidelity gradient's")
    _add_loop_args(r, RestorerTrainConfig().loop)
    r.set_defaults(batch=None)  # by the machine: see cpu_or_given


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Train the diffusion prior, a restorer, or both arms "
                                     "of a comparison; resume or export a run.")
    sub = parser.add_subparsers(dest="what", required=True)

    p = sub.add_parser("prior", help="train the natural-image diffusion prior (DDPM)")
    p.add_argument("--clean", nargs="+", required=True, help="folders of clean photos")
    p.add_argument("--preset", default="small", help="prior size: base, small or tiny")
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--max-side", type=int, default=None, help="downscale photos so the longer side is at most this")
    p.add_argument("--init", default=None, help="a prior folder to continue from (its architecture replaces --preset)")
    p.add_argument("--t-min", type=int, default=0, help="lowest training timestep (the band the loss will use)")
    p.add_argument("--t-max", type=int, default=None, help="highest training timestep (default: the last)")
    p.add_argument("--weighting", default="eps", choices=["eps", "min-snr"],
                   help="eps: plain noise MSE; min-snr: weighted by min(SNR, 5)/SNR (Hang et al. 2023)")
    p.add_argument("--augment", action="store_true", help="90-degree rotations and half-size copies of the photos")
    p.add_argument("--holdout-every", type=int, default=0,
                   help="leave every k-th photo out of training, to monitor on (0: train on all)")
    _add_loop_args(p, LoopConfig())

    e = sub.add_parser("export", help="export a run's last checkpoint (EMA) as a model folder, marked partial")
    e.add_argument("run", help="the run folder (the --out of the training command)")
    e.add_argument("--to", default=None, help="destination folder (default: RUN/export)")

    c = sub.add_parser("resume", help="resume a stopped run with the settings its checkpoint holds (any run, "
                       "including one started from the app's Train tab)")
    c.add_argument("run", help="the run folder (the --out of the training command); a pair's folder (runs/NAME) "
                   "resumes both its arms, one arm's (runs/NAME/l2 or runs/NAME/diffloss) that arm alone")
    c.add_argument("--steps", type=int, default=None, help="train to this step instead (extend or shorten the run)")
    c.add_argument("--time-limit", type=float, default=None, help="minutes; saves and stops, rerun to resume")
    c.add_argument("--device", default=None, help="auto, cpu or cuda (default: as the run was started)")
    c.add_argument("--threads", type=int, default=None, help="CPU threads for torch")

    r = sub.add_parser("restorer", help="train a restorer, with or without DiffLoss")
    r.add_argument("--diffloss", choices=["on", "off"], required=True)
    _add_restorer_args(r)

    a = sub.add_parser("pair", help="train the L2 and the DiffLoss arm side by side from the same start, seed and "
                       "batches (as the app's Train tab does): --out RUN gets RUN/l2 and RUN/diffloss")
    _add_restorer_args(a)
    return parser


def _command() -> str:
    return f"{PROG} " + " ".join(sys.argv[1:])


def _loop_config(args: argparse.Namespace) -> LoopConfig:
    return LoopConfig(
        out=args.out, steps=args.steps, batch_size=args.batch, lr=args.lr, warmup=args.warmup, ema_decay=args.ema,
        seed=args.seed, log_every=args.log_every, save_every=args.save_every, time_limit_min=args.time_limit,
        device=args.device, threads=args.threads, precision=args.precision, resume=not args.no_resume,
        command=_command(),
    )


def _resume_changes(cfg, args: argparse.Namespace):
    """The saved settings with the loop settings a resume may change, and the resume recorded for the card."""
    changes = {"steps": args.steps, "time_limit_min": args.time_limit, "device": args.device,
               "threads": args.threads}
    loop = replace(cfg.loop, **{k: v for k, v in changes.items() if v is not None})
    resumed = f"resumed with: {PROG} resume {args.run}"  # the card tells the whole story
    return replace(cfg, loop=replace(loop, command="; ".join(filter(None, [loop.command, resumed]))))


def config_from_args(args: argparse.Namespace) -> PriorTrainConfig | RestorerTrainConfig:
    if args.what == "resume":
        return _resume_changes(checkpoint_settings(args.run)[1], args)
    if args.what in ("restorer", "pair"):
        args = cpu_or_given(args)
    loop = _loop_config(args)
    if args.what == "prior":
        return PriorTrainConfig(clean=args.clean, preset=args.preset, crop=args.crop, max_side=args.max_side,
                                init=args.init, t_min=args.t_min, t_max=args.t_max, weighting=args.weighting,
                                augment=args.augment, holdout_every=args.holdout_every, loop=loop)
    base = DiffLossConfig.released() if args.released_weights else DiffLossConfig(gamma=args.gamma, lam=args.lam)
    loss = replace(base, band=args.band or base.band, t_min=args.t_min, t_max=args.t_max, fidelity=args.fidelity,
                   detach_prior=args.detach_prior,
                   track_when_off=not args.no_track, prior_crop=args.prior_crop,
                   prior_samples=args.prior_samples, t_weight=args.t_weight, gradient=args.gradient,
                   per_sample_norm=args.per_sample_norm, grad_cap=args.grad_cap)
    return RestorerTrainConfig(
        task=args.task, clean=args.clean, paired=args.paired, paired_exclude=args.paired_exclude,
        paired_weight=args.paired_weight, crop=args.crop, init=args.init, width=args.width, prior=args.prior,
        diffloss=getattr(args, "diffloss", "on") == "on", loss=loss, loop=loop,
    )


def on_cpu(device: str | None) -> bool:
    """Whether a run with ``--device`` ``device`` trains on a CPU."""
    import torch

    return device == "cpu" or (device in (None, "auto") and not torch.cuda.is_available())


def cpu_or_given(args: argparse.Namespace) -> argparse.Namespace:
    """The restorer settings left out filled in for the machine: on a CPU the Train tab's (``CPU_DEFAULTS``: batch,
    crop), so the README's commands run as the tab does; with CUDA the full crop. A prior sub-crop or subset at
    least as large as the crop or batch is the whole of it."""
    cpu = on_cpu(args.device)
    full = RestorerTrainConfig()
    filled = {"batch": args.batch or (CPU_DEFAULTS.batch if cpu else full.loop.batch_size),
              "crop": args.crop or (CPU_DEFAULTS.crop if cpu else full.crop)}
    filled["prior_crop"] = part_or_all(args.prior_crop, filled["crop"])
    filled["prior_samples"] = part_or_all(args.prior_samples, filled["batch"])
    return argparse.Namespace(**{**vars(args), **filled})


def progress_line(arm: str, step: int, total: int, values: dict, elapsed: float, done_before: int = 0) -> str:
    """One arm's line of progress: its step, its loss and the prior's share, and the time left at the pace so far
    (``done_before``: steps a resumed run had already, not counted in the pace)."""
    shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if k in ("total", "share_nat"))
    pace = elapsed / max(1, step - done_before)  # the arms take turns: this is a step of each
    left = max(0, total - step) * pace
    return f"{arm}: step {step}/{total} {shown} ({pace:.1f} s per step of both arms, about {_duration(left)} " \
        "left)".replace("  ", " ")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _is_pair_resume(args: argparse.Namespace) -> bool:
    from diffloss.pair import is_pair

    if args.what != "resume":
        return False
    run = Path(args.run)
    return not RunFolder(run).checkpoint.is_file() and is_pair(run)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop_on_signals()  # SIGTERM (kill, a scheduler, a Space restart) and SIGINT: checkpoint, then exit
    if args.what == "export":
        dest = export_checkpoint(args.run, args.to)
        make_card_portable(dest)  # the card names data by dataset-relative paths, not this machine's folders
        print(f"exported to {dest}")
        return 0
    try:
        if args.what == "pair" or _is_pair_resume(args):
            return _train_pair(args)
        cfg = config_from_args(args)
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    events = train_prior(cfg) if isinstance(cfg, PriorTrainConfig) else train_restorer(cfg)
    try:
        return _follow(events, cfg.loop.steps, Path(cfg.loop.out))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _follow(events: Iterator[TrainEvent], total: int, out: Path) -> int:
    """Show one run's events with a progress bar; 0 when it finished or stopped cleanly, 2 when it diverged."""
    from tqdm import tqdm

    is_main = int(os.environ.get("RANK", "0")) == 0
    bar = tqdm(total=total, disable=not is_main, dynamic_ncols=True)
    step = 0
    try:
        for event in events:
            step = event.step
            bar.n = event.step
            if event.kind == "step":
                bar.set_postfix({k: f"{v:.4g}" for k, v in event.values.items() if k != "lr"}, refresh=False)
            bar.refresh()
            if event.kind == "done" and is_main:
                make_card_portable(Path(event.path))  # data by dataset-relative paths (diffloss.provenance)
            if event.kind in ("stopped", "done") and is_main:
                bar.write(f"{event.kind} at step {event.step}: {event.message or event.path}")
    except KeyboardInterrupt:
        # The signal landed here, between two steps (e.g. while the bar was drawn), not inside the loop: closing
        # the generator makes it save its checkpoint just the same.
        events.close()
        if is_main:
            bar.write(f"stopped at step {step}: interrupted; {how_to_resume(out)}")
    except TrainingDiverged as err:
        bar.close()
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    return 0


def _train_pair(args: argparse.Namespace) -> int:
    """Both arms in turn, as the Train tab steps them; a line per logged round, the zip and the arms' difference."""
    from diffloss import pair

    if args.what == "pair":
        run_dir = Path(args.out)
        configs = pair.arm_configs(config_from_args(args), run_dir, _command())
        plans = {arm: (0, cfg) for arm, cfg in configs.items()}
    else:
        run_dir = Path(args.run)
        plans, notes = pair.resume_plans(run_dir, f"{PROG} resume {args.run}")
        plans = {arm: (step, _resume_changes(cfg, args) if step else cfg) for arm, (step, cfg) in plans.items()}
        for note in notes:
            print(note)
        if not plans:
            raise pair.PairError(f"{run_dir} has nothing to resume: both arms finished")
    run = pair.PairRun()
    first = next(iter(plans.values()))[1]
    print(f"{len(plans)} arm(s), batch {first.loop.batch_size}, crop {first.crop}, prior terms on "
          + (f"a {first.loss.prior_crop} px sub-crop" if first.loss.prior_crop else "the whole crop")
          + (f" of {first.loss.prior_samples} photos" if first.loss.prior_samples else "")
          + f", {first.loop.steps} steps; a line per arm at step 1 and every {first.loop.log_every} steps", flush=True)
    try:
        for arm, (_, cfg) in plans.items():
            run.start(arm, cfg)
        started, before = time.monotonic(), {arm: step for arm, (step, _) in plans.items()}
        for events in run.rounds():
            for arm, event in events.items():
                if event.kind == "done":
                    make_card_portable(Path(event.path))  # data by dataset-relative paths (diffloss.provenance)
                first_step = event.kind == "step" and event.step == before.get(arm, 0) + 1
                if event.kind in ("step", "done") and (event.values or first_step):
                    print(progress_line(arm, event.step, event.total_steps, event.values or {},
                                        time.monotonic() - started, before.get(arm, 0)), flush=True)
                elif event.kind == "stopped":
                    print(f"{arm}: stopped at step {event.step}: {event.message}", flush=True)
    except KeyboardInterrupt:
        run.close()
        print(f"stopped: checkpoints saved; {PROG} resume {run_dir} goes on", flush=True)
        return 0
    except TrainingDiverged as err:
        print(f"error: the {getattr(err, 'arm', '?')} arm diverged: {err}", file=sys.stderr)
        return 2
    finally:
        run.close()
    if all(RunFolder(run_dir / arm).model.is_dir() for arm in plans):
        print(f"both arms saved; models in {pair.zip_models(run_dir)}")
        print(pair.arms_difference(run_dir))
    return 0
