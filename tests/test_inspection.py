"""The Inspect view shows exactly what DiffLoss trains with: same (t, eps), same terms, same gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffloss.inspection import (
    CurveStats, LossCurves, Separation, best_separation, default_timesteps, gradient_map, inspect_pair, loss_curves,
    purification, seeded_noise, term_gradients,
)
from diffloss.loss import DiffLoss, DiffLossConfig, output_distances, prior_distances
from tests.helpers import tiny_prior


@pytest.fixture(scope="module")
def prior():
    return tiny_prior()


def _pair(h: int = 16, w: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy, clean): a degraded image and its ground truth, (3,H,W) in [0,1]."""
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(3, h, w, generator=g)
    return (gt + 0.3 * torch.randn(3, h, w, generator=g)).clamp(0, 1), gt


def test_identical_images_look_identical_to_the_prior(prior):
    _, gt = _pair()
    view = inspect_pair(prior, gt, gt.clone(), t=40, seed=3)
    assert view.l_nat == 0.0 and view.l_sem == 0.0
    assert torch.count_nonzero(view.h_error) == 0
    assert torch.count_nonzero(view.eps_hat_diff) == 0


def test_a_noisy_image_differs_from_its_clean_original_in_both_terms(prior):
    noisy, gt = _pair()
    view = inspect_pair(prior, noisy, gt, t=40, seed=3)
    assert view.l_nat > 0 and view.l_sem > 0
    assert float(view.h_error.max()) > 0


@pytest.mark.parametrize("t, seed", [(5, 0), (70, 11)])
def test_terms_equal_what_diffloss_computes_for_the_same_t_and_seed(prior, t, seed):
    noisy, gt = _pair()
    view = inspect_pair(prior, noisy, gt, t=t, seed=seed)
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        terms = DiffLoss(prior, DiffLossConfig())(noisy[None], gt[None], generator=g, t=t)
    assert view.l_nat == pytest.approx(float(terms.nat), rel=1e-6)
    assert view.l_sem == pytest.approx(float(terms.sem), rel=1e-6)
    # the seed rule: eps is the first randn draw of a generator seeded with `seed`
    assert torch.equal(view.eps, torch.randn((1, 3, 16, 16), generator=torch.Generator().manual_seed(seed))[0])


def test_shapes_for_odd_sizes(prior):
    noisy, gt = _pair(20, 28)
    view = inspect_pair(prior, noisy[None], gt[None], t=10, seed=0)
    for img in (view.x_t_a, view.x_t_b, view.x0_a, view.x0_b, view.eps, view.eps_hat_a, view.eps_hat_diff):
        assert img.shape == (3, 20, 28)
    for img in (view.x_t_a, view.x0_b):
        assert 0 <= float(img.min()) and float(img.max()) <= 1
    c, hh, hw = prior.h_shape(20, 28)
    assert view.h_a.shape == view.h_b.shape == (1, c, hh, hw)
    assert view.h_error.shape == (hh, hw)


def test_mismatched_shapes_name_both(prior):
    with pytest.raises(ValueError, match=r"\(3, 16, 16\).*\(3, 16, 20\)"):
        inspect_pair(prior, torch.rand(3, 16, 16), torch.rand(3, 16, 20), t=1, seed=0)


def test_default_timesteps_cover_the_schedule(prior):
    steps = default_timesteps(prior.num_timesteps)
    assert steps[0] == 0 and steps[-1] == prior.num_timesteps - 1
    assert 10 <= len(steps) <= 12 and steps == sorted(set(steps))


def test_per_sample_distances_agree_with_prior_distances(prior):
    noisy, gt = _pair()
    t = torch.tensor([3, 50, 99])
    eps = torch.cat([seeded_noise((1, 3, 16, 16), s) for s in (0, 1, 2)])
    a, b = noisy[None].expand(3, -1, -1, -1), gt[None].expand(3, -1, -1, -1)
    with torch.no_grad():
        out_a, out_b = prior.predict(prior.add_noise(a, t, eps), t), prior.predict(prior.add_noise(b, t, eps), t)
        nat, sem = output_distances(out_a.eps, out_a.h, out_b.eps, out_b.h, per_sample=True)
        batch_nat, batch_sem = output_distances(out_a.eps, out_a.h, out_b.eps, out_b.h)
        assert float(nat.mean()) == pytest.approx(float(batch_nat), rel=1e-5)
        assert float(sem.mean()) == pytest.approx(float(batch_sem), rel=1e-5)
        for i in range(3):
            ref_nat, ref_sem = prior_distances(prior, a[i:i + 1], b[i:i + 1], t[i:i + 1], eps[i:i + 1])
            assert float(nat[i]) == pytest.approx(float(ref_nat), rel=1e-4)
            assert float(sem[i]) == pytest.approx(float(ref_sem), rel=1e-4)


def test_loss_curves_shapes_and_order(prior):
    noisy, gt = _pair()
    steps = [0, 20, 50, 99]
    curves = loss_curves(prior, {"noisy vs gt": (noisy, gt), "gt vs gt": (gt, gt.clone())}, timesteps=steps,
                         seeds=(0, 1, 2), batch_size=5)
    assert curves.timesteps == steps and curves.seeds == [0, 1, 2]
    assert curves.names == ["noisy vs gt", "gt vs gt"]
    for term in (curves.nat, curves.sem):
        for stats in term.values():
            assert stats.mean.shape == stats.std.shape == (len(steps),)
            assert stats.samples.shape == (len(steps), 3)
            assert np.all(stats.std >= 0)
        np.testing.assert_allclose(term["gt vs gt"].samples, 0.0, atol=1e-10)
        assert np.all(term["noisy vs gt"].mean > term["gt vs gt"].mean)
    # one (t, seed) sample of the curve is the number inspect_pair shows
    view = inspect_pair(prior, noisy, gt, t=50, seed=1)
    assert curves.nat["noisy vs gt"].samples[2, 1] == pytest.approx(view.l_nat, rel=1e-4)
    assert curves.sem["noisy vs gt"].samples[2, 1] == pytest.approx(view.l_sem, rel=1e-4)


def _curves(near: list[list[float]], far: list[list[float]], steps=(0, 50, 99)) -> LossCurves:
    """Hand-made curves (rows: t, columns: seeds), the same numbers for both terms."""
    stats = {"near": CurveStats.from_samples(np.array(near)), "far": CurveStats.from_samples(np.array(far))}
    return LossCurves(timesteps=list(steps), seeds=[0, 1], nat=stats, sem=dict(stats))


def test_best_separation_finds_the_t_where_the_far_pair_stands_furthest_above_the_near_one():
    curves = _curves(near=[[1.0, 1.0], [0.1, 0.1], [0.01, 0.03]], far=[[2.0, 2.0], [0.5, 0.5], [0.04, 0.08]])
    best = best_separation(curves, "near", "far")
    assert best["nat"] == Separation(t=50, ratio=pytest.approx(5.0), apart=True)
    # At t=99 the ratio is 3, but the seeds scatter so much that the +-1 std bands overlap.
    noisy = _curves(near=[[1.0, 1.0], [0.1, 0.1], [0.0, 0.2]], far=[[1.0, 1.0], [0.1, 0.1], [0.1, 0.5]])
    assert best_separation(noisy, "near", "far")["sem"] == Separation(t=99, ratio=pytest.approx(3.0), apart=False)
    exact = _curves(near=[[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]], far=[[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    assert best_separation(exact, "near", "far")["nat"] == Separation(t=50, ratio=np.inf, apart=True)
    with pytest.raises(ValueError, match="no pair named 'restored'"):
        best_separation(curves, "restored", "far")


def test_curves_share_the_ground_truth_forward_and_give_the_same_numbers(prior):
    noisy, gt = _pair()
    other = (gt * 0.5).clamp(0, 1)
    pairs = {"noisy vs gt": (noisy, gt), "dark vs gt": (other, gt.clone())}
    calls = []
    original = prior.predict
    prior.predict = lambda x_t, t: calls.append(x_t.shape[0]) or original(x_t, t)
    try:
        shared = loss_curves(prior, pairs, timesteps=[10, 60], seeds=(0, 1), batch_size=4)
    finally:
        del prior.predict
    assert len(calls) == 3  # noisy, dark and ONE ground truth, one chunk of 4 samples each
    for name, (a, b) in pairs.items():
        alone = loss_curves(prior, {name: (a, b)}, timesteps=[10, 60], seeds=(0, 1), batch_size=4)
        np.testing.assert_allclose(shared.nat[name].samples, alone.nat[name].samples, rtol=1e-5)
        np.testing.assert_allclose(shared.sem[name].samples, alone.sem[name].samples, rtol=1e-5)


def test_inspect_with_a_loss_config_shows_the_same_views_in_one_pass(prior):
    noisy, gt = _pair()
    plain = inspect_pair(prior, noisy, gt, t=40, seed=3)
    calls = []
    original = prior.predict
    prior.predict = lambda x_t, t: calls.append(1) or original(x_t, t)
    try:
        full = inspect_pair(prior, noisy, gt, t=40, seed=3, config=DiffLossConfig(gamma=1.0, lam=1.0))
    finally:
        del prior.predict
    assert len(calls) == 2  # one forward per image serves the views, the values and the gradient
    assert torch.equal(full.eps, plain.eps)
    for name in ("x_t_a", "x_t_b", "eps_hat_a", "eps_hat_b", "x0_a", "x0_b", "h_a", "h_b"):
        torch.testing.assert_close(getattr(full, name), getattr(plain, name), rtol=1e-5, atol=1e-6)
    assert full.l_nat == pytest.approx(plain.l_nat, rel=1e-5)
    reference = gradient_map(prior, noisy, gt, DiffLossConfig(gamma=1.0, lam=1.0), seed=3, t=40)
    assert full.gradient.norm == pytest.approx(reference.norm, rel=1e-6) and reference.norm > 0
    assert plain.gradient is None


def test_gradient_map_shows_where_the_prior_pushes(prior):
    noisy, gt = _pair(12, 20)
    gmap = gradient_map(prior, noisy, gt, DiffLossConfig(gamma=1.0, lam=1.0), seed=0, t=30)
    assert gmap.magnitude.shape == (12, 20)
    assert gmap.norm > 0 and float(gmap.magnitude.max()) > 0
    assert gmap.grad_share["nat"] > 0 and gmap.grad_share["sem"] > 0
    assert sum(gmap.grad_share.values()) == pytest.approx(1.0)
    # the map is the gradient's per-pixel L2, so its L2 is the total norm
    assert float(gmap.magnitude.norm()) == pytest.approx(gmap.norm, rel=1e-4)
    # t drawn by DiffLoss from the config when not given
    drawn = gradient_map(prior, noisy, gt, DiffLossConfig(fixed_t=7), seed=0)
    assert drawn.t == 7 and drawn.norm > 0


@pytest.mark.parametrize("gamma,lam", [(0.05, 0.1), (1.0, 1.0), (3e-3, 20.0)])
def test_reweighted_gradients_match_diffloss_measured_at_those_weights(prior, gamma, lam):
    """One pass at unit weights, re-weighted, gives what DiffLoss itself measures at (gamma, lambda)."""
    noisy, gt = _pair()
    raw = term_gradients(prior, noisy, gt, DiffLossConfig(), seed=2, t=25)
    gmap = raw.weighted(gamma, lam)
    z = noisy[None].clone().requires_grad_(True)
    terms = DiffLoss(prior, DiffLossConfig(gamma=gamma, lam=lam))(z, gt[None], torch.Generator().manual_seed(2), t=25)
    for name in ("fidelity", "nat", "sem"):
        assert gmap.grad_norms[name] == pytest.approx(terms.grad_norms[name], rel=1e-5)
        assert gmap.grad_share[name] == pytest.approx(terms.grad_share[name], rel=1e-5)
    expected = (terms.grads["nat"] + terms.grads["sem"])[0]
    torch.testing.assert_close(gmap.magnitude, expected.norm(dim=0), rtol=1e-5, atol=1e-12)
    assert gmap.nat == pytest.approx(float(terms.nat.detach()), rel=1e-6)


def test_zero_gamma_gives_an_exactly_zero_map_and_a_pure_fidelity_share(prior):
    noisy, gt = _pair()
    raw = term_gradients(prior, noisy, gt, DiffLossConfig(gamma=0.0), seed=0, t=30)
    assert float(raw.nat.norm()) > 0  # the prior still measured a real gradient...
    gmap = raw.weighted(0.0, 0.5)
    assert gmap.norm == 0.0 and torch.count_nonzero(gmap.magnitude) == 0  # ...that a zero weight cancels
    assert gmap.grad_share == {"fidelity": 1.0, "nat": 0.0, "sem": 0.0}


def test_a_pair_inspection_reweights_without_another_prior_pass(prior):
    noisy, gt = _pair()
    p = inspect_pair(prior, noisy, gt, t=40, seed=3, config=DiffLossConfig(gamma=0.05, lam=0.1))
    same = p.term_grads.weighted(0.05, 0.1)
    assert same.grad_norms == p.gradient.grad_norms and torch.equal(same.magnitude, p.gradient.magnitude)
    again = gradient_map(prior, noisy, gt, DiffLossConfig(gamma=0.5, lam=2.0), seed=3, t=40)
    assert p.term_grads.weighted(0.5, 2.0).norm == pytest.approx(again.norm, rel=1e-6) and again.norm > 0


def test_detached_prior_sends_exactly_no_gradient(prior):
    noisy, gt = _pair()
    gmap = gradient_map(prior, noisy, gt, DiffLossConfig(gamma=1.0, lam=1.0, detach_prior=True), seed=0, t=30)
    assert gmap.nat > 0  # still measured...
    assert gmap.norm == 0.0 and torch.count_nonzero(gmap.magnitude) == 0  # ...but trains nothing
    assert gmap.grad_share["fidelity"] == 1.0


def test_purification_uses_the_same_noise_for_every_image(prior):
    noisy, gt = _pair()
    out = purification(prior, {"a": gt, "b": gt.clone(), "noisy": noisy[None]}, t_start=30, steps=3, seed=5)
    assert out["a"].shape == (3, 16, 16) and out["noisy"].shape == (1, 3, 16, 16)
    assert torch.equal(out["a"], out["b"])
    assert not torch.equal(out["a"], out["noisy"][0])
    again = purification(prior, {"a": gt}, t_start=30, steps=3, seed=6)
    assert not torch.equal(out["a"], again["a"])
