"""The Train tab's live curves: every loss term of both arms against the step, and the prior terms' share of the
gradient on the restored images (what gamma and lambda really do, as the restorer learns); matplotlib, no pyplot.

Read at a glance: each arm is one colour and one line style (so the arms stay apart in grey and where lines
overlap), a smoothed line runs over the faint raw points (a batch's loss jumps from step to step), and the legend
has a panel of its own, clear of the curves and of gradio's buttons over the picture's top right corner.
"""

from __future__ import annotations

import math

import numpy as np

from diffloss.viz import figure_to_array

TRAIN_TERMS = (("total", "total loss"), ("fidelity", "fidelity"), ("nat", "L_nat (unweighted)"),
               ("sem", "L_sem (unweighted)"))
ARM_STYLES = {"l2": ("C0", "-"), "diffloss": ("C3", "--")}  # (colour, line style) per arm
OTHER_ARM = ("C2", ":")
ARM_COLOURS = {arm: colour for arm, (colour, _) in ARM_STYLES.items()}
SHARES = (("share_nat", "L_nat", "o"), ("share_sem", "L_sem", "s"))  # (key, name, marker) of the share panel
SMOOTHING_POINTS = 10  # the smoothed line averages over about a tenth of the logged points (at least one)


def share_points(points: list[tuple[int, dict[str, float]]], key: str) -> tuple[list[int], list[float]]:
    """(steps, percent) of one gradient share over a run's logged steps (steps that did not measure it skipped)."""
    kept = [(s, 100.0 * v[key]) for s, v in points if key in v and math.isfinite(v[key])]
    return [s for s, _ in kept], [p for _, p in kept]


def smoothed(values: list[float], span: float) -> list[float]:
    """An exponential moving average with weight 2/(span+1), debiased at the start (the first value is kept, not
    pulled towards 0): a trend line that follows a noisy loss without lagging far behind. ``span`` <= 1: as given."""
    if span <= 1:
        return list(values)
    alpha = 2.0 / (span + 1.0)
    out, mean, weight = [], 0.0, 0.0
    for v in values:
        mean = (1 - alpha) * mean + alpha * v
        weight = (1 - alpha) * weight + alpha
        out.append(mean / weight)
    return out


def _span(n: int) -> float:
    return max(1.0, n / SMOOTHING_POINTS)


SHARE_WINDOW = 15  # logged points the share's line averages at least: one t per step makes it jump 1 %-93 %


def running_mean(values: list[float], window: int) -> list[float]:
    """The mean of the ``window`` points centred on each (fewer at the ends): a share drawn with a new t each step
    jumps by tens of percent from one logged step to the next, and its level is what a reader wants."""
    half = max(0, int(window) // 2)
    return [float(np.mean(values[max(0, i - half): i + half + 1])) for i in range(len(values))]


def _term_points(points: list[tuple[int, dict[str, float]]], term: str) -> tuple[list[int], list[float]]:
    kept = [(s, v[term]) for s, v in points if term in v and math.isfinite(v[term])]
    return [s for s, _ in kept], [y for _, y in kept]


def _plot_arm(ax, xs: list[int], ys: list[float], arm: str, label: str, marker: str | None = None,
              line: list[float] | None = None) -> None:
    """Faint raw points and the smoothed line over them (``line``: another smoothing than the loss's), in the
    arm's colour and style."""
    colour, style = ARM_STYLES.get(arm, OTHER_ARM)
    ax.plot(xs, ys, marker or "o", color=colour, markersize=2.5, alpha=0.3, linestyle="none")
    ax.plot(xs, smoothed(ys, _span(len(ys))) if line is None else line, style, color=colour, linewidth=2.0,
            label=label,
            marker=marker, markevery=max(1, len(xs) // 8) if marker else None, markersize=4)


# Points at the figure's 90 dpi: Train shows it ~790 px wide at 1440x900 (0.8 of its 990 px), so 11 pt text
# (13.75 px drawn) shows at 11 px.
TEXT_PT = 11


def _style(ax, title: str) -> None:
    ax.set_title(title, fontsize=TEXT_PT + 1)
    ax.set_xlabel("step", fontsize=TEXT_PT)
    ax.tick_params(labelsize=TEXT_PT)
    ax.grid(alpha=0.3)


def training_figure(
    history: dict[str, list[tuple[int, dict[str, float]]]], size=(11.0, 5.4), dpi: int = 90,
) -> np.ndarray:
    """Two rows of three: the total loss, the fidelity term and the prior's gradient share; L_nat, L_sem and the
    legend. One line per arm (shares: one per term and arm whose prior pushes).

    ``history[arm]`` is a list of (step, values) from TrainEvents.
    """
    from matplotlib.figure import Figure  # on first use, not at the app's start-up

    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0, 0.92, 1))  # a free strip at the right: gradio's image buttons sit there
    grid = fig.subplots(2, 3)
    panels = {"total": grid[0, 0], "fidelity": grid[0, 1], "nat": grid[1, 0], "sem": grid[1, 1]}
    for term, title in TRAIN_TERMS:
        ax = panels[term]
        for arm, points in history.items():
            xs, ys = _term_points(points, term)
            if xs:
                _plot_arm(ax, xs, ys, arm, f"{arm} arm")
        positive = [v[term] for pts in history.values() for _, v in pts if v.get(term, 0) > 0]
        if positive and max(positive) / min(positive) >= 100:
            ax.set_yscale("log")
        _style(ax, title)
    ax = grid[0, 2]
    for arm, points in history.items():
        for key, name, marker in SHARES:
            xs, ys = share_points(points, key)
            if any(y > 0 for y in ys):  # the L2 arm's prior terms send nothing: no line
                window = max(SHARE_WINDOW, len(ys) // 5)
                _plot_arm(ax, xs, ys, arm, f"{arm} arm: {name} share", marker=marker, line=running_mean(ys, window))
    _style(ax, "prior's share of the gradient (%)")
    legend = grid[1, 2]
    legend.axis("off")
    handles = {}
    for panel in (*panels.values(), ax):
        for line in panel.get_lines():
            if not line.get_label().startswith("_"):
                handles.setdefault(line.get_label(), line)
    if handles:
        legend.legend(list(handles.values()), list(handles), loc="center left", fontsize=TEXT_PT, frameon=False,
                      title="lines: smoothed; dots: each logged step", title_fontsize=TEXT_PT)
    else:
        legend.text(0.0, 0.5, "The curves appear here\nonce a run logs its first step.", fontsize=TEXT_PT + 1,
                    va="center", color="0.4")
    return figure_to_array(fig)
