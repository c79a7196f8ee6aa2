"""The Train tab's live curves: the loss terms of both arms and the prior terms' share of the gradient."""

from __future__ import annotations

import math

import numpy as np

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
