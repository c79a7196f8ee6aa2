"""A compact reference forward of guided-diffusion's ADM UNet (Dhariwal & Nichol 2021), for the converter's tests.

Written from the published architecture, with module names laid out exactly as guided-diffusion's state dict
(``time_embed``, ``input_blocks.i.j``, ``middle_block.k``, ``output_blocks.i.j``, ``out``) so its random state
dict is what a real checkpoint of that shape holds. Only what the converter supports is here: res-block up/down
sampling, optional scale-shift norm, legacy (per-head interleaved) or new qkv order, no class conditioning, float32.
When guided-diffusion itself is importable, tests/test_convert_adm.py checks this reference against it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from diffloss.convert_adm import ADM_NORM_GROUPS, ADMConfig


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[cos, sin] of t times geometrically spaced frequencies, as ADM builds it."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(ADM_NORM_GROUPS, channels)


class ResBlock(nn.Module):
    def __init__(self, ch: int, emb_ch: int, out_ch: int, scale_shift: bool, up: bool = False, down: bool = False):
        super().__init__()
        self.scale_shift, self.up, self.down = scale_shift, up, down
        self.in_layers = nn.Sequential(norm(ch), nn.SiLU(), nn.Conv2d(ch, out_ch, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_ch, 2 * out_ch if scale_shift else out_ch))
        self.out_layers = nn.Sequential(norm(out_ch), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip_connection = nn.Identity() if ch == out_ch else nn.Conv2d(ch, out_ch, 1)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return F.interpolate(x, scale_factor=2, mode="nearest")
        if self.down:
            return F.avg_pool2d(x, kernel_size=2, stride=2)
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers[:-1](x)
        h, x = self._resample(h), self._resample(x)
        h = self.in_layers[-1](h)
        e = self.emb_layers(emb)[..., None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    def __init__(self, ch: int, heads: int, new_order: bool):
        super().__init__()
        self.heads, self.new_order = heads, new_order
        self.norm = norm(ch)
        self.qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.proj_out = nn.Conv1d(ch, ch, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(flat))
        length, d = qkv.shape[-1], c // self.heads
        if self.new_order:  # [q | k | v], each split into heads
            q, k, v = (part.reshape(b * self.heads, d, length) for part in qkv.chunk(3, dim=1))
        else:  # per head [q_h | k_h | v_h]
            q, k, v = qkv.reshape(b * self.heads, 3 * d, length).split(d, dim=1)
        scale = 1 / math.sqrt(math.sqrt(d))
        weight = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale), dim=-1)
        a = torch.einsum("bts,bcs->bct", weight, v).reshape(b, c, length)
        return (flat + self.proj_out(a)).reshape(b, c, *spatial)


class Step(nn.Sequential):
    """guided-diffusion's TimestepEmbedSequential: passes the embedding to the blocks that take one."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, (ResBlock, AttentionBlock)) else layer(x)
        return x


class ReferenceADM(nn.Module):
    """ADM's UNet for ``cfg``; ``forward`` returns the model output (eps, then sigma channels when learnt)."""

    def __init__(self, cfg: ADMConfig):
        super().__init__()
        ch = cfg.num_channels
        emb_ch = 4 * ch
        ss, new = cfg.use_scale_shift_norm, cfg.use_new_attention_order

        def heads(channels: int, up: bool = False) -> int:
            """guided-diffusion's rule, block by block: channels // num_head_channels, else num_heads (on the up
            path num_heads_upsample, -1 meaning num_heads)."""
            if cfg.num_head_channels != -1:
                return channels // cfg.num_head_channels
            upsample = getattr(cfg, "num_heads_upsample", -1)
            return upsample if up and upsample != -1 else cfg.num_heads

        self.model_channels = ch
        self.time_embed = nn.Sequential(nn.Linear(ch, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        self.input_blocks = nn.ModuleList([Step(nn.Conv2d(3, ch, 3, padding=1))])
        skips, cur = [ch], ch
        last = len(cfg.channel_mult) - 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(cur, emb_ch, mult * ch, ss)]
                cur = mult * ch
                if cfg.has_attention(level):
                    layers.append(AttentionBlock(cur, heads(cur), new))
                self.input_blocks.append(Step(*layers))
                skips.append(cur)
            if level != last:
                self.input_blocks.append(Step(ResBlock(cur, emb_ch, cur, ss, down=True)))
                skips.append(cur)
        self.middle_block = Step(ResBlock(cur, emb_ch, cur, ss), AttentionBlock(cur, heads(cur), new),
                                 ResBlock(cur, emb_ch, cur, ss))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(cur + skips.pop(), emb_ch, mult * ch, ss)]
                cur = mult * ch
                if cfg.has_attention(level):
                    layers.append(AttentionBlock(cur, heads(cur, up=True), new))
                if level and i == cfg.num_res_blocks:
                    layers.append(ResBlock(cur, emb_ch, cur, ss, up=True))
                self.output_blocks.append(Step(*layers))
        self.out = nn.Sequential(norm(cur), nn.SiLU(), nn.Conv2d(cur, 6 if cfg.learn_sigma else 3, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(t, self.model_channels))
        hs, h = [], x
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)
