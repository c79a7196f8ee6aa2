"""Compare's family view: the arms in weight order, the amplified difference with its scale, the family's
perception-distortion plot with the shown arms ringed, and an arm's card lines."""

import json
import os
import shutil

import numpy as np
import pytest
import torch

from diffloss import nets
from studio import family_view
from tests.studio_helpers import make_world


@pytest.fixture
def family_world(tmp_path):
    world = make_world(tmp_path)
    shipped = world.registry.pretrained / "restorers" / "noise"
    shutil.rmtree(shipped / "diffloss")
    for i, arm in enumerate(("strong", "l2", "jacobian-free", "moderate")):  # written out of order on purpose
        if arm == "l2":
            continue
        torch.manual_seed(10 + i)
        model = nets.Restorer(nets.RestorerConfig(task="noise", width=8))
        nets.save_restorer(model, shipped / arm, card={"data": {"diffloss": True},
                                                       "arm": {"name": arm, "gamma": 0.1 * (i + 1), "lam": 0.2}})
    return world


def test_members_come_in_weight_order_and_the_showcase_arm_is_preselected(family_world):
    reg = family_world.registry
    shown = [m.arm for m in family_view.members("noise", reg)]
    assert shown == ["l2", "moderate", "strong", "jacobian-free"]
    assert [c[0] for c in family_view.weight_choices("noise", reg)] == [
        "0 % prior (l2)", "30 % prior (moderate)", "70 % prior (strong)", "70 % prior, Jacobian-free (jacobian-free)"]
    assert reg.default_pair("noise") == ("shipped noise l2", "shipped noise strong")


def test_the_preselected_arm_is_the_one_the_report_measured_furthest_from_l2(family_world):
    reg = family_world.registry
    means = {"l2": {"psnr": 27.0}, "input": {"psnr_vs_l2": 20.0},  # the input is not an arm to show
             "moderate": {"psnr_vs_l2": 39.0}, "strong": {"psnr_vs_l2": 34.0}, "jacobian-free": {"psnr_vs_l2": 31.5}}
    reg.report_file.write_text(json.dumps({"tasks": {"noise": {"sources": [
        {"mode": "paired", "means": {"strong": {"psnr_vs_l2": 10.0}}},  # only clean/val (synthetic) decides
        {"mode": "synthetic", "means": means}]}}}))
    assert reg.default_pair("noise") == ("shipped noise l2", "shipped noise jacobian-free")
    reg.report_file.write_text(json.dumps({"tasks": {"haze": {}}}))  # nothing measured for noise: the fallback
    stat = reg.report_file.stat()
    os.utime(reg.report_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert reg.default_pair("noise") == ("shipped noise l2", "shipped noise strong")  # SHOWCASE_ARM


def test_the_reseeded_control_sits_beside_the_l2_arm(family_world):
    reg = family_world.registry
    model = nets.Restorer(nets.RestorerConfig(task="noise", width=8))
    nets.save_restorer(model, reg.pretrained / "restorers" / "noise" / "l2-reseeded",
                       card={"data": {"diffloss": False}})
    assert [m.arm for m in family_view.members("noise", reg)][:3] == ["l2", "l2-reseeded", "moderate"]


def test_the_weight_control_names_the_gradients_form_and_the_control():
    assert family_view.weight_label("jacobian-free") == "70 % prior, Jacobian-free (jacobian-free)"
    assert family_view.weight_label("strong") == "70 % prior (strong)"  # L_nat leads: no note
    assert family_view.weight_label("l2-reseeded") == "0 % prior, another seed (l2-reseeded)"


def test_a_trained_run_joins_the_family_as_its_own_arm(family_world):
    reg = family_world.registry
    model = nets.Restorer(nets.RestorerConfig(task="noise", width=8))
    nets.save_restorer(model, reg.runs / "mine" / "diffloss" / "model", card={"data": {"diffloss": True}})
    members = family_view.members("noise", reg)
    assert members[-1].label == "run mine diffloss" and members[-1].arm is None
    assert "run mine diffloss" not in [c[1] for c in family_view.weight_choices("noise", reg)]


def test_the_amplified_difference_is_grey_where_equal_and_states_its_scale():
    a = torch.full((3, 8, 8), 0.5)
    b = a.clone()
    b[:, 0, 0] = 0.5 - 2 / 255  # two levels darker in one pixel
    picture, caption = family_view.amplified_difference(a, b, 10)
    assert picture.shape == (8, 8, 3) and picture.dtype == np.uint8
    assert np.all(picture[1:, 1:] == 128)  # grey = identical
    assert picture[0, 0, 0] == pytest.approx(128 + 20, abs=1)  # 2 levels x10
    assert "x10" in caption and "largest difference 2.0/255" in caption
    with pytest.raises(ValueError, match="differ in size"):
        family_view.amplified_difference(a, torch.zeros(3, 4, 4), 10)
    with pytest.raises(ValueError, match="> 0"):
        family_view.amplified_difference(a, b, 0)


def test_the_pd_figure_rings_the_arms_on_show_and_is_absent_without_a_report():
    report = {"tasks": {"noise": {"pd_points": {"input": {"psnr": 20, "niqe": 8}, "l2": {"psnr": 27, "niqe": 4},
                                                "strong": {"psnr": 26, "niqe": 3.5}}}}}
    plain = family_view.pd_figure(report, "noise")
    ringed = family_view.pd_figure(report, "noise", marked=("l2", "strong"))
    assert plain.ndim == 3 and plain.shape[2] == 3 and plain.shape == ringed.shape
    assert np.abs(plain.astype(int) - ringed.astype(int)).sum() > 0  # the rings are drawn
    assert family_view.pd_figure(None, "noise") is None
    assert family_view.pd_figure(report, "haze") is None


def test_arm_lines_say_what_the_arm_is_and_what_was_measured():
    card = {"arm": {"name": "strong", "gamma": 0.19, "lam": 0.14, "t_max": None}}
    report = {"tasks": {"noise": {"arms": {"strong": {"training": {"prior_share_last_fifth": 0.72}}},
                                  "sources": [{"source": "clean/val", "means": {"strong": {
                                      "psnr": 26.1, "niqe": 3.4, "psnr_vs_l2": 31.5}}}]}}}
    text = "\n".join(family_view.arm_lines(card, report, "noise", "shipped noise strong"))
    assert "70 % of the gradient" in text and "gamma 0.19" in text and "72%" in text
    assert "31.5 dB from the L2 arm" in text
    assert family_view.arm_of_label("run mine diffloss") is None


def test_a_report_of_the_older_zoo_gives_no_family_lines_and_no_error():
    older = {"tasks": {"noise": {"arms": {"l2": "pretrained/restorers/noise/l2"}, "sources": [{"source": "x"}]}}}
    assert family_view.arm_lines({}, older, "noise", "shipped noise l2") == ["**shipped noise l2**",
                                                                          "- fidelity only (MSE): the arm every other arm is compared with"]
    assert family_view.pd_figure(older, "noise") is None


def test_the_report_and_its_plot_are_read_and_drawn_once_per_version_of_the_file(family_world, monkeypatch):
    reg = family_world.registry
    points = {"l2": {"psnr": 27, "niqe": 4}, "strong": {"psnr": 26, "niqe": 3.5}}
    reg.report_file.write_text(json.dumps({"tasks": {"noise": {"pd_points": points}}}))
    drawn = []
    real = family_view.pd_figure
    monkeypatch.setattr(family_view, "pd_figure", lambda *a: drawn.append(a) or real(*a))
    family_view.PLOTS.clear()
    first = family_view.family_plot(reg, "noise", ("l2",))
    assert family_view.family_plot(reg, "noise", ("l2",)) is first and len(drawn) == 1
    assert reg.report() is reg.report()  # parsed once
    points["prior-led"] = {"psnr": 25, "niqe": 3.0}  # the report is rewritten: a new version, read and drawn again
    reg.report_file.write_text(json.dumps({"tasks": {"noise": {"pd_points": points}}}))
    stat = reg.report_file.stat()
    os.utime(reg.report_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert "prior-led" in reg.report()["tasks"]["noise"]["pd_points"]
    assert family_view.family_plot(reg, "noise", ("l2",)) is not first and len(drawn) == 2
