"""The Compare tab's handlers, called directly: both arms, zoom, error maps, metrics, evaluation, clear refusals."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from studio import compare_tab, restorers, upload
from tests.studio_helpers import make_world


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path)


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
    # LPIPS cannot load offline here: no always-"unavailable" column, one plain sentence instead of an import error
    assert "LPIPS ↓" not in r.metrics and "LPIPS is not shown" in r.metrics and "Error" not in r.metrics
    assert r.difference.shape == (48, 64, 3) and "x10" in r.difference_note
    assert len(r.as_tuple()) == 14 and r.zoom_xy == (0.2, 0.8)


def test_the_automatic_zoom_lands_where_the_restorer_changed_the_photo(world):
    import torch

    before = torch.zeros(3, 64, 96)
    after = before.clone()
    after[:, 40:56, 70:86] = 1.0  # a filled hole, bottom right
    x, y = compare_tab.change_centre(before, after, side=16)
    assert x == pytest.approx(78 / 96, abs=0.02) and y == pytest.approx(48 / 64, abs=0.02)
    l2, dl = world.labels()
    r = compare_tab.compare(str(world.photo), "noise", upload.MODES[0], 3, l2, dl, 0.5, 0.5, 16, zoom_auto=True,
                            registry=world.registry)
    assert r.zoom_xy != (0.5, 0.5)
    again = compare_tab.rezoom(r.degraded, r.l2, r.diffloss, r.ground_truth, *r.zoom_xy, 16)
    assert np.array_equal(again, r.zoom)  # a click re-zooms from the pictures on show, no second run
    assert compare_tab.rezoom(None, None, None, None, 0.5, 0.5, 16) is None  # nothing compared yet


def test_an_already_degraded_photo_has_no_ground_truth_and_says_so(world):
    l2, dl = world.labels()
    r = compare_tab.compare(str(world.photo), "noise", upload.MODES[1], 0, l2, dl, registry=world.registry)
    assert r.error_map is None
    assert "no ground truth" in r.metrics and "No ground truth" in r.notes
    assert np.array_equal(r.degraded, np.asarray(Image.open(world.photo)))  # taken as it is


def test_a_real_pair_is_measured_against_its_uploaded_ground_truth(world, tmp_path):
    from diffloss.images import load_image

    l2, dl = world.labels()
    gt = world.clean / "0.png"  # 64x64: any clean photo of the degraded photo's size
    degraded = tmp_path / "degraded.png"
    degraded.write_bytes((world.clean / "1.png").read_bytes())
    r = compare_tab.compare(str(degraded), "noise", upload.MODES[2], 0, l2, dl, ground_truth=str(gt),
                            registry=world.registry)
    assert r.error_map is not None and "A real pair" in r.notes and "no ground truth" not in r.metrics
    input_psnr = float(r.metrics.split("| degraded input | ")[1].split(" |")[0])
    shown, truth = load_image(degraded), load_image(gt)
    assert abs(input_psnr - 10 * np.log10(1 / float(((shown - truth) ** 2).mean()))) < 0.05
    # the box's ground truth is ignored in the other modes: an already-degraded photo alone has none
    r = compare_tab.compare(str(degraded), "noise", upload.MODES[1], 0, l2, dl, ground_truth=str(gt),
                            registry=world.registry)
    assert r.error_map is None


def test_without_restorers_compare_says_how_to_get_them(tmp_path):
    world = make_world(tmp_path, with_restorers=False)
    assert restorers.restorer_choices("noise", world.registry) == ([], None, None)
    with pytest.raises(gr.Error, match="No shipped restorers yet: train a pair in the Train tab"):
        compare_tab.compare(str(world.photo), "noise", upload.MODES[0], 0, None, None, registry=world.registry)


def test_a_restorer_of_another_task_is_refused_with_a_message(world):
    l2, dl = world.labels()
    with pytest.raises(gr.Error, match="not a restorer for task 'sr4'"):
        compare_tab.compare(str(world.photo), "sr4", upload.MODES[0], 0, l2, dl, registry=world.registry)


def test_a_click_becomes_zoom_fractions():
    assert compare_tab.point_fraction((32, 12), np.zeros((48, 64, 3))) == (0.5, 0.25)
    assert compare_tab.point_fraction(None, None) == (0.5, 0.5)


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
