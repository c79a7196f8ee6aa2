"""Small builders shared by tests: a tiny prior and a tiny restorer-like net, fast on CPU."""

from __future__ import annotations

import torch
from torch import nn

from diffloss.prior import PRIOR_PRESETS, DiffusionPrior


def tiny_prior(seed: int = 0) -> DiffusionPrior:
    torch.manual_seed(seed)
    return PRIOR_PRESETS["tiny"].build()


class ConvNet(nn.Module):
    """Two convolutions with a residual: enough to carry a gradient, small enough to be instant."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.1 * self.body(x)
