"""NIQE ranks damaged photos below clean ones, is deterministic, and its pristine model round-trips exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from diffloss.images import list_images, load_image
from diffloss.niqe import (
    DEFAULT_MODEL_DIR,
    NIQEModel,
    NIQEUndefined,
    aggd_features,
    default_model,
    fit_pristine_model,
    ggd_features,
    niqe,
)


def _texture(seed: int, h: int = 192, w: int = 192) -> torch.Tensor:
    """Smooth random texture plus fine grain: enough structure for every NIQE feature to be finite."""
    rng = np.random.default_rng(seed)
    base = gaussian_filter(rng.standard_normal((3, h, w)), sigma=(0, 3, 3))
    img = 0.5 + 0.25 * base / base.std() + 0.02 * rng.standard_normal((3, h, w))
    return torch.from_numpy(np.clip(img, 0, 1)).float()


def test_moment_fits_recover_known_shapes():
    rng = np.random.default_rng(0)
    gauss = rng.standard_normal((1, 200_000))
    laplace = rng.laplace(size=(1, 200_000))
    shape, var = ggd_features(gauss)[0]
    assert shape == pytest.approx(2.0, abs=0.05) and var == pytest.approx(1.0, abs=0.02)
    assert ggd_features(laplace)[0, 0] == pytest.approx(1.0, abs=0.05)
    a_shape, mean, var_l, var_r = aggd_features(gauss)[0]
    assert a_shape == pytest.approx(2.0, abs=0.05) and abs(mean) < 0.02
    assert var_l == pytest.approx(1.0, abs=0.02) and var_r == pytest.approx(1.0, abs=0.02)
    # A true AGGD with shape 2: half-Gaussians of std 0.5 (left) and 2 (right), each side's mass proportional to it.
    left = rng.random(200_000) < 0.5 / (0.5 + 2.0)
    skewed = np.where(left, -0.5, 2.0) * np.abs(rng.standard_normal(200_000))
    a_shape, mean, var_l, var_r = aggd_features(skewed[None])[0]
    assert a_shape == pytest.approx(2.0, abs=0.1)
    assert var_l == pytest.approx(0.25, rel=0.03) and var_r == pytest.approx(4.0, rel=0.03)
    assert mean == pytest.approx(1.5 * np.sqrt(2 / np.pi), rel=0.03)  # the AGGD mean formula...
    assert mean == pytest.approx(skewed.mean(), rel=0.03)  # ...is the sample's mean


def test_fit_on_tiny_synthetic_images_and_save_load_round_trip(tmp_path):
    images = [_texture(s) for s in range(4)]
    model = fit_pristine_model(images, notes="synthetic")
    assert model.mu.shape == (36,) and model.cov.shape == (36, 36)
    assert np.all(np.isfinite(model.cov)) and np.allclose(model.cov, model.cov.T)
    assert 4 <= model.n_patches <= 16 and model.n_images == 4  # 4 patches per 192px image, sharp ones kept
    model.save(tmp_path, card={"note": "test"})
    loaded = NIQEModel.load(tmp_path)
    assert np.array_equal(loaded.mu, model.mu) and np.array_equal(loaded.cov, model.cov)
    assert (loaded.patch_size, loaded.notes, loaded.n_patches) == (model.patch_size, "synthetic", model.n_patches)
    assert (tmp_path / "card.json").is_file()
    probe = _texture(10, 200, 260)
    assert niqe(probe, loaded) == niqe(probe, model)


def test_missing_model_says_how_to_rebuild(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m diffloss.niqe fit"):
        NIQEModel.load(tmp_path / "nowhere")


def test_minimum_size_is_two_patches_per_side():
    model = default_model()
    with pytest.raises(NIQEUndefined, match="192x192"):
        niqe(_texture(0, 191, 400), model)
    assert np.isfinite(niqe(_texture(0, 192, 192), model))
    with pytest.raises(ValueError, match="textured"):
        niqe(torch.full((3, 256, 256), 0.5), model)


def test_shipped_model_is_deterministic_and_accepts_numpy():
    img = _texture(3, 256, 320)
    first = niqe(img)
    assert niqe(img.clone()) == first
    assert niqe(img.permute(1, 2, 0).numpy()) == pytest.approx(first, abs=1e-9)
    assert (DEFAULT_MODEL_DIR / "niqe_pristine.npz").is_file() and (DEFAULT_MODEL_DIR / "card.json").is_file()


def test_noise_and_blur_score_worse_than_clean_photos(datasets_root):
    files = list_images(datasets_root / "clean" / "val")[::5]  # 8 of 37, across Set5/Set14/McMaster
    gen = torch.Generator().manual_seed(0)
    worse_noise = worse_blur = 0
    for path in files:
        clean = load_image(path)
        noisy = (clean + 25 / 255 * torch.randn(clean.shape, generator=gen)).clamp(0, 1)
        h, w = clean.shape[-2:]
        small = torch.nn.functional.interpolate(clean[None], size=(h // 4, w // 4), mode="bicubic", antialias=True)
        blurred = torch.nn.functional.interpolate(small, size=(h, w), mode="bicubic").clamp(0, 1)[0]
        score = niqe(clean)
        worse_noise += niqe(noisy) > score
        worse_blur += niqe(blurred) > score
    assert len(files) >= 6
    assert worse_noise >= 0.8 * len(files) and worse_blur >= 0.8 * len(files), (worse_noise, worse_blur, len(files))
