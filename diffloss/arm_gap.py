"""How far two arms have moved apart while they train: both restore one fixed photo the run does not train on,
and the gap between their outputs is measured (PSNR between the outputs, mean and largest difference) and shown
amplified by a stated factor.

Why: a default CPU run moves the DiffLoss arm by about 2/255 from the L2 arm: invisible at 100 %, and a loss
curve cannot show it. Measured on the same photo at every logged step, the gap grows visibly (or, with the
released code's no_grad mistake, stays exactly zero), which is the lesson.

Pure tensor maths and one small probe object; the Train tab (``studio.train_tab``) only draws what it returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from diffloss.metrics import psnr

GAINS = (1, 2, 5, 10, 20, 50, 100, 200, 500)  # amplification factors a person reads at a glance
SHOWN_LEVEL = 0.4  # the amplified difference that fills most of the grey's range (0.5 +- 0.4)


@dataclass(frozen=True)
class Gap:
    """The gap between two arms' outputs on the probe photo at one step."""

    step: int
    psnr: float  # dB between the two outputs; inf when they are identical
    mean: float  # mean |a - b| in levels of 255
    largest: float  # max |a - b| in levels of 255


def measure_gap(a: torch.Tensor, b: torch.Tensor, step: int = 0) -> Gap:
    """The gap between two outputs in [0, 1] of the same size."""
    if a.shape != b.shape:
        raise ValueError(f"the two outputs differ in size: {tuple(a.shape)} and {tuple(b.shape)}")
    diff = (a.float() - b.float()).abs()
    return Gap(step, psnr(a, b), float(diff.mean()) * 255, float(diff.max()) * 255)


def readable_gain(a: torch.Tensor, b: torch.Tensor, quantile: float = 0.99) -> int:
    """The amplification that makes the gap visible: the largest of ``GAINS`` that keeps the ``quantile`` of
    |a - b| within ``SHOWN_LEVEL`` (so a few outliers clip, the rest shows); 1 when the outputs are equal."""
    diff = (a.float() - b.float()).abs().flatten()
    level = float(torch.quantile(diff[:: max(1, diff.numel() // 1_000_000)], quantile)) if diff.numel() else 0.0
    if level <= 0:
        return GAINS[0]
    fitting = [g for g in GAINS if g * level <= SHOWN_LEVEL]
    return fitting[-1] if fitting else GAINS[0]


@dataclass
class ArmProbe:
    """One fixed photo both arms restore at every ``every``-th logged step; keeps each gap and the last outputs.

    ``net_input``: what the restorers take (C,H,W), the photo degraded with a fixed seed; ``source``: where the
    photo comes from, for the caption."""

    net_input: torch.Tensor
    source: str = ""
    every: int = 1
    gaps: list[Gap] = field(default_factory=list)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    _seen: int = 0

    @torch.no_grad()
    def restore(self, model: nn.Module) -> torch.Tensor:
        """The model's output on the photo, in eval mode, the model's mode restored after (it is training)."""
        from diffloss.nets import restore

        was_training = model.training
        model.eval()
        try:
            return restore(model, self.net_input).float().cpu()
        finally:
            model.train(was_training)

    def observe(self, step: int, models: dict[str, nn.Module], force: bool = False) -> Gap | None:
        """At a logged step with both arms' nets: measure every ``every``-th time (or when ``force``d, the run's
        last step); returns the new gap, else None. ``models``: the two arms' nets, the L2 arm's first."""
        if len(models) != 2:
            return None
        self._seen += 1
        if not force and (self._seen - 1) % max(1, self.every):
            return None
        if self.gaps and self.gaps[-1].step == step:
            return None
        self.outputs = {arm: self.restore(m) for arm, m in models.items()}
        a, b = self.outputs.values()
        gap = measure_gap(b, a, step)
        self.gaps.append(gap)
        return gap


def probe_every(total_steps: int, log_every: int, points: int = 30) -> int:
    """Measure every n-th logged step so a run gives about ``points`` gaps (two restores each, on a CPU)."""
    logs = max(1, math.ceil(total_steps / max(1, log_every)))
    return max(1, math.ceil(logs / max(1, points)))
