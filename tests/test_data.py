"""Paired folders fail early and clearly; samplers give reproducible, aligned batches of the right shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffloss.data import (
    Batch,
    CleanCropSampler,
    MixedSampler,
    PairedCropSampler,
    PairedFolder,
    SyntheticPairSampler,
    load_clean_images,
    random_crop_flip,
)


def _write(path: Path, w: int, h: int, seed: int = 0) -> np.ndarray:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def _paired(root: Path, names: list[str], w: int = 24, h: int = 20) -> Path:
    """Pairs whose lq is exactly half the gt, so alignment of crops can be checked."""
    (root / "lq").mkdir(parents=True, exist_ok=True)
    (root / "gt").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        gt = _write(root / "gt" / name, w, h, seed=i)
        Image.fromarray(gt // 2).save(root / "lq" / name)
    return root


def _images(sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for h, w in sizes]


def test_paired_folder_loads_matched_pairs(tmp_path):
    root = _paired(tmp_path, ["b.png", "a.png"])
    ds = PairedFolder(root)
    assert len(ds) == 2 and ds.names == ["a.png", "b.png"]
    item = ds[0]
    assert item["name"] == "a.png"
    assert item["lq"].shape == item["gt"].shape == (3, 20, 24)
    assert torch.allclose(item["lq"], (item["gt"] * 255 // 2) / 255, atol=1e-6)
    assert PairedFolder(root, names=["b"]).names == ["b.png"]
    assert PairedFolder(root, max_side=12)[0]["gt"].shape == (3, 10, 12)
    with pytest.raises(ValueError, match="zzz"):
        PairedFolder(root, names=["zzz"])


def test_paired_folder_names_missing_partners(tmp_path):
    root = _paired(tmp_path, ["a.png"])
    _write(root / "lq" / "lonely.png", 24, 20)
    with pytest.raises(ValueError, match="lonely.png"):
        PairedFolder(root)
    (tmp_path / "no_gt" / "lq").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no gt/ subfolder"):
        PairedFolder(tmp_path / "no_gt")
    (tmp_path / "empty" / "lq").mkdir(parents=True)
    (tmp_path / "empty" / "gt").mkdir()
    with pytest.raises(ValueError, match="no lq/gt image pairs"):
        PairedFolder(tmp_path / "empty")


def test_paired_folder_reports_size_mismatch_with_both_sizes(tmp_path):
    root = _paired(tmp_path, ["ok.png", "odd.png"])
    _write(root / "lq" / "odd.png", 30, 20)
    with pytest.raises(ValueError, match=r"odd.png \(lq 30x20, gt 24x20\)") as err:
        PairedFolder(root)
    assert "ok.png" not in str(err.value)


def test_sots_indoor_and_rain100l_sample_load(datasets_root):
    sots = PairedFolder(datasets_root / "haze" / "sots_indoor")
    assert len(sots) == 140
    rain = PairedFolder(datasets_root / "rain" / "rain100l_sample")
    assert len(rain) == 3
    item = rain[0]
    assert item["lq"].shape == item["gt"].shape and item["lq"].shape[0] == 3
    assert not torch.equal(item["lq"], item["gt"])


def test_sots_paired_crops_are_aligned(datasets_root):
    ds = PairedFolder(datasets_root / "haze" / "sots_indoor", names=["1400_1", "1400_10"], max_side=160)
    b = PairedCropSampler(ds, "haze", crop=48).batch(4, seed=0)
    assert b.net_input.shape == b.gt.shape == (4, 3, 48, 48)
    assert b.lq.mean() > b.gt.mean()  # hazy is brighter than clear


def test_load_clean_images_keeps_uint8(tmp_path):
    _write(tmp_path / "x.png", 10, 8)
    _write(tmp_path / "y.jpg", 12, 9)
    imgs = load_clean_images(tmp_path)
    assert [tuple(i.shape) for i in imgs] == [(3, 8, 10), (3, 9, 12)]
    assert all(i.dtype == torch.uint8 for i in imgs)
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_clean_images(tmp_path / "none")


def test_random_crop_flip_from_uint8_and_smaller_images():
    g = torch.Generator().manual_seed(0)
    img = _images([(20, 30)])[0]
    crop = random_crop_flip(img, 16, g)
    assert crop.shape == (3, 16, 16) and crop.dtype == torch.float32
    assert 0 <= crop.min() and crop.max() <= 1 and crop.max() > 0.5
    assert random_crop_flip(img, 40, g).shape == (3, 40, 40)  # larger than the image: reflect-padded
    assert random_crop_flip(_images([(2, 3)])[0], 9, g).shape == (3, 9, 9)  # too small to reflect: replicate
    square = img[:, :16, :16]
    crops = [random_crop_flip(square, 16, torch.Generator().manual_seed(s)) for s in range(12)]
    flips = {torch.equal(c, square / 255) for c in crops}
    assert flips == {True, False}  # both the original and its mirror occur


def test_clean_crop_sampler_is_deterministic_by_seed():
    s = CleanCropSampler(_images([(40, 50), (33, 37)]), crop=32)
    a, b, c = s.batch(5, seed=1), s.batch(5, seed=1), s.batch(5, seed=2)
    assert a.shape == (5, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert CleanCropSampler(_images([(10, 12)]), crop=24).batch(2, 0).shape == (2, 3, 24, 24)


@pytest.mark.parametrize("task,channels", [("sr4", 3), ("inpaint", 4), ("rain", 3)])
def test_synthetic_pair_sampler_shapes_and_determinism(task, channels):
    s = SyntheticPairSampler(_images([(48, 48), (40, 60)]), task, crop=30)
    expected = 28 if task == "sr4" else 30  # rounded down to the task's size multiple
    assert s.crop == expected
    a = s.batch(3, seed=5)
    assert isinstance(a, Batch)
    assert a.gt.shape == (3, 3, expected, expected)
    assert a.net_input.shape == (3, channels, expected, expected)
    assert a.lq.shape[-1] == (expected // 4 if task == "sr4" else expected)
    assert (a.mask is not None) == (task == "inpaint")
    b, c = s.batch(3, seed=5), s.batch(3, seed=6)
    assert torch.equal(a.net_input, b.net_input) and torch.equal(a.gt, b.gt)
    assert not torch.equal(a.gt, c.gt)


def test_paired_crop_sampler_keeps_lq_and_gt_aligned(tmp_path):
    ds = PairedFolder(_paired(tmp_path, ["a.png", "b.png"], w=24, h=20))
    s = PairedCropSampler(ds, "haze", crop=16)
    a = s.batch(6, seed=0)
    assert a.net_input.shape == a.gt.shape == (6, 3, 16, 16)
    assert torch.allclose(a.lq, torch.floor(a.gt * 255 / 2) / 255, atol=1e-6)  # same window, same flip
    assert torch.equal(a.gt, s.batch(6, seed=0).gt) and not torch.equal(a.gt, s.batch(6, seed=1).gt)
    big = PairedCropSampler(ds, "haze", crop=32).batch(2, seed=0)  # crop larger than the images
    assert big.gt.shape == (2, 3, 32, 32)
    assert torch.allclose(big.lq, torch.floor(big.gt * 255 / 2) / 255, atol=1e-6)
    with pytest.raises(ValueError, match="SyntheticPairSampler"):
        PairedCropSampler(ds, "sr4", crop=16)


def test_mixed_sampler_draws_by_weight_and_is_reproducible(tmp_path):
    real = PairedCropSampler(PairedFolder(_paired(tmp_path, ["a.png"], w=24, h=20)), "haze", crop=16)
    synthetic = SyntheticPairSampler(_images([(40, 40)]), "haze", crop=16)
    only_real = MixedSampler([real, synthetic], [1.0, 0.0]).batch(4, seed=3)
    assert torch.allclose(only_real.lq, torch.floor(only_real.gt * 255 / 2) / 255, atol=1e-6)

    mix = MixedSampler([real, synthetic], [0.5, 0.5])
    a, b = mix.batch(16, seed=1), mix.batch(16, seed=1)
    assert a.net_input.shape == (16, 3, 16, 16) and a.mask is None
    assert torch.equal(a.net_input, b.net_input)
    from_real = torch.isclose(a.lq, torch.floor(a.gt * 255 / 2) / 255, atol=1e-6).flatten(1).all(dim=1)
    assert 0 < from_real.sum() < 16  # both sources appear
    assert not torch.equal(a.gt, mix.batch(16, seed=2).gt)
    with pytest.raises(ValueError, match="weight"):
        MixedSampler([real], [1.0, 2.0])
