"""Uploads made into cases: every odd or bad image file gets a clear message or a note, never a crash."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch

from diffloss.images import load_image
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


def test_a_real_pair_keeps_its_ground_truth(world, tmp_path):
    g = torch.Generator().manual_seed(1)
    degraded = write_png(tmp_path / "rainy.png", (torch.rand(40, 56, 3, generator=g) * 255).byte().numpy())
    clean = write_png(tmp_path / "clean.png", (torch.rand(40, 56, 3, generator=g) * 255).byte().numpy())
    case = upload.prepare_case(str(degraded), "rain", upload.MODES[2], 0, gt_path=str(clean))
    assert torch.equal(case.gt, load_image(clean)) and torch.equal(case.shown, load_image(degraded))


def test_a_real_sr4_pair_has_a_ground_truth_four_times_larger(tmp_path):
    small = write_png(tmp_path / "lr.png", np.zeros((16, 20, 3), np.uint8))
    large = write_png(tmp_path / "hr.png", np.zeros((64, 80, 3), np.uint8))
    case = upload.prepare_case(str(small), "sr4", upload.MODES[2], 0, gt_path=str(large))
    assert case.shown.shape == case.gt.shape == (3, 64, 80)
    with pytest.raises(gr.Error, match="for sr4 the ground truth is 4x the low-resolution photo"):
        upload.prepare_case(str(small), "sr4", upload.MODES[2], 0, gt_path=str(small))


def test_a_mismatched_or_missing_ground_truth_is_refused_with_what_to_do(tmp_path):
    degraded = write_png(tmp_path / "hazy.png", np.zeros((40, 56, 3), np.uint8))
    other = write_png(tmp_path / "other.png", np.zeros((56, 40, 3), np.uint8))
    with pytest.raises(gr.Error, match="other.png is 40x56 px but the restored photo will be 56x40 px: a pair shows"):
        upload.prepare_case(str(degraded), "haze", upload.MODES[2], 0, gt_path=str(other))
    with pytest.raises(gr.Error, match="Upload its ground truth too"):
        upload.prepare_case(str(degraded), "haze", upload.MODES[2], 0)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"nope")
    with pytest.raises(gr.Error, match="Could not read broken.png"):
        upload.prepare_case(str(degraded), "haze", upload.MODES[2], 0, gt_path=str(broken))


def test_the_shipped_real_examples_are_pixel_aligned_pairs():
    """examples/ground_truth was cropped as its degraded partners were: a pair of shifted crops would score a
    dehazer or deraining net as poor for pixels that do not correspond."""
    from studio.models import REPO

    rows = {Path(r[0]).name: r for r in upload.example_rows(sorted((REPO / "examples").glob("*.png")))}
    assert rows["haze_sots_1430_7.png"][2:] == [upload.MODES[2], str(REPO / "examples/ground_truth/haze_sots_1430_7.png")]
    assert rows["lowlight_lime_3.png"][2:] == [upload.MODES[1], None]  # LIME has no ground truth
    for name in ("haze_sots_1430_7.png", "rain_rain100l_1.png"):
        degraded, gt = load_image(REPO / "examples" / name), load_image(REPO / "examples" / "ground_truth" / name)
        assert degraded.shape == gt.shape
        # aligned: the input is closer to its own ground truth than to the ground truth shifted by 2 px
        aligned = (degraded - gt).abs().mean()
        shifted = (degraded[..., 2:] - gt[..., :-2]).abs().mean()
        assert aligned < shifted


def test_the_shipped_rain_example_has_its_ground_truths_tone_where_no_streak_falls():
    """Rain only brightens: where no streak falls, a rainy input must equal its clean image. Rain100L's pair 2
    does not (its background is 0.08 darker than its ground truth), so a derainer scores below the input there
    for removing rain; an example like that teaches the opposite of the truth."""
    from studio.models import REPO

    rainy = sorted((REPO / "examples").glob("rain_*.png"))
    assert rainy
    for degraded_path in rainy:
        degraded = load_image(degraded_path)
        gt = load_image(REPO / "examples" / "ground_truth" / degraded_path.name)
        diff = (degraded - gt).mean(0)
        background = diff < 0.02  # a streak brightens by more than that
        assert background.float().mean() > 0.1, degraded_path.name
        assert diff[background].mean().abs() < 0.02, degraded_path.name


@pytest.mark.parametrize("seed", [10**30, 2**63, -1, 1.5, float("inf")])
def test_a_seed_torch_cannot_take_gets_a_message_not_an_overflow(tmp_path, seed):
    """Issue 25, Low 7: a huge seed reached the page as 'Overflow when unpacking long long'."""
    photo = write_png(tmp_path / "p.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(gr.Error, match="The seed must be a whole number from 0 to 9223372036854775807"):
        upload.prepare_case(photo, "noise", upload.MODES[0], seed)
    assert upload.prepare_case(photo, "noise", upload.MODES[0], 2**63 - 1).gt.shape == (3, 32, 32)


def test_over_http_a_huge_seed_and_a_bomb_header_get_one_line_messages(tmp_path):
    """Compare and the Degradations preview over HTTP: the seed and PIL's own bomb limit as the studio's words."""
    import struct
    import zlib

    from gradio_client import Client, handle_file

    from tests.studio_helpers import launched_studio

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    with launched_studio(tmp_path / "w", hosted=True) as (url, world):
        c = Client(url, verbose=False)
        l2, dl = world.labels()
        photo = handle_file(str(world.photo))
        with pytest.raises(Exception, match="The seed must be a whole number from 0 to") as err:
            c.predict(photo, "noise", upload.MODES[0], 10**30, l2, dl, 0.5, 0.5, 32, api_name="/compare")
        assert "Overflow" not in str(err.value)
        with pytest.raises(Exception, match="The seed must be a whole number"):
            c.predict(photo, "noise", 10**30, api_name="/preview_degradation")
        with pytest.raises(Exception, match="bomb.png: more than 179 megapixels") as err:
            c.predict(handle_file(str(bomb)), "noise", upload.MODES[0], 0, l2, dl, 0.5, 0.5, 32, api_name="/compare")
        assert "DecompressionBomb" not in str(err.value)


def test_a_too_thin_photo_is_described_by_its_own_size_not_the_downscaled_one(tmp_path):
    """Issue 25, Low 8: a 4000x40 photo was refused as '1024x10 px: too small', a size the visitor never sent."""
    thin = write_png(tmp_path / "strip.png", np.zeros((40, 4000, 3), np.uint8))
    with pytest.raises(gr.Error, match="strip.png is 4000x40 px: downscaled to at most 1024 px on the longer side "
                                       "it is 1024x10 px, too thin to restore"):
        upload.load_upload(thin, max_side=1024)
    small = write_png(tmp_path / "tiny.png", np.zeros((8, 20, 3), np.uint8))
    with pytest.raises(gr.Error, match="tiny.png is 20x8 px: too small to restore"):
        upload.load_upload(small, max_side=1024)


def test_one_bad_training_photo_is_skipped_by_its_name_alone(tmp_path):
    """Issue #25 low 8: a bad photo among Train's uploads is skipped with its name, the rest train; the note names
    the file, never the server folder it was uploaded to."""
    import numpy as np
    from PIL import Image

    from studio.train_tab import save_training_photos

    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    (tmp_path / "cut.png").write_bytes((tmp_path / "good.png").read_bytes()[:200])
    kept, notes = save_training_photos([str(tmp_path / n) for n in ("good.png", "bad.png", "cut.png")], tmp_path / "out")
    assert kept == 1 and len(notes) == 2
    assert notes[0].startswith("skipped bad.png:") and notes[1].startswith("skipped cut.png:")
    assert all(str(tmp_path) not in note for note in notes)
