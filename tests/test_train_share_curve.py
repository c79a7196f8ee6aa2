"""The Train tab's share-of-gradient curve reads as a level, with the raw points faint (issue #27 point 3): a new t
each step makes the prior's share jump between 1 % and 93 % from one logged step to the next."""

from __future__ import annotations

import numpy as np

from studio import plots
from tests.helpers import texts_under_11_px

JUMPY = [0.01 if i % 2 else 0.93 for i in range(30)]  # what a short run logs, one t per step


def test_the_running_mean_follows_the_level_not_the_jumps():
    line = plots.running_mean([100 * v for v in JUMPY], plots.SHARE_WINDOW)
    assert len(line) == len(JUMPY)
    assert max(abs(a - b) for a, b in zip(line, line[1:])) < 10  # raw: 92 points from one step to the next
    assert abs(np.mean(line[5:-5]) - 47) < 3
    assert plots.running_mean([1.0, 2.0, 3.0], 1) == [1.0, 2.0, 3.0]


def test_the_share_panel_draws_the_raw_points_faint_and_a_smooth_line(monkeypatch):
    captured = {}
    monkeypatch.setattr(plots, "figure_to_array", lambda fig: captured.setdefault("fig", fig) and np.zeros((2, 2, 3)))
    history = {"diffloss": [(i + 1, {"total": 1.0, "share_nat": v, "share_sem": 0.02}) for i, v in enumerate(JUMPY)]}
    plots.training_figure(history)
    share = next(ax for ax in captured["fig"].axes if "share" in ax.get_title())
    lines = [ln for ln in share.get_lines() if len(ln.get_xdata()) == len(JUMPY)]
    raw = [ln for ln in lines if ln.get_linestyle() == "None"]
    smooth = [ln for ln in lines if ln.get_linestyle() != "None"]
    assert raw and all(ln.get_alpha() <= 0.35 for ln in raw)
    nat = next(ln for ln in smooth if "L_nat" in ln.get_label())
    ys = np.asarray(nat.get_ydata(), float)
    assert np.abs(np.diff(ys)).max() < 10, ys


def test_every_text_of_the_curves_shows_at_11_px_or_more_in_the_train_column(monkeypatch):
    """Train shows the curves about 790 CSS px wide at 1440x900 (measured in chromium)."""
    captured = {}
    monkeypatch.setattr(plots, "figure_to_array", lambda fig: captured.setdefault("fig", fig) and np.zeros((2, 2, 3)))
    history = {"diffloss": [(i + 1, {"total": 1.0, "fidelity": 0.5, "nat": 0.1, "sem": 0.2, "share_nat": v})
                            for i, v in enumerate(JUMPY)]}
    plots.training_figure(history)
    texts, small = texts_under_11_px(captured["fig"], 790)
    assert texts and not small, small
