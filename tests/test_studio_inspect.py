"""The Inspect tab's handlers, called directly: every view, the released no_grad mistake, L(t), clear refusals."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
import torch

from diffloss.images import centre_crop
from studio import inspect_tab
from tests.studio_helpers import make_world


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path)


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
    r = inspect_tab.inspect(str(world.photo), "noise", 0, dl, inspect_tab.PAIRS[0], 40, 1, "", detach_prior=True,
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


def test_a_real_pair_is_inspected_as_it_is_against_its_ground_truth(world, tmp_path):
    """Given a ground truth, the photo is the degraded one (not degraded again): degraded-vs-GT then measures the
    photo itself against the uploaded truth, in the views, the curves and the purification alike."""
    from diffloss.images import load_image
    from studio.models import REPO

    gt, degraded = world.clean / "0.png", world.clean / "1.png"
    real = inspect_tab.inspect(str(degraded), "noise", 0, None, inspect_tab.PAIRS[1], 40, 1, "", side=32,
                               ground_truth=str(gt), registry=world.registry)
    synthetic = inspect_tab.inspect(str(degraded), "noise", 0, None, inspect_tab.PAIRS[1], 40, 1, "", side=32,
                                    registry=world.registry)
    assert "A real pair" in real.values and "A real pair" not in synthetic.values
    assert real.values != synthetic.values  # another pair: the photo against the uploaded truth
    case = inspect_tab.inspect_case(str(degraded), "noise", 0, None, inspect_tab.PAIRS[1], world.registry, 32,
                                    str(gt))
    assert torch.equal(case.a, centre_crop(load_image(degraded), 32))  # taken as it is
    assert torch.equal(case.b, centre_crop(load_image(gt), 32))
    image, _ = inspect_tab.inspect_curves(str(degraded), "noise", 0, None, "", 1, 32, ground_truth=str(gt),
                                          registry=world.registry)
    assert image.ndim == 3
    purified = inspect_tab.inspect_purify(str(degraded), "noise", 0, None, inspect_tab.PAIRS[1], 100, 0, "", 2, 32,
                                          str(gt), registry=world.registry)
    assert purified.ndim == 3
    with pytest.raises(gr.Error, match="a pair shows the same scene at the same size"):
        inspect_tab.inspect(str(world.photo), "noise", 0, None, inspect_tab.PAIRS[1], 40, 1, "", side=32,
                            ground_truth=str(gt), registry=world.registry)  # 64x48 photo, 64x64 truth
    assert (REPO / "examples" / "ground_truth").is_dir()  # the app offers the shipped real pairs in Inspect too


def test_the_heat_maps_show_both_images_on_one_scale_whichever_pair_is_chosen(world):
    """Restored and degraded side by side, each against the ground truth, on one colour scale with its bar: the
    picture does not depend on which pair is chosen, and the chosen pair's tile is the one the view shows."""
    _, dl = world.labels()
    run = {"image": str(world.photo), "task": "noise", "seed_image": 0, "restorer_label": dl, "t": 40, "seed": 1,
           "prior_source": "", "side": 32, "registry": world.registry}
    restored = inspect_tab.inspect(pair=inspect_tab.PAIRS[0], **run)
    degraded = inspect_tab.inspect(pair=inspect_tab.PAIRS[1], **run)
    for view in ("h_error_view", "gradient_view"):
        picture = getattr(restored, view)
        assert np.array_equal(picture, getattr(degraded, view))
        assert picture.shape[1] > 2 * 256 + 16  # two 256 px tiles and the colour bar
    views = restored.as_tuple()
    assert views[4] is restored.h_error_view and views[5] is restored.gradient_view
    assert "both images against the ground truth" in restored.values and "restored: L_nat" in restored.values
    # The chosen pair's own tile (256 px at 32 px x 8) sits in the view: restored left, degraded right.
    from studio.readable import HALF, TOOLBAR_PX, label_px

    label_h = label_px(2 * (256 + 4) + 70, HALF) + 4  # labels sized to show at >= 11 px two pictures to a row
    top, left = TOOLBAR_PX + 4 + label_h, restored.gradient_view.shape[1] - (2 * 256 + 3 * 4) + 4  # the grid's pads, labels, the bar
    assert np.array_equal(restored.gradient_view[top:top + 256, left:left + 256], restored.gradient)
    assert np.array_equal(degraded.gradient_view[top:top + 256, left + 260:left + 516], degraded.gradient)


def test_a_high_t_says_its_pictures_are_noise_by_design(world):
    assert inspect_tab.noise_note(10, 0.99) is None
    note = inspect_tab.noise_note(900, 0.01)
    assert "0.10 x image + 0.99 x noise" in note and "by design" in note
    _, dl = world.labels()
    high = inspect_tab.inspect(str(world.photo), "noise", 0, dl, inspect_tab.PAIRS[0], 95, 1, "", side=32,
                               registry=world.registry)  # the tiny prior has 100 steps
    low = inspect_tab.inspect(str(world.photo), "noise", 0, dl, inspect_tab.PAIRS[0], 1, 1, "", side=32,
                              registry=world.registry)
    assert "by design" in high.values and "by design" not in low.values


def _norm(values: str) -> float:
    return float(values.split("Gradient norm of gamma*(L_nat + lambda*L_sem) on the restored image: **")[1].split("**")[0])


def _weighted(values: str) -> float:
    return float(values.split("- gamma*(L_nat + lambda*L_sem) = ")[1].split(" ")[0])


def test_the_dose_controls_change_the_weight_the_gradient_and_say_so(world):
    _, dl = world.labels()
    args = (str(world.photo), "noise", 0, dl, inspect_tab.PAIRS[0], 40, 1, "")
    plain = inspect_tab.inspect(*args, side=32, registry=world.registry)
    sigma2 = inspect_tab.inspect(*args, side=32, t_weight="sigma2", registry=world.registry)
    prior = inspect_tab.load_prior("", world.registry)
    w = 1 - float(prior.alphas_cumprod[40])
    assert f"weight at t = 40: **{w:.4g}** (sigma2)" in sigma2.values
    assert _weighted(sigma2.values) == pytest.approx(w * _weighted(plain.values), rel=2e-3)
    assert _norm(sigma2.values) == pytest.approx(w * _norm(plain.values), rel=2e-3)
    sds = inspect_tab.inspect(*args, side=32, gradient="sds", registry=world.registry)
    assert "Jacobian-free gradient" in sds.values and not np.array_equal(sds.gradient, plain.gradient)


def test_the_cap_bites_on_a_strong_dose_and_is_reported(world):
    _, dl = world.labels()
    args = (str(world.photo), "noise", 0, dl, inspect_tab.PAIRS[0], 40, 1, "")
    capped = inspect_tab.inspect(*args, gamma=100.0, side=32, grad_cap=0.1, registry=world.registry)
    assert "cap 0.1 x the fidelity gradient: bit" in capped.values
    loose = inspect_tab.inspect(*args, gamma=1e-6, side=32, grad_cap=10.0, registry=world.registry)
    assert "not reached" in loose.values


@pytest.mark.parametrize("changes, words", [({"grad_cap": -1.0}, "grad_cap must be"),
                                            ({"t_weight": "cubic"}, "unknown t weighting")])
def test_bad_dose_values_get_a_message(world, changes, words):
    _, dl = world.labels()
    with pytest.raises(gr.Error, match=words):
        inspect_tab.inspect(str(world.photo), "noise", 0, dl, inspect_tab.PAIRS[0], 40, 1, "", side=32,
                            registry=world.registry, **changes)


def test_a_t_outside_the_band_is_flagged(world):
    _, dl = world.labels()
    r = inspect_tab.inspect(str(world.photo), "noise", 0, dl, inspect_tab.PAIRS[0], 40, 1, "", side=32,
                            t_min=50, t_max=90, registry=world.registry)
    assert "outside the band [50, 90]" in r.values
    with pytest.raises(gr.Error, match="t band"):
        inspect_tab.inspect(str(world.photo), "noise", 0, dl, inspect_tab.PAIRS[0], 40, 1, "", side=32,
                            t_min=90, t_max=50, registry=world.registry)


def test_the_curves_show_the_weight_each_t_gets_in_a_third_panel(world):
    _, dl = world.labels()
    plain, _ = inspect_tab.inspect_curves(str(world.photo), "noise", 0, dl, "", seeds=1, registry=world.registry)
    dosed, _ = inspect_tab.inspect_curves(str(world.photo), "noise", 0, dl, "", seeds=1, t_weight="sigma2",
                                          t_min=20, t_max=80, registry=world.registry)
    two_panels = 1000  # loss_curve_figure's 10 inch x 100 dpi without a dose panel
    assert dosed.shape == plain.shape and plain.shape[1] > 1.3 * two_panels
    assert not np.array_equal(dosed, plain)  # the weight curve and the weighted L_nat moved


def test_band_weights_are_the_t_weight_inside_the_band_and_zero_outside():
    from diffloss import schedule

    alphas = torch.linspace(0.99, 0.01, 10)
    w = schedule.band_weights(alphas, "sigma2", 2, 5)
    assert torch.all(w[:2] == 0) and torch.all(w[6:] == 0)
    torch.testing.assert_close(w[2:6], 1 - alphas[2:6])


def test_a_band_beyond_a_short_schedule_ends_at_its_last_timestep(world):
    """The tiny prior has 100 timesteps: a band "to 999" (a 1000-step prior's last) is clamped, with a note."""
    prior = inspect_tab.load_prior("", world.registry)
    with pytest.warns(UserWarning, match="beyond this prior's schedule"):
        assert inspect_tab.dose_band(0, 999, prior) == (0, prior.num_timesteps - 1)
    assert inspect_tab.dose_band(5, None, prior) == (5, prior.num_timesteps - 1)


def test_bad_curve_dose_settings_are_refused_before_the_prior_runs(world, monkeypatch):
    from diffloss import side_by_side

    monkeypatch.setattr(side_by_side, "loss_curves", lambda *a, **k: pytest.fail("ran the prior first"))
    with pytest.raises(gr.Error, match="unknown t weighting"):
        inspect_tab.inspect_curves(str(world.photo), "noise", 0, None, "", seeds=1, t_weight="cubic",
                                   registry=world.registry)
    with pytest.raises(gr.Error, match="t band"):
        inspect_tab.inspect_curves(str(world.photo), "noise", 0, None, "", seeds=1, t_min=50, t_max=10,
                                   registry=world.registry)
