"""Pictures for the UI: right shapes and dtypes, and comparable colours when asked for."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffloss.inspection import CurveStats, LossCurves
from diffloss.viz import (
    enlarge, grid, heatmap, loss_curve_figure, pca_basis, pca_rgb, shared_scale, signed_to_image, to_image,
)


def _h(seed: int = 0, c: int = 8, hh: int = 5, hw: int = 7) -> torch.Tensor:
    return torch.randn(1, c, hh, hw, generator=torch.Generator().manual_seed(seed))


def test_to_image_shape_and_range():
    img = to_image(torch.tensor([0.0, 0.5, 1.0]).reshape(3, 1, 1).expand(3, 4, 6))
    assert img.shape == (4, 6, 3) and img.dtype == np.uint8
    assert tuple(img[0, 0]) == (0, 128, 255)
    assert to_image(torch.rand(4, 6)).shape == (4, 6, 3)


def test_signed_to_image_maps_zero_to_mid_grey_and_scale_fixes_the_mapping():
    noise = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0))
    noise[:, 0, 0] = 0
    img = signed_to_image(noise)
    assert img.shape == (8, 8, 3) and img.dtype == np.uint8
    assert np.all(np.abs(img[0, 0].astype(int) - 127.5) <= 1)
    # with a shared scale, half the noise is half as far from grey as the noise itself
    scale = shared_scale(noise, noise / 2)
    full = signed_to_image(noise, scale).astype(float) - 127.5
    half = signed_to_image(noise / 2, scale).astype(float) - 127.5
    np.testing.assert_allclose(half, full / 2, atol=1.0)
    # without it each map stretches to its own range, so they look the same
    np.testing.assert_array_equal(signed_to_image(noise), signed_to_image(noise / 2))


def test_pca_rgb_shape_dtype_and_size():
    img, basis = pca_rgb(_h())
    assert img.shape == (5, 7, 3) and img.dtype == np.uint8
    assert basis.components.shape == (8, 3)
    big, _ = pca_rgb(_h()[0], basis, size=(20, 28))
    assert big.shape == (20, 28, 3)
    assert np.array_equal(big[::4, ::4], img)


def test_pca_rgb_is_deterministic_including_the_sign():
    h = _h()
    a, basis_a = pca_rgb(h)
    b, basis_b = pca_rgb(h.clone())
    assert np.array_equal(a, b)
    assert torch.equal(basis_a.components, basis_b.components)
    # flipping the sign of the features would flip every SVD sign; the convention undoes that in the basis
    idx = basis_a.components.abs().argmax(dim=0)
    assert torch.all(basis_a.components[idx, torch.arange(3)] > 0)


def test_shared_basis_gives_the_same_colour_to_the_same_features():
    h1 = _h(0)
    h2 = torch.flip(h1, dims=[-1])  # same feature vectors, other positions
    basis = pca_basis(h1, h2)
    img1, _ = pca_rgb(h1, basis)
    img2, _ = pca_rgb(h2, basis)
    assert np.array_equal(img2, img1[:, ::-1])
    # a separately fitted map need not share colours; a shared basis with a different map changes them
    other = pca_basis(h1, _h(1) * 5)
    assert not np.array_equal(pca_rgb(h1, other)[0], img1)


def test_pca_rgb_with_fewer_than_three_channels():
    img, _ = pca_rgb(torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(0)))
    assert img.shape == (3, 3, 3)


def test_heatmap_resizes_and_overlays():
    values = torch.tensor([[0.0, 1.0], [2.0, 4.0]])
    img = heatmap(values, size=(6, 10))
    assert img.shape == (6, 10, 3) and img.dtype == np.uint8
    assert not np.array_equal(img[0, 0], img[-1, -1])  # 0 and the maximum get different colours
    photo = np.full((12, 8, 3), 200, dtype=np.uint8)
    over = heatmap(values, overlay=photo, alpha=0.5)
    assert over.shape == (12, 8, 3)
    np.testing.assert_array_equal(heatmap(values, overlay=photo, alpha=0.0), photo)
    smooth = heatmap(values, size=(6, 10), mode="bilinear")
    assert smooth.shape == (6, 10, 3)
    # a fixed vmax makes a map with half the values darker than one normalised to its own maximum
    assert heatmap(values / 2, vmax=4.0).astype(int).sum() < heatmap(values / 2).astype(int).sum()


def _curves() -> LossCurves:
    steps = [0, 25, 50, 75, 99]
    rng = np.random.default_rng(0)
    big = np.exp(-2 * np.arange(5))[:, None] * 10 * (1 + 0.1 * rng.random((5, 3)))  # spans decades: log y
    zero = np.zeros((5, 3))
    return LossCurves(
        timesteps=steps, seeds=[0, 1, 2],
        nat={"noisy vs gt": CurveStats.from_samples(big), "gt vs gt": CurveStats.from_samples(zero)},
        sem={"noisy vs gt": CurveStats.from_samples(big / 1000 + 1), "gt vs gt": CurveStats.from_samples(zero)},
    )


def test_loss_curve_figure_is_an_rgb_picture():
    img = loss_curve_figure(_curves())
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert 200 <= img.shape[0] <= 1200 and 400 <= img.shape[1] <= 2000
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 10  # something was drawn


def test_grid_shape_and_labels():
    tiles = [np.zeros((10, 12, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), np.zeros((10, 12, 3), np.uint8)]
    out = grid(tiles, ["a", "b", "c"], columns=2, pad=4, font_size=12)
    label_h = 16
    assert out.shape == (2 * (label_h + 10) + 3 * 4, 2 * 12 + 3 * 4, 3)
    assert out.dtype == np.uint8
    label_strip = out[4:4 + label_h, 4:16]
    assert label_strip.min() < 128  # the label was written
    long = grid(tiles, ["a very long label that cannot fit", "b", "c"], columns=2, pad=4, font_size=12)
    assert long[4:4 + label_h, 4 + 12 + 2:4 + 12 + 4].min() == 255  # the long label stops at its cell
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        grid(tiles, ["a", "b"], columns=2)


def test_enlarge_repeats_pixels_and_grid_enlarges_images_but_not_labels():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    big = enlarge(img, 3)
    assert big.shape == (6, 9, 3)
    assert np.array_equal(big[::3, ::3], img) and np.array_equal(big[2, 8], img[0, 2])
    assert enlarge(img, 1) is img
    with pytest.raises(ValueError, match="whole number >= 1"):
        enlarge(img, 0)
    tiles = [np.zeros((10, 12, 3), np.uint8)] * 2
    out = grid(tiles, ["a", "b"], columns=2, pad=4, font_size=12, scale=2)
    assert out.shape == (16 + 20 + 2 * 4, 2 * 24 + 3 * 4, 3)  # label strip as at scale 1, cells twice as large


def test_pca_basis_spans_the_principal_components_of_an_svd():
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([5.0, 3.0, 2.0] + [0.1] * 13)
    h = (torch.randn(1, 16, 12, 10, generator=g) * scales[None, :, None, None])
    basis = pca_basis(h)
    rows = h[0].flatten(1).T
    _, _, vh = torch.linalg.svd(rows - rows.mean(dim=0), full_matrices=False)
    for i in range(3):  # same directions, up to sign
        assert abs(float(basis.components[:, i] @ vh[i])) == pytest.approx(1.0, abs=1e-4)


def test_the_colour_bar_runs_from_zero_at_the_bottom_to_vmax_at_the_top():
    import matplotlib

    from diffloss.viz import colour_bar

    bar = colour_bar(2.5, 200)
    assert bar.shape[0] == 200 and bar.dtype == np.uint8 and bar.shape[1] > 16  # the bar and its numbers
    top, bottom = (np.round(np.array(matplotlib.colormaps["inferno"](v)[:3]) * 255) for v in (1.0, 0.0))
    assert np.abs(bar[0, 0].astype(int) - top).max() <= 1 and np.abs(bar[-1, 0].astype(int) - bottom).max() <= 1
    with pytest.raises(ValueError, match="vmax must be > 0"):
        colour_bar(0.0, 100)


def test_maps_on_one_scale_keep_their_ratio_visible():
    """Two maps 1000x apart: each on its own scale they look alike; on one scale the smaller is black."""
    from diffloss.viz import heatmap, heatmaps_on_one_scale

    big = torch.rand(8, 8, generator=torch.Generator().manual_seed(0)) + 0.5
    small = big * 1e-3
    picture, (a, b), vmax = heatmaps_on_one_scale([big, small], [None, None], ["big", "small"], scale=4)
    assert vmax == pytest.approx(float(big.max()))
    assert a.shape == b.shape == (32, 32, 3)
    assert np.array_equal(heatmap(big), heatmap(small))  # each on its own scale: the same picture
    assert b.astype(int).mean() < 0.1 * a.astype(int).mean()  # on one scale: the small one is nearly black
    assert picture.shape[1] > 2 * 32 + 16 and picture.shape[0] >= 32
    _, _, zero = heatmaps_on_one_scale([torch.zeros(4, 4)], [None], ["none"])  # no gradient at all: a scale still
    assert zero == 1.0
    with pytest.raises(ValueError, match="as many overlays and labels"):
        heatmaps_on_one_scale([big], [None, None], ["x"])


def test_the_most_different_window_is_where_two_images_differ():
    from diffloss.viz import most_different_window

    a = torch.zeros(3, 64, 64)
    b = a.clone()
    b[:, 40:48, 8:16] = 1.0
    assert most_different_window(a, b, 8, stride=1) == (40, 8)
    top, left = most_different_window(a, b, 16)  # the default stride: a quarter of the side
    assert top <= 40 and top + 16 >= 48 and left <= 8 and left + 16 >= 16
