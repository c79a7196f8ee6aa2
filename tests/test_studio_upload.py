"""Uploads made into cases: every odd or bad image file gets a clear message or a note, never a crash."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
import torch

from studio import upload
from tests.studio_helpers import make_world, write_png


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path)


def test_no_image_asks_for_one(world):
    with pytest.raises(gr.Error, match="Upload an image"):
        upload.prepare_case(None, "noise", upload.MODES[0], 0)


def test_a_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(gr.Error, match="Could not read broken.png"):
        upload.prepare_case(str(path), "noise", upload.MODES[0], 0)


def test_a_vanished_upload_is_a_clear_error(tmp_path):
    with pytest.raises(gr.Error, match="upload it again"):
        upload.prepare_case(str(tmp_path / "gone.png"), "noise", upload.MODES[0], 0)


def test_a_huge_image_is_downscaled_with_a_notice(tmp_path, monkeypatch):
    monkeypatch.setattr(upload, "MAX_SIDE", 64)  # the real cap is 1024 px; the rule is the same at any size
    path = write_png(tmp_path / "big.png", np.random.default_rng(0).integers(0, 255, (150, 200, 3), np.uint8))
    case = upload.prepare_case(str(path), "noise", upload.MODES[0], 0)
    assert max(case.gt.shape[-2:]) == 64
    assert any("large image 200x150 downscaled to 64x48" in n for n in case.notes)


def test_an_image_too_small_to_restore_is_refused(tmp_path):
    path = write_png(tmp_path / "tiny.png", np.zeros((8, 10, 3), np.uint8))
    with pytest.raises(gr.Error, match="too small to restore"):
        upload.prepare_case(str(path), "noise", upload.MODES[0], 0)


def test_a_greyscale_image_is_accepted_and_noted(tmp_path):
    path = write_png(tmp_path / "grey.png", np.full((40, 40), 128, np.uint8))
    case = upload.prepare_case(str(path), "noise", upload.MODES[1], 0)
    assert case.shown.shape == (3, 40, 40) and torch.equal(case.shown[0], case.shown[2])
    assert any("greyscale" in n for n in case.notes)


def test_an_rgba_upload_is_composited_over_white(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)  # fully transparent black
    path = write_png(tmp_path / "alpha.png", rgba)
    case = upload.prepare_case(str(path), "noise", upload.MODES[1], 0)
    assert torch.allclose(case.shown, torch.ones_like(case.shown))
    assert any("transparency" in n for n in case.notes)


def test_a_16_bit_png_keeps_its_precision(tmp_path):
    values = np.full((32, 32), 1000, np.uint16)  # 8-bit conversion would clip this to white
    path = write_png(tmp_path / "deep.png", values)
    case = upload.prepare_case(str(path), "noise", upload.MODES[1], 0)
    assert abs(float(case.shown.mean()) - 1000 / 65535) < 1e-4
    assert any("16-bit" in n for n in case.notes)


def test_an_exif_rotated_photo_is_shown_upright(tmp_path):
    path = write_png(tmp_path / "phone.png", np.zeros((32, 48, 3), np.uint8), exif_orientation=6)
    case = upload.prepare_case(str(path), "noise", upload.MODES[1], 0)
    assert tuple(case.shown.shape[-2:]) == (48, 32)
    assert any("EXIF orientation 6" in n for n in case.notes)


def test_an_already_degraded_inpainting_photo_needs_a_mask_not_yet_supported(world):
    with pytest.raises(gr.Error, match="not yet"):
        upload.prepare_case(str(world.photo), "inpaint", upload.MODES[1], 0)


def test_sr4_degrades_to_a_quarter_and_shows_the_upscaled_input(world):
    case = upload.prepare_case(str(world.photo), "sr4", upload.MODES[0], 0)
    assert case.shown.shape == case.gt.shape == (3, 48, 64)
    assert case.net_input.shape == (3, 48, 64)
