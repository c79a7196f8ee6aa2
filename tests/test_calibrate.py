"""Calibration solves for the weights that give each prior term the requested share of the gradient."""

import pytest
import torch

from diffloss.calibrate import calibrate
from diffloss.loss import DiffLoss, DiffLossConfig, shares_for_weights, weights_for_shares
from diffloss.nets import Restorer, RestorerConfig
from tests.helpers import tiny_prior


def test_weights_reproduce_the_requested_shares():
    norms = {"fidelity": 2.0, "nat": 0.5, "sem": 4.0}
    gamma, lam = weights_for_shares(norms, 0.2, 0.1)
    weighted = {"fidelity": 2.0, "nat": gamma * 0.5, "sem": gamma * lam * 4.0}
    total = sum(weighted.values())
    assert weighted["nat"] / total == pytest.approx(0.2)
    assert weighted["sem"] / total == pytest.approx(0.1)


def test_shares_for_weights_inverts_weights_for_shares():
    norms = {"fidelity": 0.03, "nat": 0.5, "sem": 0.02}
    gamma, lam = weights_for_shares(norms, 0.25, 0.05)
    shares = shares_for_weights(norms, gamma, lam)
    assert shares["nat"] == pytest.approx(0.25, rel=1e-9) and shares["sem"] == pytest.approx(0.05, rel=1e-9)
    assert shares["fidelity"] == pytest.approx(0.70, rel=1e-9)
    # The released weights on these norms: the prior's share is tiny, and gamma 0 gives it nothing at all.
    released = shares_for_weights(norms, 1e-3, 1e-3)
    assert released["nat"] == pytest.approx(0.0005 / 0.0305, rel=1e-5) and released["sem"] < 1e-6
    assert shares_for_weights(norms, 0.0, 0.1) == {"fidelity": 1.0, "nat": 0.0, "sem": 0.0}


def test_impossible_shares_are_refused():
    with pytest.raises(ValueError, match="sum to less than 1"):
        weights_for_shares({"fidelity": 1, "nat": 1, "sem": 1}, 0.6, 0.5)


def test_calibrated_weights_give_the_shares_on_the_same_data():
    torch.manual_seed(0)
    prior = tiny_prior()
    restorer = Restorer(RestorerConfig(task="noise", width=8)).eval()
    images = [torch.rand(3, 32, 32) for _ in range(2)]
    cal = calibrate(prior, restorer, "noise", images, nat_share=0.3, sem_share=0.1, crop=32)
    assert cal.gamma > 0 and cal.lam > 0 and cal.images == 2
    # one image: measured shares at the calibrated weights match the targets
    single = calibrate(prior, restorer, "noise", images[:1], nat_share=0.3, sem_share=0.1, crop=32)
    from diffloss import degrade

    pair = degrade.make_pair("noise", images[0], 0)
    with torch.no_grad():
        restored = restorer(pair.net_input).clamp(0, 1)
    terms = DiffLoss(prior, DiffLossConfig(gamma=single.gamma, lam=single.lam))(
        restored.requires_grad_(True), images[0][None], torch.Generator().manual_seed(0))
    assert terms.grad_share["nat"] == pytest.approx(0.3, rel=1e-3)
    assert terms.grad_share["sem"] == pytest.approx(0.1, rel=1e-3)


@pytest.mark.parametrize("dose, sem_share", [({"t_weight": "sigma2", "t_min": 10, "t_max": 60}, 0.1),
                                             ({"gradient": "sds"}, 0.0), ({"per_sample_norm": True}, 0.1)])
def test_calibration_keeps_the_dose_so_the_shares_hold_under_it(dose, sem_share):
    """Weights solved without the dose would miss the target under it: calibration measures through the dose."""
    torch.manual_seed(0)
    prior = tiny_prior()
    restorer = Restorer(RestorerConfig(task="noise", width=8)).eval()
    image = torch.rand(3, 32, 32)
    cal = calibrate(prior, restorer, "noise", [image], nat_share=0.3, sem_share=sem_share, crop=32,
                    config=DiffLossConfig(**dose))
    from diffloss import degrade

    pair = degrade.make_pair("noise", image, 0)
    with torch.no_grad():
        restored = restorer(pair.net_input).clamp(0, 1)
    terms = DiffLoss(prior, DiffLossConfig(gamma=cal.gamma, lam=cal.lam, **dose))(
        restored.requires_grad_(True), image[None], torch.Generator().manual_seed(0))
    assert terms.grad_share["nat"] == pytest.approx(0.3, rel=1e-3)
    assert terms.grad_share["sem"] == pytest.approx(sem_share, abs=1e-3)


def test_a_semantic_share_under_the_jacobian_free_gradient_is_refused():
    restorer = Restorer(RestorerConfig(task="noise", width=8)).eval()
    with pytest.raises(ValueError, match="nothing through L_sem"):
        calibrate(tiny_prior(), restorer, "noise", [torch.rand(3, 32, 32)], 0.3, 0.1, crop=32,
                  config=DiffLossConfig(gradient="sds"))
