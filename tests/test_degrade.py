"""Each task degrades a clean photo in its own, reproducible, physically plausible way."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from diffloss.degrade import (
    TASKS,
    add_haze,
    add_noise,
    add_rain,
    crop_to_multiple,
    darken,
    get_task,
    make_pair,
    prepare_input,
)

ALL_TASKS = ["lowlight", "rain", "haze", "noise", "sr4", "inpaint"]


def _photo(n: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    """A stand-in photo: smooth colour regions (values 0.15-0.85) plus edges and fine texture."""
    g = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.rand(n, 3, 6, 6, generator=g), size=(size, size), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    edges = ((xx // 8 + yy // 12) % 2).float().expand(n, 3, size, size)
    texture = torch.rand(n, 3, size, size, generator=g)
    return (0.15 + 0.7 * (0.5 * smooth.clamp(0, 1) + 0.3 * edges + 0.2 * texture)).clamp(0, 1)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1 / F.mse_loss(a, b).item())


def test_task_table_names_and_conventions():
    assert list(TASKS) == ALL_TASKS
    assert {n for n, t in TASKS.items() if t.from_paper} == {"lowlight", "rain", "haze"}
    assert {n: t.in_channels for n, t in TASKS.items() if t.in_channels != 3} == {"inpaint": 4}
    assert {n: t.size_multiple for n, t in TASKS.items() if t.size_multiple != 1} == {"sr4": 4}
    assert all(t.name == n and t.description for n, t in TASKS.items())


@pytest.mark.parametrize("task", ALL_TASKS)
def test_every_task_shapes_range_and_a_measurable_degradation(task):
    clean = _photo()
    d = make_pair(task, clean, seed=3)
    spec = get_task(task)
    small = 16 if task == "sr4" else 64
    assert d.lq.shape == (2, 3, small, small)
    assert d.net_input.shape == (2, spec.in_channels, 64, 64)
    assert d.lq.dtype == clean.dtype and d.net_input.dtype == clean.dtype
    for t in (d.lq, d.net_input):
        assert t.min() >= 0 and t.max() <= 1
    assert (d.mask is not None) == (task == "inpaint")
    psnr = _psnr(d.net_input[:, :3], clean)
    assert 5 < psnr < 40, f"{task}: PSNR {psnr:.1f} dB"


@pytest.mark.parametrize("task", ALL_TASKS)
def test_same_seed_is_bit_identical_and_other_seeds_differ(task):
    clean = _photo()
    a, b = make_pair(task, clean, 7), make_pair(task, clean, torch.Generator().manual_seed(7))
    assert torch.equal(a.net_input, b.net_input) and torch.equal(a.lq, b.lq)
    c = make_pair(task, clean, 8)
    if task == "sr4":  # the bicubic benchmark degradation is deterministic by design
        assert torch.equal(a.net_input, c.net_input)
    else:
        assert not torch.equal(a.net_input, c.net_input)


def test_single_image_input_gives_a_batch_of_one_and_keeps_dtype():
    clean = _photo(1)[0].double()
    d = make_pair("haze", clean, 0)
    assert d.lq.shape == (1, 3, 64, 64) and d.lq.dtype == torch.float64


def test_gaussian_noise_at_sigma_25_gives_the_textbook_psnr():
    clean = torch.full((4, 3, 64, 64), 0.5)  # mid grey: clamping never bites at 25/255
    noisy = add_noise(clean, torch.Generator().manual_seed(0), sigma=25 / 255)
    assert _psnr(noisy, clean) == pytest.approx(20 * math.log10(255 / 25), abs=0.5)  # 20.17 dB


def test_noise_sigma_is_drawn_per_sample_within_5_to_50():
    clean = torch.full((16, 3, 32, 32), 0.5)
    noise = add_noise(clean, torch.Generator().manual_seed(1)) - clean
    sigmas = noise.std(dim=(1, 2, 3)) * 255
    assert sigmas.min() > 4 and sigmas.max() < 52 and sigmas.max() - sigmas.min() > 10


def test_low_light_is_much_darker_and_noisy():
    clean = _photo(4)
    g = torch.Generator().manual_seed(0)
    dark = darken(clean, g)
    assert (dark.mean(dim=(1, 2, 3)) < 0.35 * clean.mean(dim=(1, 2, 3))).all()
    flat = torch.full((1, 3, 32, 32), 0.6)
    shot = darken(flat, g, exposure=0.3, gamma=1.0, photons=200.0, read_noise=0.0, colour_gain=1.0)
    assert shot.mean().item() == pytest.approx(0.18, abs=0.01)  # exposure x signal
    assert shot.var().item() == pytest.approx(0.18 / 200, rel=0.2)  # Poisson: variance = mean / photons


def test_haze_lifts_dark_pixels_towards_airlight_and_lowers_contrast():
    clean = _photo(2)
    clean[:, :, 40:, :] = 0.05  # a dark region
    hazy = add_haze(clean, torch.Generator().manual_seed(0), airlight=0.9, beta=2.0)
    dark = clean < 0.1
    assert hazy[dark].mean() > clean[dark].mean() + 0.15
    assert (hazy[dark] <= 0.9 * 1.05 + 1e-6).all()  # never brighter than the airlight
    assert (hazy.std(dim=(1, 2, 3)) < clean.std(dim=(1, 2, 3))).all()
    far = slice(0, 32)  # the far (top) half loses most of its contrast
    assert (hazy[:, :, far].std(dim=(1, 2, 3)) < 0.6 * clean[:, :, far].std(dim=(1, 2, 3))).all()
    far_top = (hazy - clean)[:, :, :8].abs().mean()
    near_bottom = (hazy - clean)[:, :, -8:].abs().mean()
    assert far_top > near_bottom  # the depth ramp puts more haze at the top


def test_rain_makes_bright_streaks_along_the_fall_direction_not_noise():
    clean = torch.full((2, 3, 96, 96), 0.3)
    rainy = add_rain(clean, torch.Generator().manual_seed(0), angle=0.0, length=30.0, density=0.003)
    streaks = (rainy - clean)[:, 0]
    assert (streaks >= -1e-6).all()  # rain only brightens (screen blend)
    assert 0.01 < (streaks > 0.05).float().mean() < 0.5  # sparse, but there
    s = streaks - streaks.mean()
    vertical = (s[:, 1:, :] * s[:, :-1, :]).mean() / s.var()
    horizontal = (s[:, :, 1:] * s[:, :, :-1]).mean() / s.var()
    assert vertical > 0.9 and horizontal < 0.7, (vertical, horizontal)  # long in y, thin in x


def test_sr4_lq_is_a_quarter_and_net_input_is_its_bicubic_upsample():
    clean = _photo()
    d = make_pair("sr4", clean, 0)
    assert d.lq.shape[-2:] == (16, 16)
    assert torch.equal(d.net_input, prepare_input("sr4", d.lq))
    assert torch.allclose(d.lq.mean(), clean.mean(), atol=0.01)  # downscaling keeps the average


def test_sr4_refuses_sizes_that_are_not_multiples_of_4():
    with pytest.raises(ValueError, match="crop_to_multiple"):
        make_pair("sr4", torch.rand(3, 30, 30), 0)
    cropped = crop_to_multiple(torch.rand(1, 3, 30, 31), 4)
    assert cropped.shape == (1, 3, 28, 28)
    assert make_pair("sr4", cropped, 0).lq.shape == (1, 3, 7, 7)


def test_crop_to_multiple_is_centred():
    x = torch.arange(30 * 30).float().view(1, 30, 30)
    assert torch.equal(crop_to_multiple(x, 4), x[:, 1:29, 1:29])
    assert torch.equal(crop_to_multiple(x, 1), x)


def test_inpaint_masks_cover_10_to_35_percent_and_holes_are_zero():
    clean = _photo(1, 64)
    coverages = []
    for seed in range(12):
        d = make_pair("inpaint", clean, seed)
        m = d.mask
        assert m.shape == (1, 1, 64, 64) and set(m.unique().tolist()) <= {0.0, 1.0}
        assert (d.lq * m == 0).all()  # holes are filled with 0
        assert torch.equal(d.lq * (1 - m), clean * (1 - m))  # the rest is untouched
        assert torch.equal(d.net_input[:, 3:], m)
        coverages.append(m.mean().item())
    assert 0.09 <= min(coverages) and max(coverages) <= 0.40, coverages
    assert max(coverages) - min(coverages) > 0.05  # coverage varies


def test_unknown_task_names_the_choices():
    choices = "lowlight, rain, haze, noise, sr4, inpaint"
    with pytest.raises(ValueError, match=rf"unknown task 'deblur'; choose one of: {choices}"):
        get_task("deblur")
    with pytest.raises(ValueError, match="unknown task"):
        make_pair("deblur", torch.rand(3, 8, 8), 0)


def test_make_pair_rejects_images_outside_0_1():
    with pytest.raises(ValueError, match=r"\[0,1\]"):
        make_pair("noise", torch.full((3, 8, 8), 200.0), 0)
    with pytest.raises(TypeError, match="float"):
        make_pair("noise", torch.zeros(3, 8, 8, dtype=torch.uint8), 0)


def test_prepare_input_for_already_degraded_photos():
    lq = torch.rand(3, 8, 10, generator=torch.Generator().manual_seed(0))
    up = prepare_input("sr4", lq)
    assert up.shape == (3, 32, 40) and up.min() >= 0 and up.max() <= 1
    assert prepare_input("sr4", lq[None]).shape == (1, 3, 32, 40)
    assert torch.equal(prepare_input("rain", lq), lq)

    with pytest.raises(ValueError, match="mask"):
        prepare_input("inpaint", lq)
    soft = torch.zeros(8, 10)
    soft[2:5, 3:7] = 0.8  # a soft brush from the UI
    x = prepare_input("inpaint", lq, soft)
    assert x.shape == (4, 8, 10)
    assert (x[:3, 2:5, 3:7] == 0).all() and torch.equal(x[:3, 0], lq[:, 0])
    assert set(x[3].unique().tolist()) == {0.0, 1.0}
    with pytest.raises(ValueError, match="mask must be"):
        prepare_input("inpaint", lq, torch.zeros(4, 4))
