"""``python -m bench --quick`` runs end to end and writes a well-formed JSON; timings are never asserted
(they depend on the machine and its load), only that every figure produced finite, positive numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from bench import run

MEASURED = ("P1", "P2", "P3", "P5")


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """One quick run for the whole module: (what main returned, what it wrote)."""
    out = tmp_path_factory.mktemp("bench") / "x.json"
    returned = run.main(["--quick", "--device", "cpu", "--out", str(out)])
    return returned, json.loads(Path(out).read_text())


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_quick_json_describes_the_machine(quick_result: tuple[dict, dict]) -> None:
    returned, written = quick_result
    assert written == json.loads(json.dumps(returned, default=str))
    assert written["device"] and written["device_type"] == "cpu"
    assert written["torch"] and written["threads"] >= 1 and written["timestamp"]
    assert written["settings"]["quick"] is True
    assert any("quick" in note for note in written["notes"])


@pytest.mark.parametrize("key", MEASURED)
def test_quick_figures_have_finite_positive_numbers(quick_result: tuple[dict, dict], key: str) -> None:
    figure = quick_result[1]["figures"][key]
    assert figure["times_s"] and all(_positive(v) for v in figure["times_s"].values())
    assert figure["checks"]
    for check in figure["checks"]:
        assert _positive(check["value"]), check
        if check["goal_value"] is not None:
            assert check["met"] in (True, False) and check["goal"]


def test_quick_ratios_and_goals(quick_result: tuple[dict, dict]) -> None:
    figures = quick_result[1]["figures"]
    p1 = figures["P1"]
    # full crop (paper, Jacobian-free), sub-crop (paper, Jacobian-free), sub-crop on a subset: time ratios against
    # their goals, then their FLOP ratios
    assert [c["goal"] for c in p1["checks"]] == ["<= 6x", "<= 6x", "<= 3x", "<= 3x", "<= 3x"] + [None] * 5
    flop_ratio = {c["name"].removesuffix(" / fidelity_only FLOPs"): c["value"] for c in p1["checks"][5:]}
    gflop = p1["details"]["gflop_per_step"]
    assert flop_ratio["diffloss_full"] == pytest.approx(gflop["diffloss_full"] / gflop["fidelity_only"], rel=1e-2)
    # the prior terms add work, and a sub-crop of fewer items adds less of it
    assert flop_ratio["diffloss_full"] > flop_ratio["diffloss_crop16"] > flop_ratio["diffloss_crop16_samples1"] > 1
    # The Jacobian-free gradient skips the backward through the UNet: fewer FLOPs than the full one, still > 1
    assert flop_ratio["diffloss_full"] > flop_ratio["diffloss_full_sds"] > 1
    assert flop_ratio["diffloss_crop16"] > flop_ratio["diffloss_crop16_sds"] > 1
    assert figures["P2"]["checks"][0]["goal"] == ">= 10x"
    assert figures["P2"]["details"]["paper_scale_prior_parameters"] > 0
    assert figures["P2"]["details"]["paper_scale_out_channels"] == 6
    assert figures["P3"]["checks"][0]["goal"] == ">= 100x"
    assert figures["P5"]["checks"][0]["unit"] == "images/s"
    assert figures["P4"] == {"title": figures["P4"]["title"], "skipped": "skipped in quick mode"}


def test_only_and_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--only measures just the named figures; with no --out the file is named after the device."""
    monkeypatch.setattr(run, "REPO", tmp_path)
    result = run.main(["--quick", "--device", "cpu", "--only", "p5"])
    assert list(result["figures"]) == ["P5"]
    assert result["not_selected"] == ["P1", "P2", "P3", "P4"]
    assert (tmp_path / "bench" / "results" / "cpu.json").is_file()


def test_unknown_figure_is_refused() -> None:
    with pytest.raises(SystemExit, match="P9"):
        run.main(["--quick", "--only", "P9"])


def test_device_slug_is_a_file_name() -> None:
    import torch

    assert run.device_slug(torch.device("cpu")) == "cpu"
    assert run.slugify("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"


def test_subcrop_quality_study_trains_four_arms_from_one_base_and_scores_them(tmp_path) -> None:
    import json as _json

    from bench import subcrop_quality
    from diffloss import nets
    from diffloss.images import save_image
    from tests.helpers import tiny_prior

    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        folder = tmp_path / "datasets" / "clean" / split
        for i in range(3):
            img = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 8, generator=g), size=(48, 64), mode="bilinear")
            save_image(img[0], folder / f"img{i}.png")
    tiny_prior().save_pretrained(tmp_path / "prior")
    nets.save_restorer(nets.Restorer(nets.RestorerConfig(task="noise", width=8)), tmp_path / "base")
    (tmp_path / "calibration.json").write_text(_json.dumps({"gamma": 0.5, "lam": 0.5}))
    result = subcrop_quality.main([
        "--base", str(tmp_path / "base"), "--calibration", str(tmp_path / "calibration.json"),
        "--datasets", str(tmp_path / "datasets"), "--prior", str(tmp_path / "prior"), "--crop", "32",
        "--prior-crop", "16", "--prior-samples", "1", "--steps", "2", "--batch", "2", "--val-images", "2",
        "--t-weight", "sigma2", "--out", str(tmp_path / "runs"), "--json", str(tmp_path / "study.json")])
    assert set(result["arms"]) == {"l2", "diffloss", "diffloss-sub", "diffloss-sub-few"}
    assert _json.loads((tmp_path / "study.json").read_text())["arms"].keys() == result["arms"].keys()
    for arm in result["arms"].values():
        assert math.isfinite(arm["means"]["psnr"]) and arm["train_s_per_step"] > 0
        assert all(0 <= v <= result["images"] for v in arm["wins_vs_l2"].values())
    cards = {arm: _json.loads((tmp_path / "runs" / arm / "model" / "card.json").read_text()) for arm in result["arms"]}
    assert cards["diffloss-sub-few"]["config"]["loss"]["prior_samples"] == 1
    assert cards["diffloss-sub"]["config"]["loss"]["prior_crop"] == 16 and cards["l2"]["config"]["diffloss"] is False
    assert {c["config"]["loss"]["t_weight"] for c in cards.values()} == {"sigma2"} == {result["t_weight"]}
    distances = {arm: r["means"].get("psnr_vs_reference") for arm, r in result["arms"].items()}
    assert distances.pop("l2") is None and all(math.isfinite(d) and d > 20 for d in distances.values())


def test_overlap_study_times_each_wrapper_against_the_plain_call_and_leaves_the_flag_as_it_was(tmp_path) -> None:
    from bench import overlap
    from diffloss import side_by_side

    before = side_by_side.ENABLED
    result = overlap.main(["--quick", "--repeats", "2", "--json", str(tmp_path / "o.json")])
    assert side_by_side.ENABLED == before
    assert json.loads((tmp_path / "o.json").read_text())["cases"].keys() == result["cases"].keys()
    assert set(result["cases"]) == {"curves_64", "arms_512"}
    for case in result["cases"].values():
        assert _positive(case["plain"]) and _positive(case["side_by_side"])
        rounds = case["rounds"]
        assert len(rounds["plain"]) == len(rounds["side_by_side"]) == 2
        ratios = sorted(p / w for p, w in zip(rounds["plain"], rounds["side_by_side"]))
        assert case["speedup"] == pytest.approx((ratios[0] + ratios[1]) / 2)


def test_median_ratio_is_the_median_of_the_per_round_ratios() -> None:
    from bench.timing import median_ratio

    assert median_ratio([2.0, 4.0, 9.0], [1.0, 1.0, 3.0]) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        median_ratio([1.0, 2.0], [1.0])


def test_cold_start_marks_become_the_seconds_each_step_adds() -> None:
    from bench.studio_speed import cold_start_parts

    marks = {"torch": 2.0, "gradio": 7.5, "app": 8.0, "restorers": 8.5, "diffusers": 11.0, "prior": 11.25}
    assert cold_start_parts(marks) == {"torch": 2.0, "gradio": 5.5, "app": 0.5, "restorers": 0.5, "diffusers": 2.5,
                                       "prior": 0.25}
    no_prior = {"torch": 2.0, "gradio": 7.5, "app": 8.0, "restorers": 8.5, "prior": 8.5}
    assert cold_start_parts(no_prior)["prior"] == 0.0 and "diffusers" not in cold_start_parts(no_prior)


@pytest.mark.parametrize("groups", [1, 8])
def test_a_convolutions_backward_costs_its_forward_per_gradient(groups: int) -> None:
    """bench.timing.count_flops: torch's own formula counts a grouped convolution's backward ``groups`` times over."""
    from bench.timing import count_flops

    conv = torch.nn.Conv2d(8, 8, 3, padding=1, groups=groups)
    x = torch.rand(2, 8, 16, 16)
    forward = count_flops(lambda: conv(x))
    assert forward == 2 * 2 * 8 * 16 * 16 * (8 // groups) * 9  # multiply-adds x 2, per output value
    assert count_flops(lambda: conv(x).sum().backward()) == 2 * forward  # the weights' gradient only
    x.requires_grad_(True)
    assert count_flops(lambda: conv(x).sum().backward()) == 3 * forward  # and the input's
