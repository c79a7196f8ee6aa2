"""HaarPSI and MDSI: equal to a reference implementation on fixed images, perfect on identical images, worse with
more noise, and stated with their direction in one place."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffloss import metrics
from diffloss.perceptual import PERCEPTUAL, PERCEPTUAL_HIGHER_IS_BETTER, haarpsi, mdsi, ms_gmsd, perceptual_metrics


def _photo(seed: int, h: int, w: int) -> torch.Tensor:
    """A smooth random texture, (3,h,w) float64 (torch's CPU generator is stable across versions)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((1, 3, h + 4, w + 4), generator=g, dtype=torch.float64)
    return F.avg_pool2d(x, 5, stride=1)[0]


def _noisy(img: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (img + sigma * torch.randn(img.shape, generator=g, dtype=torch.float64)).clamp(0, 1)


# Reference values: piq 0.8.0 (pip install --no-deps piq==0.8.0 into a throwaway folder; its submodules imported
# under a stub package, since piq/__init__ imports torchvision), piq.haarpsi and piq.mdsi with their defaults
# (data_range=1; multi_scale_gmsd with chromatic=True), on exactly these images. Odd sizes test the padding;
# 600x520 tests MDSI's 2x2 averaging.
PIQ_0_8_0 = [
    # (seed, h, w, noise sigma, HaarPSI, MDSI, MS-GMSDc)
    (0, 48, 64, 0.05, 0.8758196561, 0.3594330997, 0.0370706332),
    (1, 37, 53, 0.10, 0.7399295135, 0.4370893255, 0.0919266729),
    (2, 600, 520, 0.02, 0.9598227702, 0.1796945704, 0.0096400072),
]


@pytest.mark.parametrize("seed,h,w,sigma,ref_haarpsi,ref_mdsi,ref_ms_gmsd", PIQ_0_8_0)
def test_the_metrics_equal_piq_on_fixed_images(seed, h, w, sigma, ref_haarpsi, ref_mdsi, ref_ms_gmsd):
    gt = _photo(seed, h, w)
    pred = _noisy(gt, sigma, seed + 100)
    assert haarpsi(pred, gt) == pytest.approx(ref_haarpsi, abs=1e-6)
    assert mdsi(pred, gt) == pytest.approx(ref_mdsi, abs=1e-6)
    assert ms_gmsd(pred, gt) == pytest.approx(ref_ms_gmsd, abs=1e-7)


def test_identical_images_get_the_perfect_score():
    img = _photo(3, 40, 44)
    for name, metric in PERCEPTUAL.items():
        assert metric.fn(img, img) == pytest.approx(metric.perfect, abs=1e-9), name


def test_more_noise_scores_monotonically_worse():
    gt = _photo(4, 64, 64)
    for name, metric in PERCEPTUAL.items():
        scores = [metric.fn(_noisy(gt, s, 7), gt) for s in (0.01, 0.03, 0.1, 0.3)]
        steps = np.diff(scores)
        assert (steps < 0).all() if metric.higher_is_better else (steps > 0).all(), (name, scores)


def test_blur_is_worse_than_nothing_and_the_arguments_are_ordered():
    """Blur, the artefact an L2 restorer leaves, is penalised; MDSI's fused-gradient term makes it asymmetric."""
    gt = _photo(5, 48, 48)
    blurred = F.avg_pool2d(F.pad(gt[None], (1, 1, 1, 1), mode="replicate"), 3, stride=1)[0]
    assert haarpsi(blurred, gt) < 0.99
    assert mdsi(blurred, gt) > 0.05
    assert ms_gmsd(blurred, gt) > 0.01
    assert mdsi(blurred, gt) != pytest.approx(mdsi(gt, blurred), abs=1e-6)


def test_inputs_as_numpy_float32_or_tensors_with_grad_give_the_same_number():
    gt = _photo(6, 32, 40)
    pred = _noisy(gt, 0.05, 1)
    ref = perceptual_metrics(pred, gt)
    as_numpy = perceptual_metrics(pred.permute(1, 2, 0).numpy(), gt.permute(1, 2, 0).numpy())
    with_grad = perceptual_metrics(pred.float().requires_grad_(True), gt.float())
    for name in PERCEPTUAL:
        assert as_numpy[name] == pytest.approx(ref[name], abs=1e-12)
        assert with_grad[name] == pytest.approx(ref[name], abs=1e-5)  # float32 input, rounded once


def test_direction_is_stated_once_and_shared_with_the_other_metrics():
    assert PERCEPTUAL_HIGHER_IS_BETTER == {"haarpsi": True, "mdsi": False, "ms_gmsd": False}
    for name, higher in PERCEPTUAL_HIGHER_IS_BETTER.items():
        assert metrics.HIGHER_IS_BETTER[name] is higher
    assert "HaarPSI" in metrics.PERCEPTUAL_CONVENTIONS and "lower is better" in metrics.PERCEPTUAL_CONVENTIONS


def test_no_ground_truth_or_too_small_gives_none_and_a_shape_mismatch_is_an_error():
    img = _photo(7, 12, 12)
    assert perceptual_metrics(img) == {"haarpsi": None, "mdsi": None, "ms_gmsd": None}
    small = perceptual_metrics(img, img)  # HaarPSI needs 16 px, MS-GMSD 17
    assert small["haarpsi"] is None and small["ms_gmsd"] is None and small["mdsi"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="16 px"):
        haarpsi(img, img)
    with pytest.raises(ValueError, match="17 px"):
        ms_gmsd(img, img)
    with pytest.raises(ValueError, match="differ in shape"):
        perceptual_metrics(_photo(7, 20, 20), _photo(7, 20, 24))
    with pytest.raises(ValueError, match="RGB"):
        perceptual_metrics(np.zeros((20, 20)), np.zeros((20, 20)))


def test_the_report_rows_carry_them():
    gt = _photo(8, 32, 32)
    row = metrics.perceptual_reference_metrics(_noisy(gt, 0.05, 2), gt)
    assert {"haarpsi", "mdsi", "ms_gmsd", "ms_ssim", "hf_ratio"} <= set(row)
    assert 0 < row["haarpsi"] < 1 and row["mdsi"] > 0
    assert metrics.perceptual_reference_metrics(gt, None)["haarpsi"] is None
