"""Metrics say what they measure: known MSE gives a known PSNR, conventions change numbers as documented."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from diffloss.metrics import CONVENTIONS, compute_metrics, load_lpips, psnr, rgb_to_y, ssim


def _image(seed: int = 0, h: int = 64, w: int = 80) -> torch.Tensor:
    """float64, so that an exact offset stays exact (float32 rounding alone moves PSNR by ~1e-6 dB)."""
    gen = torch.Generator().manual_seed(seed)
    return 0.2 + 0.6 * torch.rand(3, h, w, generator=gen, dtype=torch.float64)  # room for a +0.1 offset


def test_constant_offset_of_0_1_gives_20_db():
    gt = _image()
    assert psnr(gt + 0.1, gt) == pytest.approx(20.0, abs=1e-6)
    assert psnr(gt + 0.1, gt, data_range=2.0) == pytest.approx(20.0 + 20 * math.log10(2.0), abs=1e-6)


def test_torch_chw_batched_and_numpy_hwc_inputs_agree():
    gt, pred = _image(0), _image(1)
    ref = psnr(pred, gt)
    assert psnr(pred[None], gt[None]) == pytest.approx(ref, abs=1e-9)
    assert psnr(pred.permute(1, 2, 0).numpy(), gt.permute(1, 2, 0).numpy()) == pytest.approx(ref, abs=1e-6)
    assert ssim(pred[None], gt.permute(1, 2, 0).numpy()) == pytest.approx(ssim(pred, gt), abs=1e-6)


def test_identical_images_give_infinite_psnr_without_warnings_and_ssim_one():
    gt = _image()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert psnr(gt, gt.clone()) == math.inf
    assert ssim(gt, gt.clone()) == pytest.approx(1.0, abs=1e-12)


def test_crop_border_ignores_errors_in_the_border():
    gt = _image()
    pred = gt.clone()
    pred[:, :4, :] += 0.1  # error only in the top 4 rows
    assert math.isfinite(psnr(pred, gt))
    assert psnr(pred, gt, crop_border=4) == math.inf
    assert psnr(pred, gt, crop_border=3) < math.inf
    assert ssim(pred, gt, crop_border=8) > ssim(pred, gt)


def test_y_channel_uses_bt601_luma_weights():
    gt = _image()
    pred = gt.clone()
    pred[2] += 0.1  # error in blue only: RGB MSE = 0.01 / 3, Y MSE = (0.1 * 24.966/255)^2
    assert psnr(pred, gt) == pytest.approx(10 * math.log10(3 / 0.01), abs=1e-6)
    assert psnr(pred, gt, y_channel=True) == pytest.approx(-20 * math.log10(0.1 * 24.966 / 255), abs=1e-6)
    assert ssim(pred, gt, y_channel=True) != pytest.approx(ssim(pred, gt), abs=1e-4)


def test_rgb_to_y_spans_studio_range():
    black, white = np.zeros((1, 1, 3)), np.ones((1, 1, 3))
    assert rgb_to_y(black).item() == pytest.approx(16 / 255, abs=1e-12)
    assert rgb_to_y(white).item() == pytest.approx(235 / 255, abs=1e-3)


def test_ssim_decreases_as_noise_grows():
    gt = _image(h=96, w=96)
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(gt.shape, generator=gen)
    values = [ssim((gt + s * noise).clamp(0, 1), gt) for s in (0.01, 0.05, 0.1, 0.2)]
    assert all(a > b for a, b in zip(values, values[1:])), values
    assert values[0] > 0.95 and values[-1] < 0.7


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(64, 80, 3\).*\(64, 72, 3\)"):
        psnr(_image(w=80), _image(w=72))
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(_image(w=80), _image(w=72))


def test_batches_and_integer_arrays_are_refused():
    with pytest.raises(ValueError, match="batch"):
        psnr(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="uint8"):
        psnr(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8))


def test_conventions_line_states_range_crop_and_window():
    assert "\n" not in CONVENTIONS
    for word in ("data_range=1", "crop_border=0", "sigma 1.5", "NIQE", "LPIPS"):
        assert word in CONVENTIONS


def test_lpips_reports_why_it_is_missing_here():
    fn, reason = load_lpips()
    assert fn is None
    assert reason.startswith("LPIPS unavailable") and len(reason) > 20


def test_compute_metrics_fills_what_it_can():
    gt = _image(h=200, w=200)
    pred = (gt + 0.05).clamp(0, 1)
    full = compute_metrics(pred, gt)
    assert full["psnr"] == pytest.approx(psnr(pred, gt)) and full["ssim"] == pytest.approx(ssim(pred, gt))
    assert full["niqe"] is not None and math.isfinite(full["niqe"])
    assert full["lpips"] is None  # no LPIPS function given
    blind = compute_metrics(pred)
    assert blind["psnr"] is None and blind["ssim"] is None and blind["niqe"] == pytest.approx(full["niqe"])
    fake_lpips = compute_metrics(pred, gt, lpips_fn=lambda a, b: 0.25)
    assert fake_lpips["lpips"] == 0.25
    small = compute_metrics(pred[:, :100, :100], gt[:, :100, :100])
    assert small["niqe"] is None and small["psnr"] is not None  # NIQE needs 192 px; the others do not


def test_ssim_agrees_with_scikit_image_in_float64():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(1)
    gt = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(64, 80), mode="bicubic")[0]
    gt = gt.clamp(0, 1)
    pred = (gt + 0.1 * torch.randn(gt.shape, generator=g)).clamp(0, 1)
    reference = structural_similarity(gt.permute(1, 2, 0).double().numpy(), pred.permute(1, 2, 0).double().numpy(),
                                      data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False)
    assert ssim(pred, gt) == pytest.approx(reference, abs=1e-6)


def test_psnr_equals_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio

    g = torch.Generator().manual_seed(2)
    gt = torch.rand(3, 40, 56, generator=g)
    pred = (gt + 0.05 * torch.randn(gt.shape, generator=g)).clamp(0, 1)
    reference = peak_signal_noise_ratio(gt.permute(1, 2, 0).double().numpy(), pred.permute(1, 2, 0).double().numpy(),
                                        data_range=1.0)
    assert psnr(pred, gt) == pytest.approx(reference, rel=1e-12)
    assert psnr(pred, gt, data_range=2.0) == pytest.approx(reference + 20 * math.log10(2), rel=1e-12)
