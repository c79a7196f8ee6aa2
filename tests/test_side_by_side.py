"""Side-by-side CPU work: same results in the same order, the caller's grad mode, errors raised to the caller."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from diffloss import side_by_side
from diffloss.inspection import loss_curves
from tests.helpers import tiny_prior

CPU = torch.device("cpu")


def test_results_come_back_in_order_and_the_side_pieces_run_in_other_threads():
    here = threading.get_ident()
    main, *others = side_by_side.run(CPU, lambda: ("main", threading.get_ident()),
                                     *(lambda i=i: (i, threading.get_ident()) for i in range(3)))
    assert main == ("main", here)
    assert [o[0] for o in others] == [0, 1, 2] and all(o[1] != here for o in others)


@pytest.mark.parametrize("grad", [True, False])
def test_side_threads_get_the_callers_grad_mode(grad):
    with torch.set_grad_enabled(grad):
        _, seen = side_by_side.run(CPU, torch.is_grad_enabled, torch.is_grad_enabled)
    assert seen is grad


def test_an_error_in_a_side_piece_reaches_the_caller():
    def fails():
        raise ValueError("side piece failed")

    with pytest.raises(ValueError, match="side piece failed"):
        side_by_side.run(CPU, lambda: 1, fails)


def test_disabled_or_off_the_cpu_everything_runs_here(monkeypatch):
    here = threading.get_ident()
    assert not side_by_side.worth_it(torch.device("cuda"))
    monkeypatch.setattr(side_by_side, "ENABLED", False)
    assert side_by_side.run(CPU, threading.get_ident, threading.get_ident) == (here, here)


def test_loss_curves_are_identical_side_by_side_and_one_after_another(monkeypatch):
    prior = tiny_prior()
    g = torch.Generator().manual_seed(0)
    gt, a, b = (torch.rand(3, 16, 16, generator=g) for _ in range(3))
    results = {}
    for enabled in (True, False):
        monkeypatch.setattr(side_by_side, "ENABLED", enabled)
        results[enabled] = loss_curves(prior, {"a": (a, gt), "b": (b, gt)}, timesteps=[5, 50], seeds=(0, 1), batch_size=3)
    for name in ("a", "b"):
        np.testing.assert_array_equal(results[True].nat[name].samples, results[False].nat[name].samples)
        np.testing.assert_array_equal(results[True].sem[name].samples, results[False].sem[name].samples)
