"""The frozen diffusion prior: a diffusers ``UNet2DModel`` + ``DDPMScheduler`` seen as a function of images.

Why a wrapper: the loss and the app need four things from a pretrained diffusion model and nothing else:
noise an image at t, predict the noise and the bottleneck ("h-space") features, estimate x0 in one step, and
a few-step DDIM round trip ("purification"). The wrapper also enforces that the prior is frozen: eval mode, no
parameter requires grad, and it is deliberately *not* an ``nn.Module`` so a restorer's optimiser, ``.train()``
or DDP wrapper can never reach it.

Images come in and go out in [0, 1]; the model sees [-1, 1] (``schedule.to_model_range``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from diffloss import checkpoint, schedule
from diffloss.prior_band import Band, read_band, write_band

if TYPE_CHECKING:  # diffusers is slow to import: loaded on first use, so the app's UI starts sooner
    from diffusers import DDPMScheduler, UNet2DModel

SCHEDULER_FILE = "scheduler_config.json"
# diffusers defaults to low_cpu_mem_usage=True, and without the accelerate package it falls back to a normal load
# while warning "Cannot initialize model with low cpu memory usage because accelerate was not found" at every load;
# a prior of a few MB gains nothing from the low-memory path, so the normal load is asked for outright.
# float32 whatever the file stores: the shipped prior is stored in float16 to stay small, and computes in float32
# (a CPU has no fast float16 convolutions; autocast is the speed knob, outside the weights).
QUIET_LOAD = {"low_cpu_mem_usage": False, "torch_dtype": torch.float32}


class PriorLoadError(RuntimeError):
    """The prior could not be loaded; the message names what was looked for and where."""


@dataclass(frozen=True)
class PriorOutput:
    """What the UNet says about a noised image: predicted noise (cropped to the input size) and h-space features."""

    eps: torch.Tensor
    h: torch.Tensor


@dataclass(frozen=True)
class PriorView:
    """Everything the Inspect view shows for one image at one t (all images in [0,1] except eps and h)."""

    x_t: torch.Tensor
    eps: torch.Tensor
    eps_hat: torch.Tensor
    x0_hat: torch.Tensor
    h: torch.Tensor


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad bottom/right so H and W are multiples (replicate when the image is too small to reflect)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _find_component(root: Path, filename: str, subfolder: str) -> Path | None:
    """A diffusers model folder (file at the root) or a pipeline folder (file in ``subfolder/``)."""
    for candidate in (root, root / subfolder):
        if (candidate / filename).is_file():
            return candidate
    return None


class _KeepOutput(torch.nn.Module):
    """Runs ``inner`` and hands its output to ``sink`` as well: how one ``predict`` call gets its h map."""

    def __init__(self, inner: torch.nn.Module, sink: list[torch.Tensor]) -> None:
        super().__init__()
        self.inner = inner
        self.sink = sink

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        out = self.inner(*args, **kwargs)
        self.sink.append(out)
        return out


def _unet_keeping_mid(unet: UNet2DModel, sink: list[torch.Tensor]) -> UNet2DModel:
    """A view of ``unet`` for one call: the same blocks and weights, but its mid block also appends its output
    (the h map) to ``sink``.

    Why a per-call view and not a forward hook: a hook sits on the shared mid block and fires for every caller's
    forward while it is registered, so two threads predicting on one prior would collect each other's h. The view
    is a shallow copy with its own table of child modules; nothing is left on ``unet`` afterwards (a training loop
    deep-copies the UNet for its EMA, and the saved weights keep their names).
    """
    view = copy.copy(unet)
    view._modules = {**unet._modules, "mid_block": _KeepOutput(unet.mid_block, sink)}
    return view


class DiffusionPrior:
    """A frozen unconditional image diffusion model used as a measuring instrument, never trained here."""

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler, source: str = "in-memory") -> None:
        if unet.mid_block is None:
            raise PriorLoadError(f"{source}: the UNet has no mid block, so there is no h-space to compare")
        if unet.config.in_channels != 3 or unet.config.out_channels not in (3, 6):
            raise PriorLoadError(
                f"{source}: expected an RGB image UNet (3 input channels, 3 or 6 outputs), got "
                f"{unet.config.in_channels} in / {unet.config.out_channels} out"
            )
        prediction = scheduler.config.get("prediction_type", "epsilon")
        if prediction not in ("epsilon", "v_prediction", "sample"):
            raise PriorLoadError(f"{source}: unsupported prediction_type {prediction!r}")
        # channels_last: measured faster for a forward + backward on a CPU (oneDNN's NHWC convolutions; figure in
        # bench/results/figures-from-comments.md), and the layout tensor cores want on a GPU.
        self.unet = unet.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        self.scheduler = scheduler
        self.source = source
        self.prediction_type = prediction
        # float64 from the betas, as guided-diffusion computes them: a float32 a_t near t = 0 loses the digits of
        # 1 - a_t (schedule.coefficients takes the square roots in float64 too)
        self.alphas_cumprod = torch.cumprod(1 - scheduler.betas.double(), dim=0)
        self.size_multiple = 2 ** (len(unet.config.block_out_channels) - 1)
        # Where a dose should draw t by default (diffloss.prior_band): measured when the prior was installed;
        # None (a hub or converted prior) means the whole schedule.
        self.band: Band | None = None

    # ----------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, source: str | Path, device: str | torch.device = "cpu") -> "DiffusionPrior":
        """Load from a local diffusers folder (model or pipeline layout) or a Hugging Face hub id (online)."""
        path = Path(source).expanduser()
        if path.exists():
            return cls._from_folder(path).to(device)
        if str(source).startswith((".", "/", "~")) or str(source).count("/") != 1:
            raise PriorLoadError(f"prior folder not found: {source} (and it does not look like a hub id 'owner/name')")
        return cls._from_hub(str(source)).to(device)

    @classmethod
    def _from_folder(cls, root: Path) -> "DiffusionPrior":
        from diffusers import DDPMScheduler, UNet2DModel

        unet_dir = _find_component(root, "config.json", "unet")
        if unet_dir is None:
            raise PriorLoadError(f"{root}: no UNet2DModel found (looked for config.json in {root} and {root / 'unet'})")
        try:
            unet = UNet2DModel.from_pretrained(unet_dir, **QUIET_LOAD)
        except (OSError, ValueError, KeyError, RuntimeError, json.JSONDecodeError) as err:
            raise PriorLoadError(f"{unet_dir}: not a loadable diffusers UNet2DModel ({err})") from err
        sched_dir = _find_component(root, SCHEDULER_FILE, "scheduler")
        if sched_dir is None:
            raise PriorLoadError(
                f"{root}: no {SCHEDULER_FILE} (looked in {root} and {root / 'scheduler'}); the noise schedule must "
                "match the one the UNet was trained with, so it is never guessed"
            )
        scheduler = DDPMScheduler.from_pretrained(sched_dir)
        prior = cls(unet, scheduler, source=str(root))
        try:
            prior.band = read_band(unet_dir)
        except ValueError as err:
            raise PriorLoadError(f"{root}: {err}") from err
        return prior

    @classmethod
    def _from_hub(cls, repo_id: str) -> "DiffusionPrior":
        from diffusers import DDPMScheduler, UNet2DModel

        errors = []
        for subfolder in (None, "unet"):
            try:
                unet = UNet2DModel.from_pretrained(repo_id, subfolder=subfolder, **QUIET_LOAD)
                sched_sub = None if subfolder is None else "scheduler"
                scheduler = DDPMScheduler.from_pretrained(repo_id, subfolder=sched_sub)
                return cls(unet, scheduler, source=repo_id)
            except (OSError, ValueError) as err:
                errors.append(f"{repo_id}{'/' + subfolder if subfolder else ''}: {err.__class__.__name__}")
        raise PriorLoadError(
            f"could not load prior {repo_id!r} from the Hugging Face hub (offline, or not a UNet2DModel repo). "
            f"Looked for config.json + weights at the repo root and in unet/: {'; '.join(errors)}. "
            "Use a local folder such as pretrained/prior instead."
        )

    def save_pretrained(self, folder: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Save UNet + scheduler into one folder, the layout ``from_pretrained`` reads back.

        ``dtype`` (``torch.float16``) stores the floating-point weights smaller; loading computes in float32."""
        folder = Path(folder)
        self.unet.to(memory_format=torch.contiguous_format)  # safetensors stores plain contiguous tensors
        try:
            self.unet.save_pretrained(folder)
        finally:
            self.unet.to(memory_format=torch.channels_last)
        # diffusers writes where a loaded model came from into its config: a server path that a saved copy (a
        # Train run's download, pretrained/) must not carry.
        config_file = folder / "config.json"
        config = json.loads(config_file.read_text())
        if config.pop("_name_or_path", None) is not None:
            checkpoint.atomic_write_json(config_file, config)
        if dtype is not None:
            for weights in folder.glob("*.safetensors"):
                checkpoint.atomic_save_tensors(weights, checkpoint.stored_as(checkpoint.load_tensors(weights), dtype),
                                               metadata={"format": "pt"})
        self.scheduler.save_pretrained(folder)
        if self.band is not None:
            write_band(folder, self.band)
        return folder

    def t_band(self) -> tuple[int, int]:
        """The inclusive timestep range a dose draws from by default: the stored band, else the whole schedule."""
        last = self.num_timesteps - 1
        return (0, last) if self.band is None else self.band.clipped(self.num_timesteps)

    def to(self, device: str | torch.device) -> "DiffusionPrior":
        self.unet.to(device)
        self.alphas_cumprod = self.alphas_cumprod.to(device)
        return self

    # ------------------------------------------------------------------------------------------------ basics
    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def num_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.unet.parameters())

    def h_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """Shape (C, h, w) of the h-space map for an image of this size."""
        f = self.size_multiple
        return (self.unet.config.block_out_channels[-1], -(-height // f), -(-width // f))

    def _timesteps(self, t: torch.Tensor | int, n: int) -> torch.Tensor:
        t = torch.as_tensor(t, device=self.device).long().reshape(-1)
        if t.numel() == 1:
            t = t.expand(n)
        if t.numel() != n:
            raise ValueError(f"got {t.numel()} timesteps for a batch of {n}")
        if int(t.min()) < 0 or int(t.max()) >= self.num_timesteps:
            raise ValueError(f"timesteps must lie in [0, {self.num_timesteps - 1}], got {t.tolist()}")
        return t

    # ------------------------------------------------------------------------------------------------- maths
    def add_noise(self, x01: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor) -> torch.Tensor:
        """x_t on the model scale: sqrt(a_t) x + sqrt(1-a_t) eps, with x = 2*x01 - 1."""
        t = self._timesteps(t, x01.shape[0])
        return schedule.add_noise(schedule.to_model_range(x01), eps, t, self.alphas_cumprod)

    def predict(self, x_t: torch.Tensor, t: torch.Tensor | int) -> PriorOutput:
        """Noise prediction and mid-block features for a noised batch of any size.

        Gradients flow to ``x_t`` when the caller enables them: the prior's *weights* are frozen, its function
        is not, and that is exactly what makes DiffLoss a loss.
        """
        n, _, height, width = x_t.shape
        t = self._timesteps(t, n)
        captured: list[torch.Tensor] = []  # this call's own: concurrent callers never share it
        padded = _pad_to_multiple(x_t, self.size_multiple).contiguous(memory_format=torch.channels_last)
        out = _unet_keeping_mid(self.unet, captured)(padded, t).sample
        out = out[:, :3, :height, :width]
        _, hh, hw = self.h_shape(height, width)
        h = captured[0][..., :hh, :hw]
        return PriorOutput(eps=self._as_eps(out, x_t, t), h=h)

    def _as_eps(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Convert v- or x0-prediction models to epsilon so the loss always compares noise predictions."""
        if self.prediction_type == "epsilon":
            return out
        sqrt_a, sqrt_1ma = schedule.coefficients(self.alphas_cumprod, t, x_t)
        if self.prediction_type == "v_prediction":
            return sqrt_a * out + sqrt_1ma * x_t
        return (x_t - sqrt_a * out) / sqrt_1ma

    @torch.no_grad()
    def view(self, x01: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor) -> PriorView:
        """Noise, predict and estimate x0 in one go, for visualisation (no gradient)."""
        t = self._timesteps(t, x01.shape[0])
        x_t = self.add_noise(x01, t, eps)
        return self.view_of(x_t, t, eps, self.predict(x_t, t))

    @torch.no_grad()
    def view_of(self, x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor, out: PriorOutput) -> PriorView:
        """The view from a prediction already made (e.g. by the loss), so showing it costs no second forward."""
        t = self._timesteps(t, x_t.shape[0])
        x_t, eps_hat, h = x_t.detach(), out.eps.detach(), out.h.detach()
        x0 = schedule.x0_from_eps(x_t, eps_hat, t, self.alphas_cumprod).clamp(-1, 1)
        return PriorView(
            x_t=schedule.to_unit_range(x_t).clamp(0, 1), eps=eps, eps_hat=eps_hat,
            x0_hat=schedule.to_unit_range(x0), h=h,
        )

    @torch.no_grad()
    def purify(
        self, x01: torch.Tensor, t_start: int, num_steps: int = 10, generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Noise to ``t_start`` and walk back to 0 with DDIM: what the prior believes the image should be."""
        eps = torch.randn(x01.shape, generator=generator, device="cpu").to(x01.device, x01.dtype)
        return self._ddim_walk(self.add_noise(x01, t_start, eps), t_start, num_steps)

    def _ddim_walk(self, x: torch.Tensor, t_start: int, num_steps: int) -> torch.Tensor:
        """Deterministic DDIM from a noised batch at ``t_start`` down to a clean image in [0,1]."""
        steps = schedule.ddim_timesteps(t_start, num_steps)
        for i, t in enumerate(steps):
            t_prev = steps[i + 1] if i + 1 < len(steps) else -1
            tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
            x = schedule.ddim_step(x, self.predict(x, tt).eps, tt, torch.full_like(tt, t_prev), self.alphas_cumprod)
        return schedule.to_unit_range(x).clamp(0, 1)

    @torch.no_grad()
    def sample(self, n: int, height: int, width: int, num_steps: int = 50,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Unconditional DDIM samples from pure noise: the quickest look at what the prior has learnt."""
        x = torch.randn((n, 3, height, width), generator=generator).to(self.device)
        return self._ddim_walk(x, self.num_timesteps - 1, num_steps)


@dataclass(frozen=True)
class PriorArchConfig:
    """Shape of a prior trained by this project: attention only at the lowest resolution.

    Why: attention at high resolution is the cost trap of a diffusion loss (a small prior with attention at 1/4
    resolution was slow even on a GPU: bench/results/figures-from-comments.md); convolutions carry the texture
    statistics.
    """

    block_out_channels: tuple[int, ...] = (64, 128, 192, 256)
    layers_per_block: int = 2
    attention_head_dim: int = 32
    norm_num_groups: int = 32
    sample_size: int = 64
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"

    def build(self) -> "DiffusionPrior":
        """A randomly initialised prior of this shape (for training, tests and benchmarks)."""
        from diffusers import DDPMScheduler, UNet2DModel

        levels = len(self.block_out_channels)
        unet = UNet2DModel(
            sample_size=self.sample_size,
            in_channels=3,
            out_channels=3,
            block_out_channels=tuple(self.block_out_channels),
            layers_per_block=self.layers_per_block,
            down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
            up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1),
            attention_head_dim=self.attention_head_dim,
            norm_num_groups=self.norm_num_groups,
        )
        scheduler = DDPMScheduler(num_train_timesteps=self.num_train_timesteps, beta_schedule=self.beta_schedule)
        return DiffusionPrior(unet, scheduler, source="random-init")


PRIOR_PRESETS: dict[str, PriorArchConfig] = {
    # Trains on a GPU in minutes; the shipped prior when a GPU built the zoo.
    "base": PriorArchConfig(),
    # Small enough to learn something on 2 CPU cores in a few hours.
    "small": PriorArchConfig(block_out_channels=(32, 64, 128, 128), layers_per_block=1, attention_head_dim=32,
                             norm_num_groups=16),
    # For tests: builds and runs in milliseconds.
    "tiny": PriorArchConfig(block_out_channels=(16, 32), layers_per_block=1, attention_head_dim=8,
                            norm_num_groups=8, sample_size=16, num_train_timesteps=100),
}
