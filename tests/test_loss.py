"""DiffLoss really trains: its terms send a gradient through the frozen prior, unless detached on purpose."""

from dataclasses import replace

import pytest
import torch

from diffloss.loss import DiffLoss, DiffLossConfig, fidelity_loss, sub_crop, weights_for_shares
from tests.helpers import ConvNet, tiny_prior


@pytest.fixture(scope="module")
def prior():
    return tiny_prior()


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(2, 3, 16, 16, generator=g)
    lq = (gt + 0.2 * torch.randn(2, 3, 16, 16, generator=g)).clamp(0, 1)
    return lq, gt


def _param_grad_norm(net) -> float:
    return float(sum(p.grad.norm() ** 2 for p in net.parameters() if p.grad is not None) ** 0.5)


@pytest.mark.parametrize("term", ["nat", "sem"])
def test_each_prior_term_alone_gives_the_restorer_a_gradient(prior, term):
    torch.manual_seed(0)
    net = ConvNet()
    lq, gt = _batch()
    terms = DiffLoss(prior, DiffLossConfig(gamma=1.0, lam=1.0, report_grad_share=False))(net(lq), gt, torch.Generator().manual_seed(1))
    getattr(terms, term).backward()
    assert _param_grad_norm(net) > 1e-6


@pytest.mark.parametrize("term", ["nat", "sem"])
def test_detach_prior_reproduces_the_released_no_grad_bug(prior, term):
    torch.manual_seed(0)
    net = ConvNet()
    lq, gt = _batch()
    cfg = DiffLossConfig(gamma=1.0, lam=1.0, detach_prior=True)
    terms = DiffLoss(prior, cfg)(net(lq), gt, torch.Generator().manual_seed(1))
    assert float(getattr(terms, term)) > 0  # the term is still measured and logged...
    assert not getattr(terms, term).requires_grad  # ...but carries no gradient at all
    assert terms.grad_norms[term] == 0.0
    # the total's gradient is exactly the fidelity gradient
    terms.backward()
    with_prior = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    fidelity_loss(net(lq), gt).backward()
    assert all(torch.equal(a, p.grad) for a, p in zip(with_prior, net.parameters()))


def test_terms_are_zero_when_restored_equals_gt(prior):
    _, gt = _batch()
    terms = DiffLoss(prior, DiffLossConfig(gamma=1.0, lam=1.0))(gt.clone().requires_grad_(), gt)
    values = terms.as_floats()
    assert values["fidelity"] == values["nat"] == values["sem"] == values["total"] == 0.0


def test_both_branches_are_noised_with_the_same_eps_and_t(prior, monkeypatch):
    seen = []
    original = prior.add_noise

    def spy(x01, t, eps):
        seen.append((t.clone(), eps.clone()))
        return original(x01, t, eps)

    monkeypatch.setattr(prior, "add_noise", spy)
    lq, gt = _batch()
    DiffLoss(prior, DiffLossConfig())(lq, gt, torch.Generator().manual_seed(3))
    assert len(seen) == 2
    (t_a, eps_a), (t_b, eps_b) = seen
    assert torch.equal(t_a, t_b) and torch.equal(eps_a, eps_b)


def test_losses_computed_in_two_threads_on_one_prior_give_the_same_terms_and_gradients(prior):
    """Threads are execution only (the app serves several requests on one cached prior): two DiffLoss calls
    running at once give bit for bit the terms and gradients each gives alone."""
    from concurrent.futures import ThreadPoolExecutor

    def compute(seed: int) -> tuple[torch.Tensor, ...]:
        lq, gt = _batch(seed)
        z = lq.clone().requires_grad_(True)
        terms = DiffLoss(prior, DiffLossConfig(gamma=1.0, lam=1.0))(z, gt, torch.Generator().manual_seed(5))
        terms.backward()
        return (terms.nat.detach(), terms.sem.detach(), terms.outputs[1].h, z.grad, *terms.grads.values())

    alone = [compute(seed) for seed in (0, 1)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(compute, (0, 1)))
    for one, other in zip(alone, together):
        assert all(torch.equal(a, b) for a, b in zip(one, other))
        assert float(one[0]) > 0 and float(one[3].abs().sum()) > 0


def test_prior_weights_unchanged_after_ten_training_steps(prior):
    before = {k: v.clone() for k, v in prior.unet.state_dict().items()}
    torch.manual_seed(0)
    net = ConvNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss = DiffLoss(prior, DiffLossConfig(gamma=1.0, lam=1.0))
    g = torch.Generator().manual_seed(0)
    for step in range(10):
        lq, gt = _batch(step)
        opt.zero_grad()
        loss(net(lq), gt, g).backward()
        opt.step()
    after = prior.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_grad_shares_sum_to_one_and_backward_matches_plain_autograd(prior):
    lq, gt = _batch()
    cfg = DiffLossConfig(gamma=0.5, lam=0.3)
    torch.manual_seed(0)
    net = ConvNet()
    terms = DiffLoss(prior, cfg)(net(lq), gt, torch.Generator().manual_seed(5))
    shares = terms.grad_share
    assert set(shares) == {"fidelity", "nat", "sem"}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert all(v > 0 for v in shares.values())
    terms.backward()
    fast = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    plain = DiffLoss(prior, replace(cfg, report_grad_share=False))(net(lq), gt, torch.Generator().manual_seed(5))
    plain.backward()
    for a, p in zip(fast, net.parameters()):
        assert torch.allclose(a, p.grad, rtol=1e-4, atol=1e-7)


def test_off_config_tracks_terms_without_gradient(prior):
    lq, gt = _batch()
    terms = DiffLoss(prior, DiffLossConfig.off())(lq.clone().requires_grad_(), gt, torch.Generator().manual_seed(0))
    assert float(terms.nat) > 0 and float(terms.sem) > 0
    assert terms.grad_share["nat"] == terms.grad_share["sem"] == 0.0
    assert float(terms.total) == pytest.approx(float(terms.fidelity))


def test_larger_gamma_gives_the_prior_a_larger_share(prior):
    lq, gt = _batch()
    shares = []
    for gamma in (1e-3, 1.0):
        terms = DiffLoss(prior, DiffLossConfig(gamma=gamma, lam=0.1))(lq.clone().requires_grad_(), gt, torch.Generator().manual_seed(0))
        shares.append(terms.grad_share["nat"])
    assert shares[1] > shares[0] * 10


def test_timesteps_are_seeded_and_respect_the_range(prior):
    lq, gt = _batch()
    loss = DiffLoss(prior, DiffLossConfig(t_min=20, t_max=30))
    a = loss(lq, gt, torch.Generator().manual_seed(7))
    b = loss(lq, gt, torch.Generator().manual_seed(7))
    assert torch.equal(a.t, b.t) and float(a.nat) == float(b.nat)
    ts = torch.cat([loss(lq, gt, torch.Generator().manual_seed(s)).t for s in range(20)])
    assert ts.min() >= 20 and ts.max() <= 30 and len(set(ts.tolist())) > 3
    fixed = DiffLoss(prior, DiffLossConfig(fixed_t=42))(lq, gt)
    assert fixed.t.tolist() == [42, 42]


def test_released_preset_and_validation(prior):
    rel = DiffLossConfig.released()
    assert rel.gamma == 1e-3 and rel.gamma * rel.lam == pytest.approx(1e-6)
    with pytest.raises(ValueError, match="within"):
        DiffLoss(prior, DiffLossConfig(t_max=100))
    with pytest.raises(ValueError, match="gamma"):
        DiffLoss(prior, DiffLossConfig(gamma=float("nan")))
    with pytest.raises(ValueError, match="differ in shape"):
        DiffLoss(prior)(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))


@pytest.mark.parametrize("kind,expected", [("mse", 0.01), ("l1", 0.1), ("charbonnier", (0.01 + 1e-6) ** 0.5)])
def test_fidelity_losses(kind, expected):
    assert float(fidelity_loss(torch.full((1, 3, 2, 2), 0.6), torch.full((1, 3, 2, 2), 0.5), kind)) == pytest.approx(expected, rel=1e-4)


def test_one_weight_solves_for_the_requested_share():
    w, _ = weights_for_shares({"fidelity": 2.0, "nat": 0.5, "sem": 0.0}, 0.25, 0.0)
    assert w * 0.5 / (2.0 + w * 0.5) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="detached"):
        weights_for_shares({"fidelity": 1.0, "nat": 0.0, "sem": 1.0}, 0.5, 0.0)


def test_sub_crop_cuts_the_same_seeded_square_from_both_images():
    a, b = torch.rand(2, 3, 40, 48), torch.rand(2, 3, 40, 48)
    za, zb = sub_crop(a, b, 16, torch.Generator().manual_seed(3))
    assert za.shape == zb.shape == (2, 3, 16, 16)
    # the same location in both: find it in a, check b there
    hits = [(i, j) for i in range(25) for j in range(33) if torch.equal(a[..., i:i + 16, j:j + 16], za)]
    assert len(hits) == 1
    i, j = hits[0]
    assert torch.equal(b[..., i:i + 16, j:j + 16], zb)
    again, _ = sub_crop(a, b, 16, torch.Generator().manual_seed(3))
    assert torch.equal(again, za)
    assert sub_crop(a, b, None)[0] is a and sub_crop(a, b, 64)[0] is a  # nothing cut, nothing drawn


def test_prior_crop_feeds_the_prior_a_sub_crop_and_its_gradient_stays_inside(prior, monkeypatch):
    lq, gt = _batch()
    lq, gt = torch.nn.functional.interpolate(lq, size=32), torch.nn.functional.interpolate(gt, size=32)
    seen = []
    original = prior.predict
    monkeypatch.setattr(prior, "predict", lambda x_t, t: seen.append(tuple(x_t.shape)) or original(x_t, t))
    z = lq.clone().requires_grad_(True)
    terms = DiffLoss(prior, DiffLossConfig(gamma=1.0, lam=1.0, prior_crop=16))(z, gt, torch.Generator().manual_seed(1))
    assert seen == [(2, 3, 16, 16)] * 2
    prior_grad = terms.grads["nat"] + terms.grads["sem"]
    touched = prior_grad.abs().sum(dim=(0, 1)) > 0
    rows, cols = touched.any(dim=1).nonzero(), touched.any(dim=0).nonzero()
    assert int(rows.max() - rows.min()) < 16 and int(cols.max() - cols.min()) < 16  # only inside one 16 px square
    assert int(touched.sum()) > 100  # and most of that square
    assert float(terms.grads["fidelity"].abs().min()) >= 0 and int((terms.grads["fidelity"] != 0).sum()) > 16 * 16 * 6


def test_prior_crop_below_the_prior_stride_is_refused(prior):
    with pytest.raises(ValueError, match="prior_crop must be at least 8"):
        DiffLoss(prior, DiffLossConfig(prior_crop=4))


def test_prior_samples_sends_the_prior_a_seeded_subset_and_only_it_gets_a_prior_gradient(prior, monkeypatch):
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(6, 3, 16, 16, generator=g)
    lq = (gt + 0.2 * torch.randn(6, 3, 16, 16, generator=g)).clamp(0, 1)
    seen = []
    original = prior.predict
    monkeypatch.setattr(prior, "predict", lambda x_t, t: seen.append(tuple(x_t.shape)) or original(x_t, t))
    z = lq.clone().requires_grad_(True)
    cfg = DiffLossConfig(gamma=1.0, lam=1.0, prior_samples=2)
    terms = DiffLoss(prior, cfg)(z, gt, torch.Generator().manual_seed(4))
    assert seen == [(2, 3, 16, 16)] * 2
    per_item = (terms.grads["nat"] + terms.grads["sem"]).flatten(1).abs().sum(dim=1)
    assert int((per_item > 0).sum()) == 2  # two items get the prior's push, the others only fidelity
    assert bool((terms.grads["fidelity"].flatten(1).abs().sum(dim=1) > 0).all())
    again = DiffLoss(prior, cfg)(lq.clone().requires_grad_(True), gt, torch.Generator().manual_seed(4))
    assert float(again.nat) == float(terms.nat)  # the subset is seeded
    with pytest.raises(ValueError, match="prior_samples must be at least 1"):
        DiffLoss(prior, DiffLossConfig(prior_samples=0))


def test_a_sub_crop_or_subset_is_a_part_only_when_smaller_than_the_whole():
    from diffloss.loss import part_or_all

    assert [part_or_all(n, 64) for n in (None, 0, 8, 32, 63, 64, 96)] == [None, None, 8, 32, 63, None, None]
