"""Convert a guided-diffusion (ADM, Dhariwal & Nichol 2021) checkpoint into a diffusers prior folder.

Why: the DiffLoss paper measured its loss through ADM's 256x256 unconditional model, which is published as a bare
PyTorch state dict in guided-diffusion's own layout. ``DiffusionPrior`` reads diffusers folders
(``UNet2DModel`` + ``DDPMScheduler``), so this module rewrites the weights once, offline::

    python -m diffloss.convert_adm 256x256_diffusion_uncond.pt pretrained/adm256 --preset 256-uncond
    python -m diffloss.convert_adm model.pt out/ --config "--image_size 256 --num_channels 256 ..."  # its MODEL_FLAGS

A flag ``--config`` leaves out takes guided-diffusion's own default (``script_util.model_and_diffusion_defaults``:
num_heads=4 and no num_head_channels, learn_sigma=False, ...), as its scripts would; flags that do not change the
network (``use_fp16``, ``dropout``, ...) are accepted and noted; what diffusers' ``UNet2DModel`` cannot express
(per-layer head widths, ``num_heads_upsample`` != ``num_heads``, ``channel_mult`` not starting at 1, convolutional
up/down sampling) is refused with the reason, before any weight is read. Checked against guided-diffusion's own
``create_model`` (random weights, every parameter re-randomised): eps within 3e-6 and h within 2.3e-6 relative.

How the two architectures line up (each point is checked numerically by tests/test_convert_adm.py against a
reference ADM forward written from the published architecture, and against guided-diffusion's own code when it
is importable):

- timestep embedding: ADM's ``[cos, sin]`` of ``t * 10000^(-i/half)`` is diffusers' ``Timesteps`` with
  ``flip_sin_to_cos=True, freq_shift=0``; ``time_embed.0/2`` are ``time_embedding.linear_1/2``. Both see the
  integer t in [0, T-1] (guided-diffusion's default ``rescale_timesteps=False``, as its released models use).
- ResBlock (``in_layers`` norm/SiLU/conv, ``emb_layers``, ``out_layers``, ``skip_connection``) is
  ``ResnetBlock2D`` (norm1/conv1, time_emb_proj, norm2/conv2, conv_shortcut); ADM's scale-shift norm is
  ``resnet_time_scale_shift="scale_shift"``; a ResBlock with ``up``/``down`` (``resblock_updown``) is a
  ``ResnetBlock2D(up=True / down=True)``, i.e. ``*_type="resnet"``, both nearest-x2 / 2x2 average pooling on the
  residual and the skip path alike.
- AttentionBlock: ``qkv`` is one 1x1 Conv1d whose output channels ADM's default ``QKVAttentionLegacy`` reads per
  head as ``[q_h, k_h, v_h]`` blocks, so the weight is reshaped to (heads, 3, head_dim, C) before it is split
  into ``to_q/to_k/to_v``; a plain three-way split would mix heads (the new attention order *is* a plain split).
  ``proj_out`` is ``to_out.0``; ``norm`` is the attention's ``group_norm``. ADM's scale ``1/sqrt(sqrt(d))`` on q
  and on k equals diffusers' ``1/sqrt(d)`` on the product.
- The middle block (ResBlock, AttentionBlock, ResBlock) is ``UNetMidBlock2D``. With scale-shift norm diffusers
  drops the mid attention's GroupNorm unless ``attn_norm_num_groups`` is given, so it is set to ADM's 32.
- Learned sigma: ADM outputs 6 channels (noise, then the variance interpolation); ``DiffusionPrior`` uses the
  first 3 as the noise prediction.

h-space: the paper's h is the output of ADM's ``middle_block`` (the bottleneck after the mid ResBlock-Attention-
ResBlock, 1024 channels at 1/32 resolution for ADM-256). ``DiffusionPrior`` takes h with a forward hook on
``unet.mid_block``, which after this conversion holds exactly those three modules with ADM's weights (the same
input: the last down block's output; the same output: what the up path reads). Evidence: the tests compare that
hook's output with the reference ADM's ``middle_block`` output element-wise (to 1e-5, three small layouts, several t
and sizes, and through ``DiffusionPrior.predict``); the full 256-uncond shape with random weights matched to 1.3e-5
on h and 6.6e-6 on eps (values up to 5.5 and 2.0: float32 rounding through 553 M parameters).

Schedule: ADM's linear schedule (betas from 1e-4 to 0.02 scaled by 1000/T, T=1000) is diffusers' ``"linear"``
``DDPMScheduler`` with the same end points; the cosine schedule is diffusers' ``"squaredcos_cap_v2"``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

if TYPE_CHECKING:
    from diffusers import DDPMScheduler, UNet2DModel

    from diffloss.prior import DiffusionPrior

ADM_NORM_GROUPS = 32  # ADM's GroupNorm32: always 32 groups
ADM_CONFIG_FILE = "adm_config.json"  # written beside the converted weights: where they came from
# ADM schedule name -> diffusers beta_schedule (both give the same betas; see scheduler_config).
NOISE_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


@dataclass(frozen=True)
class ADMConfig:
    """guided-diffusion's model flags (same names as its ``MODEL_FLAGS``) for the UNets this converter handles.

    The defaults are the paper's model (``ADM_PRESETS["256-uncond"]``); guided-diffusion's own defaults, which a
    ``--config`` that omits a flag gets, are :data:`GUIDED_DIFFUSION_DEFAULTS` (see :func:`config_from_flags`).
    """

    image_size: int = 256
    num_channels: int = 256
    num_res_blocks: int = 2
    channel_mult: tuple[float, ...] = (1, 1, 2, 2, 4, 4)
    attention_resolutions: tuple[int, ...] = (32, 16, 8)
    num_heads: int = 4
    num_head_channels: int = 64  # -1: use num_heads instead
    num_heads_upsample: int = -1  # -1: num_heads (the up path's heads; only counts when num_head_channels is -1)
    learn_sigma: bool = True
    resblock_updown: bool = True
    use_scale_shift_norm: bool = True
    use_new_attention_order: bool = False
    class_cond: bool = False
    diffusion_steps: int = 1000
    noise_schedule: str = "linear"
    predict_xstart: bool = False  # the model outputs x0 instead of the noise (diffusers: prediction_type "sample")
    rescale_timesteps: bool = False  # the model saw t * 1000 / diffusion_steps

    def __post_init__(self) -> None:
        problems = []
        if self.class_cond:
            problems.append("class_cond=True: a class-conditional model is not a prior of natural images; "
                            "use an unconditional checkpoint")
        if not self.resblock_updown:
            problems.append("resblock_updown=False (guided-diffusion's default: convolutional up/down sampling) is "
                            "not supported; the paper's model and the other released ADM checkpoints set it True")
        if self.noise_schedule not in NOISE_SCHEDULES:
            problems.append(f"noise_schedule {self.noise_schedule!r} is not one of {sorted(NOISE_SCHEDULES)}")
        if self.channel_mult and self.channel_mult[0] != 1:
            problems.append(
                f"channel_mult starts at {self.channel_mult[0]:g}, not 1: ADM's timestep embedding is num_channels="
                f"{self.num_channels} wide while its first level has {self.level_channels[0]} channels, and diffusers' "
                "UNet2DModel makes the embedding as wide as the first level, so the converted network would differ")
        if self.rescale_timesteps and self.diffusion_steps != 1000:
            problems.append(f"rescale_timesteps=True with diffusion_steps={self.diffusion_steps}: the model saw t "
                            f"scaled by {1000 / self.diffusion_steps:g}, which diffusers' UNet2DModel cannot apply")
        if self.num_head_channels == -1 and self.num_heads_upsample not in (-1, self.num_heads):
            problems.append(f"num_heads_upsample={self.num_heads_upsample} differs from num_heads={self.num_heads}: "
                            "the up path's attention would split into other head widths than the down path's, and "
                            "diffusers' UNet2DModel has one head width for all its attention layers")
        bad = [c for c in self.level_channels if c % ADM_NORM_GROUPS]
        if bad:
            problems.append(f"channel counts {bad} are not multiples of ADM's {ADM_NORM_GROUPS} norm groups")
        if not problems:
            try:
                self.head_dim
            except ValueError as err:
                problems.append(str(err))
        if problems:
            raise ValueError("unsupported ADM config: " + "; ".join(problems))

    @property
    def level_channels(self) -> tuple[int, ...]:
        return tuple(int(self.num_channels * m) for m in self.channel_mult)  # guided-diffusion's int(mult * ch)

    def has_attention(self, level: int) -> bool:
        """ADM puts attention where the downsampling factor 2**level is image_size // some attention resolution."""
        return 2**level in {self.image_size // r for r in self.attention_resolutions}

    @property
    def head_dim(self) -> int:
        """diffusers' UNet2DModel has one head width for all its attention layers: ADM's must be one too."""
        if self.num_head_channels != -1:
            return self.num_head_channels
        widths = {c // self.num_heads for i, c in enumerate(self.level_channels) if self.has_attention(i)}
        widths.add(self.level_channels[-1] // self.num_heads)  # the middle block always has attention
        if len(widths) != 1:
            raise ValueError(f"num_heads={self.num_heads} gives head widths {sorted(widths)} at different levels; "
                             "diffusers' UNet2DModel needs one head width")
        return widths.pop()

    @classmethod
    def from_dict(cls, values: dict) -> "ADMConfig":
        """From JSON-like values over this class's defaults (e.g. an ``adm_config.json`` record); tuples may be
        lists or guided-diffusion's comma strings ("32,16,8"). Unknown keys are refused, naming the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown ADM config keys {unknown}: not flags of a guided-diffusion UNet this converter "
                             f"reads (a typo, or another model's flag?); known keys: {sorted(known)}")
        parsed = dict(values)
        for key in ("channel_mult", "attention_resolutions"):
            if isinstance(parsed.get(key), str):
                parsed[key] = tuple(_number(v) for v in parsed[key].split(",") if v.strip())
            elif key in parsed:
                parsed[key] = tuple(_number(v) for v in parsed[key])
        return cls(**parsed)


def _number(value) -> int | float:
    """``"2"`` -> 2, ``"0.5"`` -> 0.5: channel_mult may hold 0.5 (guided-diffusion's 512 model)."""
    number = float(value)
    return int(number) if number.is_integer() else number


ADM_PRESETS: dict[str, ADMConfig] = {
    # openai/guided-diffusion 256x256_diffusion_uncond.pt: the DiffLoss paper's prior (~554 M parameters).
    "256-uncond": ADMConfig(),
}

# What guided-diffusion's scripts use for a flag the command line leaves out (script_util.py,
# model_and_diffusion_defaults and diffusion_defaults); "" channel_mult: chosen from image_size, as create_model does.
GUIDED_DIFFUSION_DEFAULTS: dict[str, object] = {
    "image_size": 64, "num_channels": 128, "num_res_blocks": 2, "num_heads": 4, "num_heads_upsample": -1,
    "num_head_channels": -1, "attention_resolutions": "16,8", "channel_mult": "", "class_cond": False,
    "use_scale_shift_norm": True, "resblock_updown": False, "use_new_attention_order": False,
    "learn_sigma": False, "diffusion_steps": 1000, "noise_schedule": "linear", "predict_xstart": False,
    "rescale_timesteps": False,
}
CHANNEL_MULT_BY_SIZE = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}
# guided-diffusion flags that change neither the weights' layout nor what the network computes: accepted, unused.
IGNORED_FLAGS: dict[str, str] = {
    "use_fp16": "the weights are read and written in float32 whatever precision guided-diffusion ran them in",
    "use_checkpoint": "gradient checkpointing saves memory in training; the network is the same",
    "dropout": "dropout acts in training only; the prior runs in eval mode",
    "timestep_respacing": "respacing is a sampling shortcut; the prior keeps the full schedule",
    "use_kl": "a training loss choice; the network is the same",
    "rescale_learned_sigmas": "a training loss choice; the network is the same",
}


def _flag_value(key: str, value: object) -> object:
    """A flag's value as guided-diffusion's argparse would read it (``"True"``, ``"32,16,8"``, ``"256"``)."""
    kind = type(GUIDED_DIFFUSION_DEFAULTS.get(key, ""))
    if not isinstance(value, str) or kind is str:
        return value
    if kind is bool:
        if value.lower() in ("yes", "true", "t", "y", "1"):
            return True
        if value.lower() in ("no", "false", "f", "n", "0"):
            return False
        raise ValueError(f"{key}: expected a boolean (True/False), got {value!r}")
    try:
        return kind(value)
    except ValueError as err:
        raise ValueError(f"{key}: expected {kind.__name__}, got {value!r}") from err


def parse_flag_string(text: str) -> dict[str, str]:
    """guided-diffusion's ``MODEL_FLAGS`` as written in its README (``--image_size 256 --learn_sigma True ...``)."""
    words = text.split()
    if len(words) % 2 or not all(w.startswith("--") for w in words[::2]):
        raise ValueError("flags must come as pairs '--name value', e.g. '--image_size 256 --learn_sigma True'")
    return {name[2:]: value for name, value in zip(words[::2], words[1::2])}


def config_from_flags(values: dict, base: ADMConfig | None = None) -> tuple[ADMConfig, list[str]]:
    """(config, notes) from guided-diffusion flags: a flag left out takes ``base``'s value, else guided-diffusion's
    own default (:data:`GUIDED_DIFFUSION_DEFAULTS`: num_heads=4 and no num_head_channels, for instance). Flags
    that do not change the network (``use_fp16``, ...) are accepted and named in the notes; anything else unknown
    is refused with the reason."""
    notes, flags = [], {}
    for key, value in values.items():
        if key in IGNORED_FLAGS:
            notes.append(f"{key}={value} ignored: {IGNORED_FLAGS[key]}")
        else:
            flags[key] = _flag_value(key, value)
    known = set(GUIDED_DIFFUSION_DEFAULTS)
    unknown = sorted(set(flags) - known)
    if unknown:
        raise ValueError(f"unknown ADM config keys {unknown}: not a guided-diffusion model or diffusion flag this "
                         f"converter reads (a typo, or a flag of another model?); known: {sorted(known)}, and "
                         f"accepted without effect: {sorted(IGNORED_FLAGS)}")
    start = asdict(base) if base is not None else dict(GUIDED_DIFFUSION_DEFAULTS)
    merged = {**start, **flags}
    if merged.get("channel_mult") in ("", (), None):
        size = int(merged["image_size"])
        if size not in CHANNEL_MULT_BY_SIZE:
            raise ValueError(f"no channel_mult given and guided-diffusion has none for image_size {size} "
                             f"(it has {sorted(CHANNEL_MULT_BY_SIZE)}); give channel_mult")
        merged["channel_mult"] = CHANNEL_MULT_BY_SIZE[size]
    if int(merged.get("num_head_channels", -1)) != -1 and int(merged.get("num_heads_upsample", -1)) not in (
            -1, int(merged.get("num_heads", 4))):
        notes.append(f"num_heads_upsample={merged['num_heads_upsample']} has no effect with num_head_channels="
                     f"{merged['num_head_channels']} (heads = channels // num_head_channels), as in guided-diffusion")
        merged["num_heads_upsample"] = -1
    return ADMConfig.from_dict(merged), notes


# ------------------------------------------------------------------------------------------------- configs
def unet_config(cfg: ADMConfig) -> dict:
    """``UNet2DModel`` keyword arguments reproducing this ADM architecture."""
    levels = range(len(cfg.channel_mult))
    down = tuple("AttnDownBlock2D" if cfg.has_attention(i) else "ResnetDownsampleBlock2D" for i in levels)
    up = tuple("AttnUpBlock2D" if cfg.has_attention(i) else "ResnetUpsampleBlock2D" for i in reversed(levels))
    return dict(
        sample_size=cfg.image_size,
        in_channels=3,
        out_channels=6 if cfg.learn_sigma else 3,
        flip_sin_to_cos=True,
        freq_shift=0,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=cfg.level_channels,
        layers_per_block=cfg.num_res_blocks,
        downsample_type="resnet",
        upsample_type="resnet",
        attention_head_dim=cfg.head_dim,
        norm_num_groups=ADM_NORM_GROUPS,
        attn_norm_num_groups=ADM_NORM_GROUPS,
        norm_eps=1e-5,
        resnet_time_scale_shift="scale_shift" if cfg.use_scale_shift_norm else "default",
    )


def scheduler_config(cfg: ADMConfig) -> dict:
    """``DDPMScheduler`` arguments for ADM's schedule: linear betas 1e-4..0.02 scaled by 1000/T (or cosine)."""
    scale = 1000 / cfg.diffusion_steps
    return dict(
        num_train_timesteps=cfg.diffusion_steps,
        beta_schedule=NOISE_SCHEDULES[cfg.noise_schedule],
        beta_start=scale * 1e-4,
        beta_end=scale * 0.02,
        prediction_type="sample" if cfg.predict_xstart else "epsilon",
        variance_type="learned_range" if cfg.learn_sigma else "fixed_small",
        clip_sample=True,
    )


# ------------------------------------------------------------------------------------------ key mapping
Transform = Callable[[torch.Tensor], torch.Tensor]

RESBLOCK_KEYS = {  # ADM ResBlock sub-module -> ResnetBlock2D sub-module
    "in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut",
}


def _block_pairs(cfg: ADMConfig) -> list[tuple[str, str, str]]:
    """(ADM prefix, diffusers prefix, "res" | "attn") for every block, in guided-diffusion's construction order."""
    pairs: list[tuple[str, str, str]] = []
    last = len(cfg.channel_mult) - 1
    index = 1  # input_blocks.0 is the input convolution
    for level in range(last + 1):
        for j in range(cfg.num_res_blocks):
            pairs.append((f"input_blocks.{index}.0", f"down_blocks.{level}.resnets.{j}", "res"))
            if cfg.has_attention(level):
                pairs.append((f"input_blocks.{index}.1", f"down_blocks.{level}.attentions.{j}", "attn"))
            index += 1
        if level != last:
            pairs.append((f"input_blocks.{index}.0", f"down_blocks.{level}.downsamplers.0", "res"))
            index += 1
    pairs += [("middle_block.0", "mid_block.resnets.0", "res"), ("middle_block.1", "mid_block.attentions.0", "attn"),
              ("middle_block.2", "mid_block.resnets.1", "res")]
    index = 0
    for i, level in enumerate(reversed(range(last + 1))):
        for j in range(cfg.num_res_blocks + 1):
            pairs.append((f"output_blocks.{index}.0", f"up_blocks.{i}.resnets.{j}", "res"))
            sub = 1
            if cfg.has_attention(level):
                pairs.append((f"output_blocks.{index}.1", f"up_blocks.{i}.attentions.{j}", "attn"))
                sub = 2
            if level != 0 and j == cfg.num_res_blocks:
                pairs.append((f"output_blocks.{index}.{sub}", f"up_blocks.{i}.upsamplers.0", "res"))
            index += 1
    return pairs


def _squeeze_1x1(w: torch.Tensor) -> torch.Tensor:
    """A Conv1d weight (out, in, 1) as the Linear weight (out, in) diffusers' attention uses; biases unchanged."""
    return w[..., 0] if w.dim() == 3 else w


def _qkv_part(part: int, head_dim: int, new_order: bool) -> Transform:
    """Select q (0), k (1) or v (2) from ADM's fused qkv weight or bias (3C, C, 1) / (3C,).

    Legacy order lays out channels per head as [q_h, k_h, v_h]; the new order as [q, k, v], each per head.
    The weight's trailing 1x1 is dropped: diffusers' projections are Linear layers.
    """
    def select(w: torch.Tensor) -> torch.Tensor:
        rest = w.shape[1:]  # (C, 1) for the weight, () for the bias
        heads = w.shape[0] // (3 * head_dim)
        grouped = w.reshape(3, heads, head_dim, *rest) if new_order else w.reshape(heads, 3, head_dim, *rest)
        chosen = grouped[part] if new_order else grouped[:, part]
        return chosen.reshape(heads * head_dim, *rest[:1]).contiguous()
    return select


def _identity(w: torch.Tensor) -> torch.Tensor:
    return w


def key_plan(cfg: ADMConfig) -> dict[str, tuple[str, Transform]]:
    """diffusers key -> (ADM key, transform) for every tensor a converted UNet can hold.

    ResBlocks list ``conv_shortcut`` for every block; only blocks whose channel count changes have one (in both
    layouts), and ``convert_state_dict`` keeps the entries that the target model actually has.
    """
    plan: dict[str, tuple[str, Transform]] = {
        "conv_in.weight": ("input_blocks.0.0.weight", _identity), "conv_in.bias": ("input_blocks.0.0.bias", _identity),
        "conv_norm_out.weight": ("out.0.weight", _identity), "conv_norm_out.bias": ("out.0.bias", _identity),
        "conv_out.weight": ("out.2.weight", _identity), "conv_out.bias": ("out.2.bias", _identity),
    }
    for adm, new in (("time_embed.0", "time_embedding.linear_1"), ("time_embed.2", "time_embedding.linear_2")):
        for p in ("weight", "bias"):
            plan[f"{new}.{p}"] = (f"{adm}.{p}", _identity)
    for adm, new, kind in _block_pairs(cfg):
        for p in ("weight", "bias"):
            if kind == "res":
                for adm_sub, new_sub in RESBLOCK_KEYS.items():
                    plan[f"{new}.{new_sub}.{p}"] = (f"{adm}.{adm_sub}.{p}", _identity)
                continue
            plan[f"{new}.group_norm.{p}"] = (f"{adm}.norm.{p}", _identity)
            plan[f"{new}.to_out.0.{p}"] = (f"{adm}.proj_out.{p}", _squeeze_1x1)
            for part, name in enumerate(("to_q", "to_k", "to_v")):
                select = _qkv_part(part, cfg.head_dim, cfg.use_new_attention_order)
                plan[f"{new}.{name}.{p}"] = (f"{adm}.qkv.{p}", select)
    return plan


def _expected_adm_shape(new_key: str, target: torch.Size, adm_key: str) -> tuple[int, ...]:
    """The shape the ADM tensor must have to become ``target`` (attention convs carry a trailing 1)."""
    is_weight = new_key.endswith(".weight")
    if ".qkv." in adm_key:
        return (3 * target[0], target[1], 1) if is_weight else (3 * target[0],)
    if ".proj_out." in adm_key and is_weight:
        return (*target, 1)
    return tuple(target)


def _listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def target_shapes(cfg: ADMConfig) -> dict[str, torch.Size]:
    """Every tensor of the diffusers UNet for ``cfg``, built on the meta device (no memory, no weights)."""
    from diffusers import UNet2DModel

    with torch.device("meta"):
        model = UNet2DModel(**unet_config(cfg))
    return {k: v.shape for k, v in model.state_dict().items()}


def convert_state_dict(adm: dict[str, torch.Tensor], cfg: ADMConfig) -> dict[str, torch.Tensor]:
    """ADM state dict -> diffusers ``UNet2DModel`` state dict (float32), refusing anything that does not fit.

    Raises ValueError naming the missing and unexpected ADM keys and every tensor whose shape differs from the
    one ``cfg`` implies, so a wrong preset or a truncated file is caught before any weight is written.
    """
    shapes = target_shapes(cfg)
    plan = {new: src for new, src in key_plan(cfg).items() if new in shapes}
    unplanned = sorted(set(shapes) - set(plan))
    if unplanned:  # the plan and diffusers disagree: a converter bug, never the user's file
        raise RuntimeError(f"no ADM source for diffusers keys {_listing(unplanned)}")
    needed = {adm_key for adm_key, _ in plan.values()}
    missing, unexpected = sorted(needed - set(adm)), sorted(set(adm) - needed)
    expected_shape = {adm_key: _expected_adm_shape(new, shapes[new], adm_key) for new, (adm_key, _) in plan.items()}
    mismatched = [f"{k} {tuple(adm[k].shape)} (expected {expected_shape[k]})" for k in sorted(expected_shape)
                  if k in adm and tuple(adm[k].shape) != expected_shape[k]]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            hint = " (label_emb: a class-conditional model)" if any(k.startswith("label_emb") for k in unexpected) \
                else ""
            problems.append(f"unexpected keys{hint}: {_listing(unexpected)}")
        if mismatched:
            problems.append(f"mismatched shapes: {_listing(mismatched)}")
        raise ValueError(f"this state dict does not fit the ADM config ({_config_summary(cfg)}): "
                         + "; ".join(problems))
    return {new: transform(adm[adm_key]).to(torch.float32).contiguous() for new, (adm_key, transform) in plan.items()}


def _config_summary(cfg: ADMConfig) -> str:
    return (f"{cfg.image_size}px, {cfg.num_channels} channels x {cfg.channel_mult}, {cfg.num_res_blocks} res blocks, "
            f"attention at {cfg.attention_resolutions}, learn_sigma={cfg.learn_sigma}")


# ---------------------------------------------------------------------------------------------- building
def build_unet(cfg: ADMConfig, adm: dict[str, torch.Tensor] | None = None) -> "UNet2DModel":
    """The diffusers UNet for ``cfg``: with ADM's weights when given, randomly initialised otherwise."""
    from diffusers import UNet2DModel

    unet = UNet2DModel(**unet_config(cfg))
    if adm is not None:
        unet.load_state_dict(convert_state_dict(adm, cfg), strict=True)
    return unet


def build_scheduler(cfg: ADMConfig) -> "DDPMScheduler":
    from diffusers import DDPMScheduler

    return DDPMScheduler(**scheduler_config(cfg))


def build_prior(cfg: ADMConfig, adm: dict[str, torch.Tensor] | None = None,
                source: str = "converted ADM") -> "DiffusionPrior":
    """A ``DiffusionPrior`` of this ADM shape (random weights when ``adm`` is None: benchmarks and tests)."""
    from diffloss.prior import DiffusionPrior

    return DiffusionPrior(build_unet(cfg, adm), build_scheduler(cfg), source=source)


def load_adm_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a guided-diffusion checkpoint without running pickled code (``weights_only=True``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or EOFError for foreign or broken files
        raise ValueError(f"{path}: not a plain PyTorch state dict that loads with weights_only=True ({err})") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a dict of tensors (a guided-diffusion state dict), "
                         f"got {type(state).__name__}")
    return state


def convert_checkpoint(checkpoint: str | Path, out_dir: str | Path, cfg: ADMConfig,
                       notes: list[str] | None = None) -> Path:
    """Checkpoint file -> diffusers folder (safetensors UNet + scheduler) that ``DiffusionPrior`` loads;
    ``notes`` (flags accepted without effect) are recorded beside the config."""
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output folder {out_dir} is a file")
    adm = load_adm_state_dict(checkpoint)
    prior = build_prior(cfg, adm, source=str(checkpoint))
    del adm
    out = prior.save_pretrained(out_dir)
    record = {"converted_from": Path(checkpoint).name, "adm_config": asdict(cfg), "notes": list(notes or [])}
    (out / ADM_CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return out


def _config_from_args(preset: str | None, config: str | None) -> tuple[ADMConfig, list[str]]:
    """--preset alone: that preset; --config: guided-diffusion flags over --preset's values, else over
    guided-diffusion's own defaults (what its scripts would build from the same flags)."""
    if config is None:
        return ADM_PRESETS[preset or "256-uncond"], []
    text = config.strip()
    if text.startswith("--"):
        values = parse_flag_string(text)
    else:
        if not text.startswith("{"):
            text = Path(config).expanduser().read_text()
        try:
            values = parse_flag_string(text) if text.lstrip().startswith("--") else json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"--config is neither a JSON object nor guided-diffusion flags ({err})") from err
    if not isinstance(values, dict):
        raise ValueError(f"--config must be a JSON object of flags, got {type(values).__name__}")
    return config_from_flags(values, ADM_PRESETS[preset] if preset else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffloss.convert_adm", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="guided-diffusion .pt state dict, e.g. 256x256_diffusion_uncond.pt")
    parser.add_argument("out_dir", help="folder to write (diffusers UNet2DModel + DDPMScheduler)")
    parser.add_argument("--preset", choices=sorted(ADM_PRESETS), default=None,
                        help="architecture of the checkpoint (default 256-uncond)")
    parser.add_argument("--config", default=None,
                        help="guided-diffusion's model flags as a JSON object, a file, or its MODEL_FLAGS string "
                             "('--image_size 256 --num_channels 256 ...'); a flag left out takes --preset's value, "
                             "else guided-diffusion's own default (e.g. num_heads=4, no num_head_channels)")
    args = parser.parse_args(argv)
    try:
        cfg, notes = _config_from_args(args.preset, args.config)
        for note in notes:
            print(f"note: {note}")
        out = convert_checkpoint(args.checkpoint, args.out_dir, cfg, notes)
    except (ValueError, OSError) as err:
        print(f"convert_adm: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} (use it as the prior: --prior {out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
