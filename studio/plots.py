"""The Train tab's live curves: every loss term of both arms against the step, and the prior terms' share of the
gradient on the restored images (what gamma and lambda really do, as the restorer learns); matplotlib, no pyplot."""

from __future__ import annotations

import math

import numpy as np

from diffloss.viz import figure_to_array

TRAIN_TERMS = (("total", "total loss"), ("fidelity", "fidelity"), ("nat", "L_nat (unweighted)"),
               ("sem", "L_sem (unweighted)"))
ARM_COLOURS = {"l2": "C0", "diffloss": "C3"}
SHARES = (("share_nat", "L_nat", "-"), ("share_sem", "L_sem", "--"))


def share_points(points: list[tuple[int, dict[str, float]]], key: str) -> tuple[list[int], list[float]]:
    """(steps, percent) of one gradient share over a run's logged steps (steps that did not measure it skipped)."""
    kept = [(s, 100.0 * v[key]) for s, v in points if key in v and math.isfinite(v[key])]
    return [s for s, _ in kept], [p for _, p in kept]


def training_figure(
    history: dict[str, list[tuple[int, dict[str, float]]]], size=(12.5, 2.8), dpi: int = 90,
) -> np.ndarray:
    """One panel per term, then the prior terms' gradient shares; one line per arm (shares: one per term and arm).

    ``history[arm]`` is a list of (step, values) from TrainEvents.
    """
    from matplotlib.figure import Figure  # on first use, not at the app's start-up

    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0, 1, 0.86))  # a free strip on top: gradio's image buttons sit there
    axes = fig.subplots(1, len(TRAIN_TERMS) + 1)
    for ax, (term, title) in zip(axes, TRAIN_TERMS):
        for arm, points in history.items():
            xs = [s for s, v in points if term in v and math.isfinite(v[term])]
            ys = [v[term] for s, v in points if term in v and math.isfinite(v[term])]
            if xs:
                ax.plot(xs, ys, color=ARM_COLOURS.get(arm, "C2"), label=arm, linewidth=1.2)
        positive = [v[term] for pts in history.values() for _, v in pts if v.get(term, 0) > 0]
        if positive and max(positive) / min(positive) >= 100:
            ax.set_yscale("log")
        ax.set_title(title, fontsize="small")
        ax.set_xlabel("step", fontsize="small")
        ax.tick_params(labelsize="x-small")
        ax.grid(alpha=0.3)
        if any(history.values()):
            ax.legend(fontsize="x-small")
    ax = axes[-1]
    for arm, points in history.items():
        for key, name, style in SHARES:
            xs, ys = share_points(points, key)
            if any(y > 0 for y in ys):  # the L2 arm's prior terms send nothing: no line
                ax.plot(xs, ys, style, color=ARM_COLOURS.get(arm, "C2"), label=f"{arm}: {name}", linewidth=1.2)
    ax.set_title("prior's share of the gradient (%)", fontsize="small")
    ax.set_xlabel("step", fontsize="small")
    ax.tick_params(labelsize="x-small")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="x-small")
    return figure_to_array(fig)
