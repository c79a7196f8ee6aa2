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


def texts_under_11_px(fig, shown_width: float) -> tuple[list, list]:
    """(every visible text of a drawn matplotlib figure, those showing under 11 px when the figure is shown
    ``shown_width`` CSS px wide): what the figures' readability tests check (issue #27, point 2)."""
    fig.canvas.draw()
    shown = min(1.0, shown_width / fig.bbox.width)
    texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_fontsize") and hasattr(a, "get_text"))
             if t.get_text().strip() and t.get_visible()]
    small = [(t.get_text(), t.get_fontsize()) for t in texts if t.get_fontsize() * fig.dpi / 72 * shown < 10.95]
    return texts, small
