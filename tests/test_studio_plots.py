"""The Train tab's live curves: the loss terms of both arms and the prior terms' share of the gradient."""

from __future__ import annotations

import math

import numpy as np
import pytest

from studio.plots import share_points, training_figure


def test_shares_are_percent_of_the_logged_steps_that_measured_them():
    points = [(1, {"total": 1.0}), (2, {"share_nat": 0.25, "share_sem": 0.05}), (3, {"share_nat": math.nan}),
              (4, {"share_nat": 0.125})]
    assert share_points(points, "share_nat") == ([2, 4], [25.0, 12.5])
    assert share_points(points, "share_sem") == ([2], [5.0])
    assert share_points([], "share_nat") == ([], [])


def test_the_figure_has_a_share_panel_that_draws_only_arms_whose_prior_pushes():
    step = {"total": 0.01, "fidelity": 0.01, "nat": 0.02, "sem": 0.03}
    history = {"l2": [(i, {**step, "share_fidelity": 1.0, "share_nat": 0.0, "share_sem": 0.0}) for i in (1, 2)],
               "diffloss": [(i, {**step, "share_fidelity": 0.7, "share_nat": 0.2, "share_sem": 0.1}) for i in (1, 2)]}
    no_shares = {arm: [(i, step) for i in (1, 2)] for arm in history}
    with_shares = training_figure(history)
    assert with_shares.shape == training_figure(no_shares).shape and with_shares.ndim == 3
    right = with_shares.shape[1] * 4 // 5  # the last of five panels
    assert not np.array_equal(with_shares[:, right:], training_figure(no_shares)[:, right:])
    # The L2 arm's zero shares draw nothing: the same picture as no shares logged at all.
    assert np.array_equal(training_figure({"l2": history["l2"]}), training_figure({"l2": no_shares["l2"]}))
    assert training_figure({}).ndim == 3  # before the first logged step


def test_the_smoothed_line_keeps_a_constant_follows_a_step_and_starts_at_the_first_value():
    from studio.plots import smoothed

    assert smoothed([2.0] * 5, span=4) == pytest.approx([2.0] * 5)
    assert smoothed([1.0, 3.0], span=1) == [1.0, 3.0]  # span 1: the raw values
    step = smoothed([0.0] * 10 + [1.0] * 40, span=5)
    assert step[0] == 0.0 and step[10] == pytest.approx((1 / 3) / (1 - (2 / 3) ** 11))  # alpha 1/3, debiased
    assert 0.99 < step[-1] <= 1.0 and all(a <= b for a, b in zip(step, step[1:]))
    noisy = [1.0 + (-1) ** i * 0.5 for i in range(40)]
    assert np.std(smoothed(noisy, span=8)[10:]) < 0.25 * np.std(noisy)


def test_the_arms_differ_by_colour_and_line_style_and_the_curves_are_large():
    from studio.plots import ARM_STYLES

    (c1, s1), (c2, s2) = ARM_STYLES["l2"], ARM_STYLES["diffloss"]
    assert c1 != c2 and s1 != s2
    picture = training_figure({})
    assert picture.shape[0] >= 450 and picture.shape[1] >= 900  # two rows of panels, not a 250 px strip


def test_the_legend_has_a_panel_of_its_own():
    """The legend sits in the lower right panel (clear of the curves and of gradio's buttons, top right): an arm
    more changes that panel, and the top right corner stays white."""
    step = {"total": 0.01, "fidelity": 0.01, "nat": 0.02, "sem": 0.03}
    one = training_figure({"l2": [(i, step) for i in (1, 2)]})
    two = training_figure({"l2": [(i, step) for i in (1, 2)], "diffloss": [(i, step) for i in (1, 2)]})
    h, w = one.shape[:2]
    assert not np.array_equal(one[h // 2:, 2 * w // 3:], two[h // 2:, 2 * w // 3:])
    corner = two[: h // 20, -w // 14:]
    assert corner.min() == 255  # nothing drawn where gradio puts its download and full-screen buttons
