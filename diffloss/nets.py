"""Restorer architectures: one compact NAFNet-style UNet serves all six tasks (sr4 with its own block layout).

Why this shape: the restorer must run a 512x512 image within the CPU budget of ``bench/restorer_speed.py`` on two
CPU cores and stay under 2 M parameters, so the full resolution only sees a pixel (un)shuffle, every block is
depthwise conv + 1x1 convs with a multiplicative gate instead of activations (NAFNet, Chen et al. 2022), and the
width doubles as the resolution halves so each level costs about the same. The output is residual and the last conv
starts at zero, so an untrained restorer returns its RGB input unchanged and training starts from "do nothing".
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffloss.checkpoint import CheckpointError, load_model_folder, save_model_folder

KIND = "restorer"


# Bounds of a restorer config: the studio's restorers are width 32, 3 levels, 1.7 M parameters; these allow ~15x that.
MAX_WIDTH = 64
MAX_LEVELS = 4
MAX_BLOCKS = 8
MAX_BOTTOM_CHANNELS = 512


# Block layouts of the tasks that measured better with another than RestorerConfig's default (the rest use it).
# sr4 restores detail on the 4x smaller grid its photo came from, one level below the stem: two blocks on each side
# of that level, and the next, beat the default from the same start (bench/results/zoo-sr4-layout.md).
TASK_LAYOUTS: dict[str, dict[str, Any]] = {
    "sr4": {"enc_blocks": (0, 2, 2), "dec_blocks": (1, 2, 2), "middle_blocks": 1},
}


def _whole(value: Any, name: str) -> int:
    """``value`` as an int when it is a whole number (JSON may hold 32.0); ValueError naming the field otherwise."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value != int(value)):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def _sequence(value: Any, name: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list of block counts, got {value!r}")
    return tuple(value)


@dataclass
class RestorerConfig:
    """Architecture of a restorer; ``in_channels`` is 4 for inpaint (RGB + mask), 3 otherwise."""

    task: str = "noise"
    in_channels: int = 3
    out_channels: int = 3
    # Measured (400-step trials, noise / sr4): width 32 beat 24 by 0.3 / 0.05 dB; dropping the encoder block at
    # half resolution, where a block costs most, lost <= 0.06 dB and saved inference time.
    width: int = 32
    enc_blocks: tuple[int, ...] = (0, 1, 2)
    middle_blocks: int = 2
    dec_blocks: tuple[int, ...] = (1, 1, 1)

    def __post_init__(self) -> None:
        # JSON turns tuples into lists; normalise so configs compare equal after a round trip.
        self.enc_blocks = tuple(_whole(b, "a block count") for b in _sequence(self.enc_blocks, "enc_blocks"))
        self.dec_blocks = tuple(_whole(b, "a block count") for b in _sequence(self.dec_blocks, "dec_blocks"))
        if len(self.enc_blocks) != len(self.dec_blocks):
            raise ValueError(f"enc_blocks {self.enc_blocks} and dec_blocks {self.dec_blocks} need one entry per level")
        self._check_bounds()
        self.width, self.in_channels, self.out_channels, self.middle_blocks = (
            int(self.width), int(self.in_channels), int(self.out_channels), int(self.middle_blocks))
        if self.in_channels < self.out_channels:
            raise ValueError("the residual output adds the first out_channels input channels, so in >= out")

    def _check_bounds(self) -> None:
        """ValueError, saying which field and what is allowed, for a config no restorer of this studio has: checked
        before anything is built, so a crafted config.json (width 65536, 40 levels) costs nothing."""
        for name, value, low, high in (("width", self.width, 2, MAX_WIDTH), ("in_channels", self.in_channels, 1, 8),
                                       ("out_channels", self.out_channels, 1, 8),
                                       ("levels (entries of enc_blocks)", len(self.enc_blocks), 1, MAX_LEVELS),
                                       ("middle_blocks", self.middle_blocks, 0, MAX_BLOCKS)):
            if not low <= _whole(value, name) <= high:
                raise ValueError(f"{name} is {value}; a restorer has {low} to {high}")
        for name, blocks in (("enc_blocks", self.enc_blocks), ("dec_blocks", self.dec_blocks)):
            if any(not 0 <= b <= MAX_BLOCKS for b in blocks):
                raise ValueError(f"{name} is {list(blocks)}; each level has 0 to {MAX_BLOCKS} blocks")
        bottom = self.width * 2 ** len(self.enc_blocks)
        if bottom > MAX_BOTTOM_CHANNELS:
            raise ValueError(f"width {self.width} with {len(self.enc_blocks)} levels gives {bottom} channels at the "
                             f"lowest resolution; at most {MAX_BOTTOM_CHANNELS} (the width doubles at each level)")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["enc_blocks"] = list(self.enc_blocks)
        d["dec_blocks"] = list(self.dec_blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RestorerConfig":
        """Build from a dict, ignoring unknown keys (e.g. ``kind`` stored next to the config in config.json)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def multiple(self) -> int:
        """Input sides are padded to this: the stem halves once, every level halves again."""
        return 2 ** (len(self.enc_blocks) + 1)


class LayerNorm2d(nn.Module):
    """LayerNorm over channels, computed as a native layer_norm on an NHWC view (fast on channels_last)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


_LOADING = threading.local()  # set while this thread builds a restorer that a checkpoint then fills in


@contextlib.contextmanager
def _filled_from_checkpoint() -> Iterator[None]:
    """Convs built inside skip their random init: every weight is overwritten by ``load_state_dict(strict=True)``
    next, and drawing them first was a large part of a restorer's load time. This thread only: a restorer built
    meanwhile on another thread (a Train run) still gets its random init. Why not torch's meta-device loading
    (``torch.device("meta")`` + ``load_state_dict(assign=True)``): ``bench/restorer_load.py`` measured it slower
    than this skip (bench/results/restorer-load-cpu.json)."""
    _LOADING.active = True
    try:
        yield
    finally:
        _LOADING.active = False


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same state-dict keys) that skips its random init inside
    ``_filled_from_checkpoint``."""

    def reset_parameters(self) -> None:
        if not getattr(_LOADING, "active", False):
            super().reset_parameters()


def simple_gate(x: Tensor) -> Tensor:
    """NAFNet's SimpleGate: split channels in half and multiply; a nonlinearity with no activation function."""
    a, b = x.chunk(2, dim=1)
    return a * b


class NAFBlock(nn.Module):
    """Depthwise-conv mixing + simplified channel attention, then a gated 1x1 feed-forward; both residual."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(c)
        self.conv1 = Conv2d(c, 2 * c, 1)
        self.dwconv = Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.sca = Conv2d(c, c, 1)
        self.conv2 = Conv2d(c, c, 1)
        self.norm2 = LayerNorm2d(c)
        self.conv3 = Conv2d(c, 2 * c, 1)
        self.conv4 = Conv2d(c, c, 1)
        # NAFNet starts these at 0; a small nonzero start keeps every weight on the gradient path from step one.
        self.beta = nn.Parameter(torch.full((1, c, 1, 1), 0.1))
        self.gamma = nn.Parameter(torch.full((1, c, 1, 1), 0.1))

    def forward(self, x: Tensor) -> Tensor:
        y = simple_gate(self.dwconv(self.conv1(self.norm1(x))))
        y = y * self.sca(y.mean(dim=(2, 3), keepdim=True))
        x = x + self.conv2(y) * self.beta
        y = self.conv4(simple_gate(self.conv3(self.norm2(x))))
        return x + y * self.gamma


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad bottom and right so both sides are multiples: reflect keeps edge statistics natural; an image too
    small to reflect (pad >= side) is replicated instead."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return x
    return F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")


class Restorer(nn.Module):
    """NAFNet-style UNet: PixelUnshuffle stem, ``len(enc_blocks)`` levels, residual RGB output (not clamped)."""

    def __init__(self, config: RestorerConfig) -> None:
        super().__init__()
        self.config = config
        w, cin, cout = config.width, config.in_channels, config.out_channels
        self.stem = nn.Sequential(nn.PixelUnshuffle(2), Conv2d(4 * cin, w, 3, padding=1))
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        c = w
        for n in config.enc_blocks:
            self.encoders.append(nn.Sequential(*[NAFBlock(c) for _ in range(n)]))
            self.downs.append(Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.middle = nn.Sequential(*[NAFBlock(c) for _ in range(config.middle_blocks)])
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for n in reversed(config.dec_blocks):
            self.ups.append(nn.Sequential(Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(c) for _ in range(n)]))
        self.head = nn.Sequential(Conv2d(w, 4 * cout, 3, padding=1), nn.PixelShuffle(2))
        # Zero head: the untrained restorer is exactly the identity on RGB.
        nn.init.zeros_(self.head[0].weight)
        nn.init.zeros_(self.head[0].bias)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if x.device.type == "cpu":
            # oneDNN runs the depthwise and 1x1 convs faster in NHWC (bench/results/figures-from-comments.md).
            x = x.contiguous(memory_format=torch.channels_last)
        x = pad_to_multiple(x, self.config.multiple)
        f = self.stem(x)
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            f = enc(f)
            skips.append(f)
            f = down(f)
        f = self.middle(f)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips)):
            f = dec(up(f) + skip)
        out = x[:, : self.config.out_channels] + self.head(f)
        return out[..., :h, :w].contiguous()


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (the 2 M budget counts these)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_restorer(
    model: Restorer, folder: str | Path, card: dict[str, Any] | None = None, dtype: torch.dtype | None = None
) -> Path:
    """Save as a model folder; ``config.json`` is ``{"kind": "restorer", **config}`` so loaders can check the kind."""
    config = {"kind": KIND, **model.config.to_dict()}
    return save_model_folder(folder, model.state_dict(), config, card=card, dtype=dtype)


def load_restorer(folder: str | Path, device: str | torch.device = "cpu") -> Restorer:
    """Load a restorer folder in eval mode; a folder of another kind or with mismatched weights is a CheckpointError."""
    state, config, _card = load_model_folder(folder, expected_kind=KIND)
    try:
        with _filled_from_checkpoint():
            model = Restorer(RestorerConfig.from_dict(config))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{Path(folder) / 'config.json'} is not a valid restorer config ({err})") from err
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"weights in {folder} do not match its config.json: {err}") from err
    return model.to(device).eval()


def _tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Tile origins along one axis, the last tile flush with the end."""
    if size <= tile:
        return [0]
    return list(range(0, size - tile, stride)) + [size - tile]


def _tile_window(start: int, length: int, size: int, overlap: int) -> Tensor:
    """1-D blend weights for one tile; 1 except on the sides that have a neighbouring tile.

    On such a side the outer ``overlap // 4`` pixels get weight 0 (the net saw the tile edge there, not the
    image) and the middle half of the overlap cross-fades with a raised cosine that sums to 1 with the
    neighbour's. So a net that sees less than ``overlap // 4`` pixels around it tiles exactly, and a wider
    one (every UNet) shows no seam.
    """
    w = torch.ones(length)
    margin, fade = overlap // 4, overlap - 2 * (overlap // 4)
    if fade == 0:
        return w
    ramp = torch.cat([torch.zeros(margin), 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(fade) + 0.5) / fade)])
    if start > 0:
        w[: len(ramp)] = torch.minimum(w[: len(ramp)], ramp)
    if start + length < size:
        w[-len(ramp) :] = torch.minimum(w[-len(ramp) :], ramp.flip(0))
    return w


def _restore_tiled(model: nn.Module, x: Tensor, tile: int, overlap: int) -> Tensor:
    """Blend overlapping tiles of the padded image; returns the unclamped output at the input's size."""
    h, w = x.shape[-2:]
    m = model.config.multiple
    # Pad once as the whole-image forward does, and start tiles on the net's m-pixel grid: a tile that is
    # shifted off that grid sees another phase of the stride-2 stages and gives a visibly different result.
    x = pad_to_multiple(x, m)
    hp, wp = x.shape[-2:]
    tile = max(m, tile // m * m)
    stride = max(m, (tile - overlap) // m * m)
    overlap = min(overlap, tile - stride)
    out = torch.zeros(x.shape[0], model.config.out_channels, hp, wp, device=x.device, dtype=x.dtype)
    weight = torch.zeros(1, 1, hp, wp, device=x.device, dtype=x.dtype)
    for y0 in _tile_starts(hp, tile, stride):
        th = min(tile, hp)
        wy = _tile_window(y0, th, hp, overlap)
        for x0 in _tile_starts(wp, tile, stride):
            tw = min(tile, wp)
            win = (wy[:, None] * _tile_window(x0, tw, wp, overlap)[None, :]).to(x)
            out[..., y0 : y0 + th, x0 : x0 + tw] += model(x[..., y0 : y0 + th, x0 : x0 + tw]) * win
            weight[..., y0 : y0 + th, x0 : x0 + tw] += win
    return (out / weight)[..., :h, :w]


@torch.inference_mode()
def restore(model: Restorer, net_input: Tensor, tile: int | None = None, overlap: int = 32) -> Tensor:
    """Run a restorer for display or metrics: output clamped to [0, 1], same batch layout as the input.

    ``tile`` bounds memory on large images: tiles (``tile`` rounded down to the net's 16-px grid) overlap by
    ``overlap`` pixels (at most ``tile // 2``) and are blended with a smooth window so that no seam shows. The
    result is close to, not equal to, the whole-image one: the net sees further than any overlap and its
    channel attention pools over its whole input (measured on 200x150, tile 64, overlap 16: max abs
    0.006-0.016 for briefly trained nets, 0.09-0.30 for abutting tiles without blending).
    """
    if tile is not None and not (tile > 0 and overlap >= 0):
        raise ValueError(f"need tile > 0 and overlap >= 0; got tile={tile}, overlap={overlap}")
    single = net_input.dim() == 3
    x = net_input[None] if single else net_input
    if x.dim() != 4 or x.shape[1] != model.config.in_channels:
        raise ValueError(
            f"expected (C,H,W) or (N,C,H,W) with C={model.config.in_channels}, got {tuple(net_input.shape)}"
        )
    param = next(model.parameters())
    x = x.to(device=param.device, dtype=param.dtype)
    if tile is None or (x.shape[-2] <= tile and x.shape[-1] <= tile):
        out = model(x)
    else:
        # overlap <= tile / 2 keeps every pixel inside some tile's non-zero window.
        out = _restore_tiled(model, x, tile, min(overlap, tile // 2))
    out = out.clamp(0, 1)
    return out[0] if single else out
