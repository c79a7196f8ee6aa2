"""Compare and Inspect handlers, called directly: every bad input gets a message, never a crash."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from studio import compare_tab, inspect_tab, restorers, train_tab, upload
from tests.studio_helpers import make_world, write_png


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path)


# ------------------------------------------------------------------------------------------------ compare
def test_compare_shows_both_arms_a_slider_a_zoom_an_error_map_and_metrics(world):
    l2, dl = world.labels()
    r = compare_tab.compare(str(world.photo), "noise", upload.MODES[0], 3, l2, dl, 0.2, 0.8, 32, registry=world.registry)
    assert r.degraded.shape == r.l2.shape == r.diffloss.shape == (48, 64, 3)
    assert r.slider[0] is r.l2 and r.slider[1] is r.diffloss
    assert not np.array_equal(r.l2, r.diffloss)
    assert r.zoom.ndim == 3 and r.error_map.ndim == 3
    for word in ("PSNR", "SSIM", "NIQE", "LPIPS", "Conventions: PSNR/SSIM on RGB"):
        assert word in r.metrics
    assert "n/a (< 192 px)" in r.metrics and "NIQE needs at least 192x192 px" in r.metrics
    assert len(r.as_tuple()) == 8


def test_an_already_degraded_photo_has_no_ground_truth_and_says_so(world):
    l2, dl = world.labels()
    r = compare_tab.compare(str(world.photo), "noise", upload.MODES[1], 0, l2, dl, registry=world.registry)
    assert r.error_map is None
    assert "no ground truth" in r.metrics and "No ground truth" in r.notes
    assert np.array_equal(r.degraded, np.asarray(Image.open(world.photo)))  # taken as it is


def test_without_restorers_compare_says_how_to_get_them(tmp_path):
    world = make_world(tmp_path, with_restorers=False)
    assert restorers.restorer_choices("noise", world.registry) == ([], None, None)
    with pytest.raises(gr.Error, match="No shipped restorers yet: train a pair in the Train tab"):
        compare_tab.compare(str(world.photo), "noise", upload.MODES[0], 0, None, None, registry=world.registry)


def test_a_restorer_of_another_task_is_refused_with_a_message(world):
    l2, dl = world.labels()
    with pytest.raises(gr.Error, match="not a restorer for task 'sr4'"):
        compare_tab.compare(str(world.photo), "sr4", upload.MODES[0], 0, l2, dl, registry=world.registry)


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


def test_a_click_becomes_zoom_fractions():
    assert compare_tab.point_fraction((32, 12), np.zeros((48, 64, 3))) == (0.5, 0.25)
    assert compare_tab.point_fraction(None, None) == (0.5, 0.5)


# ------------------------------------------------------------------------------------------------ inspect
def test_inspect_shows_every_view_and_the_terms_on_a_centre_crop(world):
    l2, dl = world.labels()
    r = inspect_tab.inspect(str(world.photo), "noise", 0, dl, inspect_tab.PAIRS[0], 40, 1, "", side=32, registry=world.registry)
    for img in r.as_tuple()[:6]:
        assert img.ndim == 3 and img.dtype == np.uint8
    # A 32 px crop is shown eight times larger, pixel for pixel (nearest): 256 px, the display size.
    assert r.gradient.shape == (256, 256, 3) and r.h_error.shape == (256, 256, 3)
    assert np.array_equal(r.gradient, np.repeat(np.repeat(r.gradient[::8, ::8], 8, 0), 8, 1))
    assert r.x_t.shape[1] > 2 * 256  # two enlarged tiles side by side
    assert "centre 32x32 px" in r.values
    assert "L_nat = **" in r.values and "L_sem = **" in r.values
    assert "Gradient norm of gamma" in r.values


def test_the_released_no_grad_mistake_pushes_exactly_zero(world):
    _, dl = world.labels()
    r = inspect_tab.inspect(str(world.photo), "noise", 0, dl, inspect_tab.PAIRS[0], 40, 1, "", released_bug=True,
                  registry=world.registry)
    assert "Gradient norm **0**" in r.values and "exactly zero" in r.values
    assert r.gradient.shape == (4 * 48, 4 * 64, 3)  # 256 // 64: shown four times larger


def test_degraded_vs_ground_truth_needs_no_restorer(tmp_path):
    world = make_world(tmp_path, with_restorers=False)
    r = inspect_tab.inspect(str(world.photo), "noise", 0, None, inspect_tab.PAIRS[1], 10, 0, "", registry=world.registry)
    assert "degraded vs ground truth" in r.values


def test_inspecting_a_restored_image_without_a_usable_restorer_says_why(world):
    with pytest.raises(gr.Error, match="No restorer chosen for the restored image"):
        inspect_tab.inspect(str(world.photo), "noise", 0, None, inspect_tab.PAIRS[0], 10, 0, "", registry=world.registry)
    _, dl = world.labels()  # a noise restorer: not one for sr4
    with pytest.raises(gr.Error, match="not a restorer for task 'sr4'"):
        inspect_tab.inspect(str(world.photo), "sr4", 0, dl, inspect_tab.PAIRS[0], 10, 0, "", registry=world.registry)
    # The degraded pair does not need it: a stale label is no reason to refuse.
    r = inspect_tab.inspect(str(world.photo), "sr4", 0, dl, inspect_tab.PAIRS[1], 10, 0, "", registry=world.registry)
    assert "degraded vs ground truth" in r.values


def test_a_timestep_beyond_the_schedule_is_clamped(world):
    _, dl = world.labels()
    with pytest.warns(UserWarning, match="outside this prior's schedule"):
        r = inspect_tab.inspect(str(world.photo), "noise", 0, dl, inspect_tab.PAIRS[1], 999, 0, "", registry=world.registry)
    assert "t = 99 of 99" in r.values  # the tiny prior has 100 steps


def test_an_unloadable_prior_is_a_clear_error(world, tmp_path):
    with pytest.raises(gr.Error, match="Prior not loadable"):
        inspect_tab.inspect(str(world.photo), "noise", 0, None, inspect_tab.PAIRS[1], 10, 0, str(tmp_path / "nope"),
                  registry=world.registry)
    with pytest.raises(gr.Error, match="hub"):
        inspect_tab.inspect(str(world.photo), "noise", 0, None, inspect_tab.PAIRS[1], 10, 0, "a/b/c", registry=world.registry)
    steps, message = inspect_tab.prior_timesteps(str(tmp_path / "nope"), registry=world.registry)
    assert "not loadable" in message


def test_calibration_sets_weights_that_give_the_asked_shares_and_shows_what_typed_ones_give(world, monkeypatch):
    monkeypatch.setenv("DIFFLOSS_DATASETS", str(world.root / "no-datasets"))  # the world's clean examples
    gamma, lam, report = train_tab.calibrate_weights("noise", 32, 0, 99, "", 1e-3, 1e-3, 0.25, 0.05, registry=world.registry)
    assert gamma > 0 and lam > 0
    assert "Measured on 3 clean photos" in report and "32 px centre crops" in report and "t drawn in [0, 99]" in report
    assert "your weights (gamma 0.001, lambda 0.001)" in report
    assert f"gamma **{gamma:g}**, lambda **{lam:g}**" in report
    assert "they give fidelity 70.0%, L_nat 25.0%, L_sem 5.00%" in report  # rounded weights, same shares
    # The same photos, crops, seeds and t give the same weights: a measurement, not a draw.
    assert train_tab.calibrate_weights("noise", 32, 0, 99, "", 1e-3, 1e-3, 0.25, 0.05, registry=world.registry)[:2] == (gamma, lam)
    g2, _, _ = train_tab.calibrate_weights("noise", 32, 0, 99, "", 1e-3, 1e-3, 0.5, 0.05, registry=world.registry)
    assert g2 > gamma  # a larger share needs a larger weight


def test_calibration_refuses_what_it_cannot_do_with_a_message(world, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFLOSS_DATASETS", str(tmp_path / "no-datasets"))
    with pytest.raises(gr.Error, match="Cannot calibrate: shares must"):
        train_tab.calibrate_weights("noise", 32, 0, 99, "", 0.05, 0.1, 0.7, 0.4, registry=world.registry)
    with pytest.raises(gr.Error, match="Cannot calibrate: timestep range"):
        train_tab.calibrate_weights("noise", 32, 50, 10, "", 0.05, 0.1, registry=world.registry)
    with pytest.raises(gr.Error, match="unknown task|Unknown task|not a task"):
        train_tab.calibrate_weights("blur", 32, 0, 99, "", 0.05, 0.1, registry=world.registry)
    from studio.models import Registry
    bare = Registry(world.root / "pretrained", world.root / "runs", examples=None)
    with pytest.raises(gr.Error, match="No clean validation photos to calibrate on"):
        train_tab.calibrate_weights("noise", 32, 0, 99, "", 0.05, 0.1, registry=bare)


def test_both_arms_are_evaluated_on_the_validation_photos(world, monkeypatch):
    monkeypatch.setenv("DIFFLOSS_DATASETS", str(world.root / "no-datasets"))  # the world's three clean photos
    l2, dl = world.labels()
    text = compare_tab.evaluate_pair("noise", l2, dl, 8, registry=world.registry)
    assert f"`l2` = {l2}, `diffloss` = {dl}. Task: noise; 3 images" in text
    for row in ("| identity |", "| l2 |", "| diffloss |"):
        assert row in text
    assert "DiffLoss arm better than the L2 arm on: PSNR " in text and "/3, SSIM " in text
    assert "NIQE" not in text.split("better than the L2 arm on:")[1].split("images.")[0]  # 64 px: NIQE needs 192
    assert "results.json" not in text
    with pytest.raises(gr.Error, match="No restorer chosen for the DiffLoss arm"):
        compare_tab.evaluate_pair("noise", l2, None, registry=world.registry)
    from studio.models import Registry
    bare = Registry(world.root / "pretrained", world.root / "runs", examples=None)
    with pytest.raises(gr.Error, match="No clean validation photos to evaluate on"):
        compare_tab.evaluate_pair("noise", l2, dl, registry=bare)


def test_the_curves_are_read_out_for_a_learner():
    from diffloss.inspection import CurveStats, LossCurves

    def stats(rows):
        return CurveStats.from_samples(np.array(rows, dtype=float))

    restored, degraded = [[1.0, 1.0], [0.1, 0.1], [0.0, 0.2]], [[1.0, 1.0], [0.4, 0.4], [0.1, 0.5]]
    curves = LossCurves(timesteps=[0, 400, 999], seeds=[0, 1],
                        nat={"restored vs GT": stats(restored), "degraded vs GT": stats(degraded)},
                        sem={"restored vs GT": stats(degraded), "degraded vs GT": stats(restored)})
    nat, sem = inspect_tab.curves_reading(curves).splitlines()
    assert nat == ("- L_nat tells them apart best at **t = 400**: the degraded image scores 4x the restored one's "
                   "(apart beyond the seeds' spread).")
    assert sem.startswith("- L_sem does not tell them apart: at no t does the restored image score closer")


def test_inspect_pictures_are_enlarged_by_whole_numbers_to_about_the_display_size():
    assert inspect_tab.display_scale(128, 128) == 2 and inspect_tab.display_scale(48, 64) == 4
    assert inspect_tab.display_scale(256, 200) == 1 and inspect_tab.display_scale(512, 512) == 1  # never shrunk
    assert inspect_tab.display_scale(0, 0) == inspect_tab.DISPLAY_SIDE  # degenerate sizes do not divide by zero


def test_the_timestep_follows_a_shorter_schedule_instead_of_overflowing_it():
    assert inspect_tab.timestep_in_schedule(200, 1000) == 200
    assert inspect_tab.timestep_in_schedule(200, 100) == 20  # same fraction of the schedule as the default
    assert inspect_tab.timestep_in_schedule(99, 100) == 99 and inspect_tab.timestep_in_schedule(0, 100) == 0
    assert inspect_tab.timestep_in_schedule(-5, 100) == 20 and inspect_tab.timestep_in_schedule(5, 1) == 0


def test_without_a_shipped_prior_inspect_says_what_to_do(tmp_path):
    world = make_world(tmp_path, with_prior=False)
    with pytest.raises(gr.Error, match="no shipped prior"):
        inspect_tab.inspect(str(world.photo), "noise", 0, None, inspect_tab.PAIRS[1], 10, 0, "", registry=world.registry)


def test_loss_curves_and_purification_render(world):
    _, dl = world.labels()
    curves, reading = inspect_tab.inspect_curves(str(world.photo), "noise", 0, dl, "", seeds=1, registry=world.registry)
    assert curves.ndim == 3
    assert [line[:7] for line in reading.splitlines()] == ["- L_nat", "- L_sem"]
    alone, hint = inspect_tab.inspect_curves(str(world.photo), "noise", 0, None, "", seeds=1, registry=world.registry)
    assert alone.ndim == 3 and hint.startswith("Choose a restorer")
    purified = inspect_tab.inspect_purify(str(world.photo), "noise", 0, dl, inspect_tab.PAIRS[0], 30, 0, "", 3, registry=world.registry)
    assert purified.ndim == 3
