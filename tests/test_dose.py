"""The dose options of DiffLoss: t band and weight, per-sample normalisation, a gradient cap, the Jacobian-free
(score-distillation) gradient. Each is checked against its formula; the defaults stay the paper's loss."""

import pytest
import torch

from diffloss import schedule
from diffloss.loss import DiffLoss, DiffLossConfig, output_distances
from tests.helpers import tiny_prior


@pytest.fixture(scope="module")
def prior():
    return tiny_prior()


def _images(seed: int = 0, n: int = 2):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(n, 3, 16, 16, generator=g)
    z = (gt + 0.1 * torch.randn(n, 3, 16, 16, generator=g)).clamp(0, 1)
    return z.requires_grad_(True), gt


def _call(prior, cfg, z, gt, t=(30, 60), seed=1):
    return DiffLoss(prior, cfg)(z, gt, torch.Generator().manual_seed(seed), t=torch.tensor(t))


def _plain(prior, z, gt, t, eps):
    """The paper's per-sample (L_nat, L_sem) for one shared (t, eps), computed by hand."""
    with torch.no_grad():
        a = prior.predict(prior.add_noise(z, t, eps), t)
        b = prior.predict(prior.add_noise(gt, t, eps), t)
    return output_distances(a.eps, a.h, b.eps, b.h, per_sample=True), (a, b)


def test_defaults_are_the_papers_loss(prior):
    z, gt = _images()
    terms = _call(prior, DiffLossConfig(gamma=1.0), z, gt)
    (nat, sem), _ = _plain(prior, z.detach(), gt, terms.t, terms.eps)
    assert float(terms.nat.detach()) == pytest.approx(float(nat.mean()), rel=1e-5)
    assert float(terms.sem.detach()) == pytest.approx(float(sem.mean()), rel=1e-5)


@pytest.mark.parametrize("kind", ["sigma2", "x0"])
def test_t_weight_scales_each_sample_by_its_formula(prior, kind):
    z, gt = _images()
    terms = _call(prior, DiffLossConfig(gamma=1.0, t_weight=kind), z, gt)
    (nat, sem), _ = _plain(prior, z.detach(), gt, terms.t, terms.eps)
    a = prior.alphas_cumprod[terms.t].double()
    w = (1 - a) if kind == "sigma2" else (1 - a) / a
    assert float(terms.nat.detach()) == pytest.approx(float((w * nat.double()).mean()), rel=1e-5)
    assert float(terms.sem.detach()) == pytest.approx(float((w * sem.double()).mean()), rel=1e-5)


def test_x0_weighting_is_the_priors_part_of_the_x0_estimates_distance(prior):
    z, gt = _images()
    terms = _call(prior, DiffLossConfig(gamma=1.0, t_weight="x0"), z, gt)
    _, (a, b) = _plain(prior, z.detach(), gt, terms.t, terms.eps)
    x_z = prior.add_noise(z.detach(), terms.t, terms.eps)
    x_g = prior.add_noise(gt, terms.t, terms.eps)
    alphas = prior.alphas_cumprod
    x0_z = schedule.x0_from_eps(x_z, a.eps, terms.t, alphas)
    x0_g = schedule.x0_from_eps(x_g, b.eps, terms.t, alphas)
    image_gap = schedule.to_model_range(z.detach()) - schedule.to_model_range(gt)
    assert float(terms.nat.detach()) == pytest.approx(float((x0_z - x0_g - image_gap).pow(2).mean()), rel=1e-4)


def test_uniform_weights_hand_the_small_t_most_of_the_gradient_and_sigma2_does_not(prior):
    """Why the weighting exists: at equal image error, L_nat's gradient shrinks with t under uniform weights."""
    def grad_norm(kind: str, t: int) -> float:
        z, gt = _images(3, n=1)
        _call(prior, DiffLossConfig(gamma=1.0, lam=0.0, t_weight=kind, report_grad_share=False), z, gt, t=(t,)) \
            .nat.backward()
        return float(z.grad.norm())

    uniform = grad_norm("uniform", 5) / grad_norm("uniform", 80)
    sigma2 = grad_norm("sigma2", 5) / grad_norm("sigma2", 80)
    assert uniform > 3 * sigma2


def test_sds_gradient_is_the_noise_prediction_gap_without_the_unets_jacobian(prior):
    z, gt = _images()
    terms = _call(prior, DiffLossConfig(gamma=1.0, lam=0.0, gradient="sds", report_grad_share=False), z, gt)
    terms.nat.backward()
    _, (a, b) = _plain(prior, z.detach(), gt, terms.t, terms.eps)
    n, per_sample = z.shape[0], z[0].numel()
    sqrt_a = prior.alphas_cumprod[terms.t].sqrt().float().reshape(-1, 1, 1, 1)
    # d L_nat / d eps_hat = 2 delta / (n * per_sample); z_t = sqrt(a) (2 z - 1) + ...: d z_t / d z = 2 sqrt(a)
    expected = 2 * (a.eps - b.eps) / (n * per_sample) * 2 * sqrt_a
    torch.testing.assert_close(z.grad, expected, rtol=1e-4, atol=1e-9)
    assert all(p.grad is None for p in prior.unet.parameters())


def test_sds_logs_the_same_terms_and_its_sem_sends_no_gradient(prior):
    z, gt = _images()
    full = _call(prior, DiffLossConfig(gamma=1.0, lam=1.0), z, gt)
    sds = _call(prior, DiffLossConfig(gamma=1.0, lam=1.0, gradient="sds"), z, gt)
    assert float(sds.nat) == pytest.approx(float(full.nat), rel=1e-5)
    assert float(sds.sem) == pytest.approx(float(full.sem), rel=1e-5)
    assert sds.grad_norms["sem"] == 0.0 and full.grad_norms["sem"] > 0
    assert sds.grad_norms["nat"] > 0


def test_sds_and_full_gradients_differ(prior):
    """The Jacobian matters: the two gradients are not the same vector (else the option would be pointless)."""
    z1, gt = _images()
    z2 = z1.detach().clone().requires_grad_(True)
    _call(prior, DiffLossConfig(gamma=1.0, lam=0.0, report_grad_share=False), z1, gt).nat.backward()
    _call(prior, DiffLossConfig(gamma=1.0, lam=0.0, gradient="sds", report_grad_share=False), z2, gt).nat.backward()
    assert float((z1.grad - z2.grad).norm()) > 0.05 * float(z1.grad.norm())


def test_per_sample_norm_gives_every_sample_the_same_pull(prior):
    """Normalised, a sample's term is its root distance: one far-off sample no longer outweighs the others."""
    z, gt = _images()
    terms = _call(prior, DiffLossConfig(gamma=1.0, per_sample_norm=True), z, gt)
    (nat, sem), _ = _plain(prior, z.detach(), gt, terms.t, terms.eps)
    assert float(terms.nat.detach()) == pytest.approx(float(nat.sqrt().mean()), rel=1e-5)
    assert float(terms.sem.detach()) == pytest.approx(float(sem.sqrt().mean()), rel=1e-5)


def test_grad_cap_limits_the_priors_gradient_relative_to_fidelity(prior):
    z, gt = _images()
    terms = _call(prior, DiffLossConfig(gamma=1e4, lam=0.1, grad_cap=0.5, report_grad_share=False), z, gt)
    terms.backward()
    g_fid = 2 * (z.detach() - gt) / z.numel()  # d mse / d z
    g_prior = z.grad - g_fid
    assert float(g_prior.norm()) == pytest.approx(0.5 * float(g_fid.norm()), rel=1e-3)
    assert 0 < terms.cap_scale < 1 and "cap_scale" in terms.as_floats()


def test_grad_cap_changes_nothing_when_the_prior_is_within_it(prior):
    z1, gt = _images()
    z2 = z1.detach().clone().requires_grad_(True)
    _call(prior, DiffLossConfig(gamma=1e-3, report_grad_share=False), z1, gt).backward()
    capped = _call(prior, DiffLossConfig(gamma=1e-3, grad_cap=10.0, report_grad_share=False), z2, gt)
    capped.backward()
    assert capped.cap_scale == 1.0
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-5, atol=1e-10)


def test_grad_cap_with_measured_shares_reuses_the_measured_gradients(prior):
    z, gt = _images()
    terms = _call(prior, DiffLossConfig(gamma=1e4, grad_cap=0.25), z, gt)
    terms.backward()
    g_prior = z.grad - terms.grads["fidelity"]
    assert float(g_prior.norm()) == pytest.approx(0.25 * terms.grad_norms["fidelity"], rel=1e-3)


def test_detach_prior_still_gives_exactly_zero_prior_gradient_in_sds_mode(prior):
    z, gt = _images()
    terms = _call(prior, DiffLossConfig(gamma=1.0, gradient="sds", detach_prior=True, report_grad_share=False), z, gt)
    assert not terms.nat.requires_grad and not terms.sem.requires_grad


@pytest.mark.parametrize("field, value, words", [
    ("t_weight", "snr", "unknown t weighting"),
    ("gradient", "jacobian", "unknown gradient"),
    ("grad_cap", 0.0, "grad_cap must be"),
    ("grad_cap", float("inf"), "grad_cap must be"),
])
def test_bad_dose_settings_are_refused_with_a_message(prior, field, value, words):
    with pytest.raises(ValueError, match=words):
        DiffLoss(prior, DiffLossConfig(**{field: value}))


def test_min_snr_weight_caps_the_signal_to_noise_ratio():
    alphas = torch.tensor([0.99, 0.5, 0.01])
    w = schedule.min_snr_weight(alphas, torch.tensor([0, 1, 2]), gamma=5.0)
    torch.testing.assert_close(w, torch.tensor([5.0 / 99.0, 1.0, 1.0]), rtol=1e-5, atol=1e-7)


def test_x0_psnr_from_eps_mse_matches_the_x0_error_it_implies():
    # a = 0.5: the x0 error in [0,1] is (1 - a) / (4 a) = 1/4 of the eps MSE; 0.04 / 4 = 0.01 -> 20 dB
    assert schedule.x0_psnr_from_eps_mse(0.04, 0.5) == pytest.approx(20.0)


def test_the_command_line_sets_every_dose_option():
    from diffloss.train_cli import build_parser, config_from_args

    args = build_parser().parse_args(["restorer", "--diffloss", "on", "--task", "noise", "--t-min", "100",
                                      "--t-max", "700", "--t-weight", "sigma2", "--gradient", "sds",
                                      "--per-sample-norm", "--grad-cap", "0.5", "--out", "x"])
    loss = config_from_args(args).loss
    assert (loss.t_min, loss.t_max, loss.t_weight, loss.gradient, loss.per_sample_norm, loss.grad_cap) == \
        (100, 700, "sigma2", "sds", True, 0.5)


def test_the_command_line_sets_every_prior_recipe_option():
    from diffloss.train_cli import build_parser, config_from_args

    args = build_parser().parse_args(["prior", "--clean", "photos", "--init", "pretrained/prior", "--t-min", "30",
                                      "--t-max", "800", "--weighting", "min-snr", "--augment", "--holdout-every",
                                      "10", "--out", "x"])
    cfg = config_from_args(args)
    assert (cfg.init, cfg.t_min, cfg.t_max, cfg.weighting, cfg.augment, cfg.holdout_every) == \
        ("pretrained/prior", 30, 800, "min-snr", True, 10)


@pytest.mark.parametrize("field", ["gamma", "lam"])
def test_a_weight_beyond_any_dose_is_refused(prior, field):
    """Issue #25: gamma 1e30 was accepted and the gradient shares came out as nan%."""
    with pytest.raises(ValueError, match=f"{field} must be a number from 0 to 1e\\+06"):
        DiffLoss(prior, DiffLossConfig(**{field: 1e30}))
