"""The Train tab teaches even when the effect is small: live, how far the two arms have moved apart on a photo
the run does not train on; presets that reproduce the shipped family's arms; the handler takes one settings
object."""

from __future__ import annotations

import inspect

import pytest

from studio import train_gap, train_presets, train_tab, train_ui
from studio.train_settings import FORM_FIELDS, TrainSettings
from tests.studio_helpers import make_world


@pytest.fixture
def world(tmp_path, monkeypatch):
    (tmp_path / "no-datasets").mkdir()
    monkeypatch.setenv("DIFFLOSS_DATASETS", str(tmp_path / "no-datasets"))  # the examples are the candidates
    return make_world(tmp_path / "w", with_restorers=False)


def _train(world, folder, **kw):
    settings = TrainSettings("noise", 4, 1, 32, 1e-3, 5.0, 0.1, 0, 999, 0, "", str(folder), width=8, **kw)
    return list(train_tab.train_pair(settings, registry=world.registry))


def test_the_gap_shows_live_on_a_photo_the_run_does_not_train_on(world):
    views = _train(world, world.clean / "train", name="apart")
    assert "dB apart" not in views[0].gap_note  # nothing measured before the first step
    measured = [v for v in views if "dB apart" in v.gap_note]
    assert len(measured) >= 2  # grows while the run goes, not only at the end
    last = views[-1]
    assert last.status.startswith("**Done**")
    assert "Step 4, on `0.png`" in last.gap_note and "difference x" in last.gap_note
    trained_on = {p.name for p in (world.clean / "train").iterdir()}
    assert "0.png" not in trained_on
    assert last.gap_picture.shape[1] > 3 * 64 and last.gap_curve.shape[0] > 100  # three tiles; a drawn curve


def test_with_the_released_codes_no_grad_mistake_the_arms_stay_identical(world):
    last = _train(world, world.clean / "train", name="nograd", detach_prior=True)[-1]
    assert "the arms' outputs are identical" in last.gap_note and "dB apart" not in last.gap_note


def test_when_every_photo_is_trained_on_the_tab_says_so(world):
    assert train_gap.probe_photo(world.registry, [world.clean]) is None  # the examples are the training photos
    last = _train(world, world.clean, name="nothing-held-out")[-1]
    assert last.status.startswith("**Done**") and "No photo to measure the gap on" in last.gap_note


def test_uploads_are_recognised_by_name_after_the_run_renames_them(world, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "000_0.png").write_bytes((world.clean / "0.png").read_bytes())  # how the tab saves an upload
    assert train_gap.probe_photo(world.registry, [photos]).name == "1.png"


def test_the_handler_takes_one_settings_object_whose_fields_are_the_forms_boxes():
    params = inspect.signature(train_tab.train_pair).parameters
    assert list(params) == ["settings", "request", "registry"]
    assert FORM_FIELDS[:3] == ("task", "steps", "batch")  # the API's order: fields added later come last
    assert FORM_FIELDS[-4:] == ("detach_prior", "t_weight", "gradient", "prior_samples")
    assert "width" not in FORM_FIELDS and "name" not in FORM_FIELDS  # not on the form


def _shipped_registry(arms):
    from diffloss.family import shipped_restorers
    from studio.models import Registry

    if not set(arms) <= set(shipped_restorers().get("noise", {})):
        pytest.skip("the noise family is not shipped in pretrained/restorers")
    return Registry()


def test_a_preset_reproduces_a_shipped_arms_recipe_from_its_card():
    import json

    registry = _shipped_registry(["l2", "strong", "jacobian-free"])
    card = json.loads((registry.pretrained / "restorers" / "noise" / "strong" / "card.json").read_text())
    caps = {"steps": 300, "batch": 8, "crop": 128}
    strong = train_presets.preset_for("noise", "strong", registry, caps)
    assert strong.values["gamma"] == pytest.approx(card["config"]["loss"]["gamma"], rel=1e-3)
    assert strong.values["lam"] == pytest.approx(card["config"]["loss"]["lam"], rel=1e-3)
    keys = ("steps", "batch", "crop", "lr", "seed", "t_min", "t_max", "t_weight", "gradient", "prior_crop",
            "prior_samples")
    assert {k: strong.values[k] for k in keys} == {
        "steps": card["config"]["loop"]["steps"], "batch": card["config"]["loop"]["batch_size"],
        "crop": card["config"]["crop"], "lr": card["config"]["loop"]["lr"], "seed": card["config"]["loop"]["seed"],
        "t_min": None, "t_max": None, "t_weight": "sigma2", "gradient": "full", "prior_crop": 0,
        "prior_samples": 0}  # the prior's band, on the whole crop of every photo
    assert strong.values["start"] == "shipped noise l2" and "not shipped" in strong.note
    assert train_presets.preset_for("noise", "jacobian-free", registry, caps).values["gradient"] == "sds"
    hosted = train_presets.preset_for("noise", "strong", registry, {**caps, "steps": 150})
    assert hosted.values["steps"] == 150 and "Capped on this machine: steps 200 -> 150" in hosted.note
    assert train_presets.preset_for("noise", "l2", registry, caps) is None  # no prior: the plain form
    assert [p.label.split(" ")[0] for p in train_presets.presets("noise", registry, caps)] == [
        a for a in ("moderate", "strong", "jacobian-free") if train_presets.preset_for(
            "noise", a, registry, caps)]


def test_choosing_a_preset_fills_the_form_and_none_leaves_it(monkeypatch):
    from studio.models import set_registry

    registry = _shipped_registry(["l2", "jacobian-free"])
    set_registry(registry)
    try:
        label = next(p.label for p in train_presets.presets("noise", registry, train_tab.train_caps())
                     if p.label.startswith("jacobian-free"))
        *values, note = train_ui.apply_preset("noise", label)
        filled = dict(zip(train_ui.PRESET_FIELDS, values))
        assert filled["gamma"] > 0 and filled["gradient"] == "sds" and "Jacobian-free gradient" in note
        *kept, note = train_ui.apply_preset("noise", train_presets.NONE)
        assert note == "" and len(kept) == len(train_ui.PRESET_FIELDS)
    finally:
        set_registry(None)


def test_a_resumed_run_goes_on_measuring_the_same_photo(world):
    job = train_tab.train_pair(TrainSettings("noise", 6, 1, 32, 1e-3, 5.0, 0.1, 0, 999, 0, "",
                                             str(world.clean / "train"), width=8, name="again"),
                               registry=world.registry)
    next(job)
    next(job)  # a step of each arm
    job.close()  # the page went away
    last = list(train_tab.resume_pair("again", registry=world.registry))[-1]
    assert last.status.startswith("**Done**") and "Step 6, on `0.png`" in last.gap_note
