"""The prior's band (issue #26): read off the prior's error curve, stored beside its weights, and the t range every
dose draws from unless told otherwise; the released code's range stays the whole schedule."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from diffloss import family, prior_band, prior_check, zoo
from diffloss.loss import DiffLoss, DiffLossConfig
from diffloss.prior import DiffusionPrior, PriorLoadError
from diffloss.prior_band import Band, band_from_curve
from tests.helpers import tiny_prior


def _curve(eps: dict[int, float], x0: dict[int, float]) -> dict[int, dict[str, float]]:
    return {t: {"eps_mse": eps[t], "x0_psnr": x0[t]} for t in eps}


def test_the_band_starts_where_the_noise_is_predicted_well_and_ends_where_the_photo_is_still_seen():
    ts = [20, 40, 60, 80, 100, 200, 400, 600, 800]
    eps = dict(zip(ts, [0.4, 0.2, 0.12, 0.09, 0.07, 0.03, 0.01, 0.005, 0.003]))
    x0 = dict(zip(ts, [30.0, 27.0, 25.0, 24.0, 23.0, 20.0, 17.5, 15.0, 12.0]))
    band = band_from_curve(_curve(eps, x0))
    assert (band.t_min, band.t_max) == (80, 400)
    assert "0.1" in band.why and "17 dB" in band.why and "every 20 steps" in band.why


def test_a_noisy_curve_that_crosses_the_line_twice_starts_after_the_last_crossing():
    ts = [20, 40, 60, 80, 100]
    eps = dict(zip(ts, [0.3, 0.09, 0.11, 0.08, 0.05]))
    x0 = dict(zip(ts, [25.0] * 5))
    assert band_from_curve(_curve(eps, x0)).t_min == 80
    assert band_from_curve(_curve(eps, x0), max_eps_mse=0.2).t_min == 40  # the thresholds are the rule's options


def test_a_prior_that_is_good_nowhere_gets_no_band_but_a_reason():
    ts = [100, 200, 300]
    with pytest.raises(ValueError, match="cannot tell restored from clean anywhere"):
        band_from_curve(_curve(dict(zip(ts, [0.5, 0.3, 0.2])), dict(zip(ts, [25.0, 20.0, 18.0]))))
    with pytest.raises(ValueError, match="cannot tell"):  # predicts well only where the photo is gone
        band_from_curve(_curve(dict(zip(ts, [0.5, 0.05, 0.01])), dict(zip(ts, [18.0, 16.0, 12.0]))))
    with pytest.raises(ValueError, match="t_min <= t_max"):
        Band(50, 10)
    assert "cannot tell" in prior_band.band_or_reason(_curve(dict(zip(ts, [0.5, 0.3, 0.2])),
                                                              dict(zip(ts, [25.0, 20.0, 18.0]))))
    assert prior_band.band_or_reason(_curve(dict(zip(ts, [0.05] * 3)), dict(zip(ts, [20.0] * 3)))) == Band(
        100, 300, prior_band.band_or_reason(_curve(dict(zip(ts, [0.05] * 3)), dict(zip(ts, [20.0] * 3)))).why)


def test_the_curve_is_measured_per_t_with_the_x0_estimates_psnr():
    prior = tiny_prior()
    crops = torch.rand(3, 3, 16, 16)
    ts = prior_band.curve_timesteps(prior.num_timesteps)
    assert ts == sorted(set(ts)) and ts[0] > 0 and ts[-1] <= prior.num_timesteps - 1
    curve = prior_check.band_curve(prior, crops, ts[:3], batch_size=2)
    assert list(curve) == ts[:3]
    for row in curve.values():
        assert row["eps_mse"] > 0 and math.isfinite(row["x0_psnr"])
    again = prior_check.band_curve(prior, crops, ts[:3], batch_size=3)  # seeded, batch-independent
    for t, row in curve.items():
        assert again[t] == pytest.approx(row, rel=1e-5)


@pytest.fixture
def banded_prior_dir(tmp_path):
    folder = tmp_path / "prior"
    prior = tiny_prior()
    prior.band = Band(10, 30, "a test band")
    prior.save_pretrained(folder)
    return folder


def test_a_saved_band_travels_with_the_prior_and_becomes_the_doses_default_range(banded_prior_dir):
    prior = DiffusionPrior.from_pretrained(banded_prior_dir)
    assert prior.band == Band(10, 30, "a test band") and prior.t_band() == (10, 30)
    lq, gt = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    ts = torch.cat([DiffLoss(prior)(lq, gt, torch.Generator().manual_seed(s)).t for s in range(10)])
    assert ts.min() >= 10 and ts.max() <= 30
    assert DiffLoss(prior, DiffLossConfig(band="all")).t_range == (0, prior.num_timesteps - 1)
    assert DiffLoss(prior, DiffLossConfig.released()).t_range == (0, prior.num_timesteps - 1)  # the released range
    assert DiffLoss(prior, DiffLossConfig(t_min=5)).t_range == (5, 30)  # an end given overrides that end only
    assert DiffLoss(prior, DiffLossConfig(band="all", t_max=20)).t_range == (0, 20)
    with pytest.raises(ValueError, match="unknown band 'some'"):
        DiffLoss(prior, DiffLossConfig(band="some"))


def test_a_prior_without_a_band_draws_over_its_whole_schedule_as_before(tmp_path):
    prior = tiny_prior()
    prior.save_pretrained(tmp_path / "plain")
    loaded = DiffusionPrior.from_pretrained(tmp_path / "plain")
    assert loaded.band is None and not (tmp_path / "plain" / prior_band.BAND_FILE).exists()
    assert DiffLoss(loaded).t_range == (0, loaded.num_timesteps - 1)


def test_a_band_file_that_is_not_a_band_fails_the_load_with_its_name(banded_prior_dir):
    (banded_prior_dir / prior_band.BAND_FILE).write_text(json.dumps({"t_min": 40, "t_max": 5}))
    with pytest.raises(PriorLoadError, match="band.json in the prior folder is not a band"):
        DiffusionPrior.from_pretrained(banded_prior_dir)


def test_a_band_longer_than_a_short_schedule_ends_at_its_last_step():
    assert Band(10, 900).clipped(50) == (10, 49)


def test_a_run_saved_before_the_band_resumes_over_the_whole_schedule(tmp_path):
    from diffloss import run_folder

    saved = {"t_min": 0, "t_max": None, "gamma": 0.1}
    assert "band" not in saved
    loss = run_folder._settings(DiffLossConfig, {**saved, "band": "all"}, tmp_path)
    assert loss.band_range(1000, (80, 500)) == (0, 999)
    assert DiffLossConfig(t_min=0).band_range(1000, (80, 500)) == (0, 500)  # why the old runs are pinned to "all"


def test_an_arms_dose_is_its_calibration_key_and_its_loss_config():
    banded = family.ArmSpec("jf", 0.7, band="prior", t_weight="sigma2", gradient="sds")
    assert banded.dose_key == "band/sigma2/sds" and banded.dose_words() == (
        "the prior's band, sigma2 weights, Jacobian-free gradient")
    prior_led = family.ArmSpec("prior-led", 0.69, 0.30, t_max=250)  # a 2026-11 arm keeps its calibration key
    assert prior_led.dose_key == "0-250" and family.ArmSpec("strong", 0.5, 0.2).dose_key == "all"
    assert family.family_arm("jacobian-free") == dataclasses.replace(banded, name="jacobian-free",
                                                                     about=family.family_arm("jacobian-free").about)
    assert prior_led.paper_dose and not banded.paper_dose
    calibration = {"num_timesteps": 1000, "norms": {"band/sigma2/sds": {"fidelity": 1e-3, "nat": 1e-2, "sem": 1.0}}}
    cfg = zoo.arm_loss_config(banded, calibration)
    assert (cfg.band, cfg.t_weight, cfg.gradient, cfg.t_min, cfg.t_max) == ("prior", "sigma2", "sds", None, None)
    assert cfg.gamma == pytest.approx(0.7 * 1e-3 / 0.3 / 1e-2)
    old = zoo.arm_loss_config(prior_led, {"num_timesteps": 100, "norms": {
        "0-250": {"fidelity": 1e-3, "nat": 1e-2, "sem": 5e-3}}})
    assert (old.band, old.t_max, old.t_weight, old.gradient) == ("all", 99, "uniform", "full")


def test_the_calibration_measures_each_dose_once_through_the_priors_band(tmp_path, banded_prior_dir, monkeypatch):
    from diffloss import nets
    from diffloss.images import save_image

    arms = (family.ArmSpec("l2"), family.ArmSpec("a", 0.3, 0.1, band="prior", t_weight="sigma2"),
            family.ArmSpec("b", 0.6, 0.1, band="prior", t_weight="sigma2"),
            family.ArmSpec("c", 0.7, band="prior", t_weight="sigma2", gradient="sds"))
    monkeypatch.setattr(zoo, "FAMILY", arms)
    paths = family.ZooPaths(datasets=tmp_path / "data", runs=tmp_path / "runs", pretrained=tmp_path / "pretrained")
    paths.clean_train.mkdir(parents=True)
    for i in range(2):
        save_image(torch.rand(3, 32, 32), paths.clean_train / f"p{i}.png")
    paths.prior_dir().parent.mkdir(parents=True)
    banded_prior_dir.rename(paths.prior_dir())
    torch.manual_seed(0)
    nets.save_restorer(nets.Restorer(zoo.train.new_restorer_config("noise")), tmp_path / "base")
    rr = zoo.RestorerRecipe(crop=16, calibration_images=2)
    calibration = zoo.run_calibration("noise", tmp_path / "base", paths, rr)
    assert set(calibration["norms"]) == {"band/sigma2", "band/sigma2/sds"}
    assert calibration["t_ranges"] == {"band/sigma2": [10, 30], "band/sigma2/sds": [10, 30]}
    full, sds = calibration["norms"]["band/sigma2"], calibration["norms"]["band/sigma2/sds"]
    assert full["fidelity"] == pytest.approx(sds["fidelity"]) and sds["nat"] != pytest.approx(full["nat"])


def test_the_curve_figure_draws_both_priors_and_the_band():
    from diffloss import viz

    ts = [20, 100, 300, 500, 800]
    a = _curve(dict(zip(ts, [0.3, 0.09, 0.02, 0.006, 0.002])), dict(zip(ts, [33.0, 26.0, 20.0, 17.0, 5.0])))
    b = {t: {k: v * 0.9 for k, v in row.items()} for t, row in a.items()}
    with_band = viz.prior_curve_figure({"shipped": a, "new": b}, (100, 500))
    without = viz.prior_curve_figure({"shipped": a, "new": b})
    assert with_band.shape == (360, 1000, 3) and with_band.dtype.name == "uint8"
    assert (with_band != without).any()  # the shaded band is drawn


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny prior trained 2 steps with every 2nd training photo held out, beside its datasets and a 'shipped' one."""
    from diffloss.images import save_image
    from diffloss.train import train_prior
    from diffloss.train_config import LoopConfig, PriorTrainConfig

    tmp_path = tmp_path_factory.mktemp("tiny-run")
    data = tmp_path / "data"
    for split, n in (("train", 4), ("val", 2)):
        (data / "clean" / split).mkdir(parents=True)
        for i in range(n):
            save_image(torch.rand(3, 64, 64), data / "clean" / split / f"p{i}.png")
    shipped = tmp_path / "shipped"
    tiny_prior().save_pretrained(shipped)
    run = tmp_path / "run"
    cfg = PriorTrainConfig(clean=[str(data / "clean" / "train")], preset="tiny", crop=16, holdout_every=2,
                           loop=LoopConfig(out=str(run), steps=2, batch_size=2, save_every=2, log_every=1))
    list(train_prior(cfg))
    return {"data": data, "shipped": shipped, "run": run}


def test_the_long_runs_state_is_exported_measured_beside_the_shipped_prior_and_given_its_band(tiny_run, tmp_path):
    from bench import prior_run

    dest = tmp_path / "kept"
    prior_run.main(["--run", str(tiny_run["run"]), "--to", str(dest), "--shipped", str(tiny_run["shipped"]),
                    "--datasets", str(tiny_run["data"]), "--history", "a test run", "--curve-step", "250"])
    card = json.loads((dest / "card.json").read_text())
    assert card["history"] == "a test run" and card["storage"] == "float16" and card["steps"] == 2
    evaluation = card["evaluation"]
    assert "every 2th photo (held out of the prior's training): 8 crops of 64 px" in evaluation["data"]
    for t, ratio in evaluation["ratio_val"].items():
        assert ratio == pytest.approx(evaluation["eps_mse"]["val"][t] / evaluation["shipped_prior_eps_mse"]["val"][t])
    # two untrained priors predict the noise nowhere: no band, the reason instead, and doses over the whole schedule
    assert "cannot tell restored from clean" in card["band"]["this_run"] and card["band"]["rule"] == prior_band.RULE
    assert DiffusionPrior.from_pretrained(dest).band is None and (dest / "curve.png").is_file()


def test_installing_a_prior_measures_its_band_on_the_photos_its_run_held_out(tiny_run, tmp_path, monkeypatch):
    from diffloss.run_folder import export_checkpoint

    model = export_checkpoint(tiny_run["run"], tmp_path / "model")
    args = ["install-prior", str(model), "--datasets", str(tiny_run["data"]), "--pretrained", str(tmp_path / "pre")]
    strict = prior_band.band_from_curve
    seen = []

    def loose(curve, **_):  # an untrained prior passes no real rule: this one lets every t through
        seen.append(sorted(curve))
        return strict(curve, max_eps_mse=10.0, min_x0_psnr=-100.0)

    monkeypatch.setattr(prior_band, "band_from_curve", loose)
    # what this test does not check, made cheap: the sample sheet, and a curve every 250 steps instead of 20

    monkeypatch.setattr(prior_check, "sample_sheet", lambda *a, **k: np.zeros((8, 8, 3), np.uint8))
    every_20 = prior_band.curve_timesteps
    monkeypatch.setattr(prior_band, "curve_timesteps", lambda n: every_20(n, 250))
    assert zoo.main(args) == 0
    installed = tmp_path / "pre" / "prior"
    card = json.loads((installed / "card.json").read_text())
    prior = DiffusionPrior.from_pretrained(installed)
    assert prior.band is not None and (prior.band.t_min, prior.band.t_max) == (card["band"]["t_min"],
                                                                                card["band"]["t_max"])
    assert seen == [every_20(prior.num_timesteps, 250)]  # the whole curve
    assert card["band"]["data"].startswith("clean/train, every 2th photo") and (installed / "curve.png").is_file()
    assert "replaced_prior_curve" not in card["band"]  # nothing was installed before
    assert zoo.main(args) == 0  # installed again over the first: that one's curve is measured beside it
    again = json.loads((installed / "card.json").read_text())["band"]["replaced_prior_curve"]
    assert list(again) == [str(t) for t in seen[-1]]
    monkeypatch.setattr(prior_band, "band_from_curve", strict)
    assert zoo.main(args) == 0  # the strict rule: no band, and no stale one left from the first install
    assert DiffusionPrior.from_pretrained(installed).band is None
    assert "band" not in json.loads((installed / "card.json").read_text())
    with pytest.raises(SystemExit):
        zoo.main(["install-prior", str(tmp_path / "nothing"), "--pretrained", str(tmp_path / "pre")])


def test_empty_band_boxes_in_inspect_and_train_mean_the_priors_band(banded_prior_dir):
    from studio import inputs, inspect_tab, train_tab

    prior = DiffusionPrior.from_pretrained(banded_prior_dir)
    assert inspect_tab.dose_band(None, None, prior) == (10, 30)
    assert inspect_tab.dose_band(None, 20, prior) == (10, 20) and inspect_tab.dose_band(0, "", prior) == (0, 30)
    fields = train_tab._train_t_range(None, None, prior)
    assert DiffLoss(prior, DiffLossConfig(**fields)).t_range == (10, 30)
    assert DiffLoss(prior, DiffLossConfig(**train_tab._train_t_range(0, 5000, prior))).t_range == (
        0, prior.num_timesteps - 1)  # typed: as typed, t max clipped to the schedule
    checked = inputs.train_numbers(10, 1, 32, 1e-3, 0.1, 0.1, None, "", 0, 0)
    assert checked["t_min"] is None and checked["t_max"] is None
    with pytest.raises(ValueError, match="t min must be a whole number"):
        inputs.train_numbers(10, 1, 32, 1e-3, 0.1, 0.1, 2.5, None, 0, 0)


def test_the_band_boxes_start_with_the_shipped_priors_band_or_the_old_whole_schedule(tmp_path, banded_prior_dir):
    from studio.models import Registry

    (tmp_path / "pre").mkdir()
    registry = Registry(pretrained=tmp_path / "pre", runs=tmp_path / "runs")
    assert registry.shipped_band_boxes() == (0, None)  # no prior shipped
    banded_prior_dir.rename(registry.shipped_prior_path)
    assert registry.shipped_band_boxes() == (10, 30)
    (registry.shipped_prior_path / prior_band.BAND_FILE).unlink()
    assert registry.shipped_band_boxes() == (0, None)  # a prior without a band: the boxes as they always were
