"""Side-by-side CPU work: same results in the same order, the caller's grad mode, errors raised to the caller;
the L(t) wrapper gives the library's curves."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from diffloss import side_by_side
from diffloss import inspection
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
    pairs = {"a": (a, gt), "b": (b, gt)}
    results = {}
    for enabled in (True, False):
        monkeypatch.setattr(side_by_side, "ENABLED", enabled)
        results[enabled] = side_by_side.loss_curves(prior, pairs, timesteps=[5, 50, 70], seeds=(0, 1), batch_size=3)
    for name in ("a", "b"):
        np.testing.assert_array_equal(results[True].nat[name].samples, results[False].nat[name].samples)
        np.testing.assert_array_equal(results[True].sem[name].samples, results[False].sem[name].samples)
    # The wrapper's halves give the library's own curves (batches differ, so equal to float rounding, not bits).
    plain = inspection.loss_curves(prior, pairs, timesteps=[5, 50, 70], seeds=(0, 1), batch_size=3)
    assert results[True].timesteps == plain.timesteps == [5, 50, 70] and results[True].seeds == plain.seeds
    for name in ("a", "b"):
        for term in ("nat", "sem"):
            mine, ref = getattr(results[True], term)[name], getattr(plain, term)[name]
            assert mine.samples.shape == (3, 2) and float(ref.samples.min()) > 0
            np.testing.assert_allclose(mine.samples, ref.samples, rtol=1e-5)
            np.testing.assert_allclose(mine.mean, ref.mean, rtol=1e-5)
            np.testing.assert_allclose(mine.std, ref.std, rtol=1e-4, atol=1e-12)


@pytest.mark.parametrize("parts", [1, 2, 5])
def test_loss_curves_split_into_consecutive_groups_cover_every_timestep_once(parts, monkeypatch):
    prior = tiny_prior()
    seen = []
    original = inspection.loss_curves

    def spy(prior_, pairs, timesteps, seeds, batch_size):
        seen.append(list(timesteps))
        return original(prior_, pairs, timesteps, seeds, batch_size)

    monkeypatch.setattr(inspection, "loss_curves", spy)
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    curves = side_by_side.loss_curves(prior, {"x": (x, x.flip(-1))}, timesteps=[1, 2, 3, 4, 5], seeds=(0,),
                                      parts=parts)
    assert [t for group in sorted(seen) for t in group] == [1, 2, 3, 4, 5]
    assert len(seen) == min(parts, 5) and max(map(len, seen)) - min(map(len, seen)) <= 1
    assert curves.timesteps == [1, 2, 3, 4, 5] and curves.nat["x"].samples.shape == (5, 1)


def test_join_curves_refuses_parts_that_do_not_fit_together():
    prior = tiny_prior()
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(2))
    one = inspection.loss_curves(prior, {"x": (x, x.flip(-1))}, timesteps=[5], seeds=(0,))
    other = inspection.loss_curves(prior, {"x": (x, x.flip(-1))}, timesteps=[9], seeds=(1,))
    with pytest.raises(ValueError, match="same seeds and pairs"):
        inspection.join_curves([one, other])
    with pytest.raises(ValueError, match="at least one part"):
        inspection.join_curves([])
    with pytest.raises(ValueError, match="parts must be >= 1"):
        side_by_side.loss_curves(prior, {"x": (x, x)}, timesteps=[5], parts=0)
