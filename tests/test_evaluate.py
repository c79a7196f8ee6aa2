"""Evaluation reports: the input baseline is always there, numbers are finite and reproducible, files are written."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from diffloss.evaluate import (IDENTITY, METRICS, PERCEPTUAL_HIGHER_IS_BETTER, EvalSource, default_out, evaluate,
                               iter_samples, main, perceptual_metrics, verdict, wins)
from diffloss.degrade import make_pair
from diffloss.images import load_image, save_image
from diffloss.metrics import psnr
from diffloss.nets import Restorer, RestorerConfig, load_restorer, restore, save_restorer


def _photo(seed: int, h: int = 200, w: int = 208) -> torch.Tensor:
    """A textured stand-in for a photo, big enough for NIQE (192 px) and a multiple of 4 for sr4."""
    rng = np.random.default_rng(seed)
    base = gaussian_filter(rng.standard_normal((3, h, w)), sigma=(0, 2, 2))
    return torch.from_numpy(np.clip(0.5 + 0.2 * base / base.std(), 0, 1)).float()


@pytest.fixture()
def clean_dir(tmp_path):
    folder = tmp_path / "clean"
    for i in range(2):
        save_image(_photo(i), folder / f"img_{i}.png")
    return folder


@pytest.fixture()
def tiny_restorer(tmp_path):
    """A saved, nearly untrained noise restorer (small random head: close to, but not, the identity)."""
    torch.manual_seed(0)
    model = Restorer(RestorerConfig(task="noise", width=8, enc_blocks=(1,), dec_blocks=(1,), middle_blocks=1))
    with torch.no_grad():  # a non-zero head, so the restorer differs from the identity
        model.head[0].weight.normal_(0, 1e-3)
    folder = tmp_path / "tiny_noise"
    save_restorer(model, folder)
    return folder


def _check_finite(report, keys=("psnr", "ssim", "niqe")):
    for row in report.rows:
        assert len(row.images) == 2
        for item in row.images:
            for k in keys:
                assert item[k] is not None and math.isfinite(item[k]), (row.name, k, item)


def test_synthetic_identity_baseline_is_reproducible_and_written(clean_dir, tmp_path):
    source = EvalSource("synthetic", clean_dir, task="noise", base_seed=7)
    report = evaluate({}, source)
    assert [r.name for r in report.rows] == [IDENTITY]
    _check_finite(report)
    assert [i["seed"] for i in report.rows[0].images] == [7, 8]
    again = evaluate({}, source)
    assert again.rows[0].images == report.rows[0].images  # same seeds, same inputs, same numbers
    other = evaluate({}, EvalSource("synthetic", clean_dir, task="noise", base_seed=8))
    assert other.rows[0].images[0]["psnr"] != report.rows[0].images[0]["psnr"]  # another seed, another noise
    second = list(iter_samples(source))[1]  # image 1 is degraded with seed base_seed + 1, as make_pair would
    expected = make_pair("noise", load_image(clean_dir / "img_1.png"), 8).net_input[0]
    assert torch.equal(second.net_input, expected)

    json_path, md_path = report.save(tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert data["restorers"][0]["name"] == IDENTITY and len(data["restorers"][0]["images"]) == 2
    assert data["restorers"][0]["mean"]["psnr"] == pytest.approx(np.mean([i["psnr"] for i in report.rows[0].images]))
    md = md_path.read_text()
    assert "| identity |" in md and "unavailable" in md and "data_range=1" in md


def test_sr4_input_is_the_upsampled_image_at_gt_size(clean_dir):
    samples = list(iter_samples(EvalSource("synthetic", clean_dir, task="sr4", limit=1)))
    assert len(samples) == 1
    assert samples[0].net_input.shape == samples[0].gt.shape == (3, 200, 208)


def test_unpaired_reports_niqe_only(clean_dir, tmp_path):
    report = evaluate({}, EvalSource("unpaired", clean_dir, task="lowlight"))
    _check_finite(report, keys=("niqe",))
    assert all(i["psnr"] is None and i["lpips"] is None for i in report.rows[0].images)
    md = report.to_markdown()
    assert "No ground truth" in md and "unavailable" not in md.split("Conventions")[0]
    assert md.startswith("# Evaluation") and "results.json" in md
    embedded = report.to_markdown(standalone=False)
    assert embedded.startswith("Task: lowlight") and "results.json" not in embedded and "| identity |" in embedded


def test_paired_folder_and_limit(tmp_path):
    for i in range(3):
        gt = _photo(i)
        save_image(gt, tmp_path / "pairs" / "gt" / f"p{i}.png")
        save_image((gt * 0.5), tmp_path / "pairs" / "lq" / f"p{i}.png")
    report = evaluate({}, EvalSource("paired", tmp_path / "pairs", limit=2))
    _check_finite(report)
    assert [i["name"] for i in report.rows[0].images] == ["p0.png", "p1.png"]
    assert report.rows[0].means()["psnr"] < 15  # half brightness is far from the gt


def test_sources_are_validated(clean_dir):
    with pytest.raises(ValueError, match="needs a task"):
        EvalSource("synthetic", clean_dir)
    with pytest.raises(ValueError, match="unknown task"):
        EvalSource("synthetic", clean_dir, task="snow")
    with pytest.raises(ValueError, match="mode"):
        EvalSource("video", clean_dir, task="noise")
    with pytest.raises(ValueError, match="reserved"):
        evaluate({IDENTITY: clean_dir}, EvalSource("synthetic", clean_dir, task="noise"))


def test_cli_with_a_tiny_restorer_writes_table_with_identity_row(clean_dir, tiny_restorer, tmp_path):
    out = tmp_path / "report"
    report = main(["--restorer", f"tiny={tiny_restorer}", "--clean", str(clean_dir), "--task", "noise", "--out", str(out)])
    assert [r.name for r in report.rows] == [IDENTITY, "tiny"]
    _check_finite(report)
    ident, tiny = report.rows[0].images, report.rows[1].images
    assert tiny[0]["psnr"] != ident[0]["psnr"]  # the restorer ran
    assert abs(tiny[0]["psnr"] - ident[0]["psnr"]) < 1.0  # ...and, nearly untrained, stays close to its input
    data = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in data["restorers"]] == [IDENTITY, "tiny"]
    md = (out / "results.md").read_text().split("**Against")[0]  # the metrics table, before the comparison
    rows = [line for line in md.splitlines() if line.startswith("| identity |") or line.startswith("| tiny |")]
    assert len(rows) == 2 and all("unavailable" in line for line in rows)


def test_paired_folder_takes_the_task_from_the_restorers(tmp_path, tiny_restorer):
    gt = _photo(0)
    save_image(gt, tmp_path / "pairs" / "gt" / "a.png")
    save_image((gt + 0.05).clamp(0, 1), tmp_path / "pairs" / "lq" / "a.png")
    report = evaluate({"tiny": tiny_restorer}, EvalSource("paired", tmp_path / "pairs"), tile=128)
    assert report.task == "noise" and report.source.task is None
    assert [r.name for r in report.rows] == [IDENTITY, "tiny"]
    assert math.isfinite(report.row("tiny").images[0]["psnr"])


# ------------------------------------------------------------------ the CLI a researcher reads (issue #27, point 4)
def _save_tiny(folder, task: str = "noise", seed: int = 0, scale: float = 1e-3):
    torch.manual_seed(seed)
    config = RestorerConfig(task=task, in_channels=4 if task == "inpaint" else 3, width=8, enc_blocks=(1,),
                            dec_blocks=(1,), middle_blocks=1)
    model = Restorer(config)
    with torch.no_grad():
        model.head[0].weight.normal_(0, scale)
    save_restorer(model, folder)
    return folder


def test_reference_distance_wins_and_verdicts_are_printed(clean_dir, tiny_restorer, tmp_path, capsys):
    other = _save_tiny(tmp_path / "other", seed=1, scale=2e-2)  # a restorer that moves further from its input
    report = main(["--restorer", f"tiny={tiny_restorer}", "--restorer", f"other={other}", "--clean", str(clean_dir),
                   "--task", "noise", "--reference", "tiny", "--out", str(tmp_path / "out")])
    assert report.reference == "tiny"
    # the distance is the PSNR between the two outputs, image by image, and its median over images
    samples = list(iter_samples(EvalSource("synthetic", clean_dir, task="noise")))
    models = {name: load_restorer(path) for name, path in (("tiny", tiny_restorer), ("other", other))}
    outs = {name: [restore(m, s.net_input).clamp(0, 1) for s in samples] for name, m in models.items()}
    expected = [psnr(a, b) for a, b in zip(outs["other"], outs["tiny"])]
    assert [i["psnr_vs_reference"] for i in report.row("other").images] == pytest.approx(expected, abs=1e-6)
    assert report.row("other").means()["psnr_vs_reference"] == pytest.approx(float(np.median(expected)), abs=1e-6)
    assert "psnr_vs_reference" not in report.row("tiny").images[0]
    printed = capsys.readouterr().out
    table = printed.split("**Against `tiny`** (the reference)")[1]
    other_row = next(line for line in table.splitlines() if line.startswith("| other |"))
    assert f"| {np.median(expected):.1f} |" in other_row
    won, n = wins(report, "psnr", "other", "tiny")
    assert n == 2 and f"PSNR {won}/2" in other_row
    assert verdict(report, "other", "tiny") in printed and verdict(report, "identity", "tiny") not in printed
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["reference"] == "tiny" and data["restorers"][2]["mean"]["psnr_vs_reference"] == pytest.approx(
        float(np.median(expected)), abs=1e-6)


def test_without_a_reference_each_restorer_is_judged_against_the_input(clean_dir, tiny_restorer, tmp_path, capsys):
    report = main(["--restorer", f"tiny={tiny_restorer}", "--clean", str(clean_dir), "--task", "noise",
                   "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert "**Against `identity`** (the input)" in printed and verdict(report, "tiny", IDENTITY) in printed
    gains = [a["psnr"] - b["psnr"] for a, b in zip(report.row("tiny").images, report.rows[0].images)]
    assert report.row("tiny").median_gain(report.rows[0]) == pytest.approx(float(np.median(gains)))


def test_a_restorer_of_another_task_is_warned_about(clean_dir, tiny_restorer, tmp_path, capsys):
    report = main(["--restorer", f"tiny={tiny_restorer}", "--clean", str(clean_dir), "--task", "lowlight",
                   "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert "warning: restorer 'tiny' was trained for noise, not lowlight" in err
    assert report.warnings and "**Warning:** restorer 'tiny' was trained for noise" in report.to_markdown()
    same_task = evaluate({"tiny": tiny_restorer}, EvalSource("synthetic", clean_dir, task="noise", limit=1))
    assert same_task.warnings == []


@pytest.mark.parametrize("case", ["missing folder", "inpaint net on noise", "noise net on inpaint", "bad reference",
                                  "missing photos"])
def test_bad_input_ends_in_one_line_not_a_traceback(case, clean_dir, tiny_restorer, tmp_path, capsys):
    inpaint = _save_tiny(tmp_path / "inpaint_net", task="inpaint")
    argv, expected = {
        "missing folder": (["--restorer", f"l2={tmp_path / 'absent'}", "--clean", str(clean_dir), "--task", "noise"],
                           "error: restorer 'l2': model folder not found"),
        "inpaint net on noise": (["--restorer", f"fill={inpaint}", "--clean", str(clean_dir), "--task", "noise"],
                                 "error: restorer 'fill' takes 4 input channels (it was trained for inpaint) but noise "
                                 "inputs have 3: evaluate it with --task inpaint"),
        "noise net on inpaint": (["--restorer", f"tiny={tiny_restorer}", "--clean", str(clean_dir), "--task",
                                  "inpaint"], "error: restorer 'tiny' takes 3 input channels"),
        "bad reference": (["--restorer", f"tiny={tiny_restorer}", "--clean", str(clean_dir), "--task", "noise",
                           "--reference", "l2"], "error: --reference 'l2' is not one of the restorers (tiny)"),
        "missing photos": (["--clean", str(tmp_path / "nowhere"), "--task", "noise"], "error: image folder not found"),
    }[case]
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_progress_gives_an_eta_from_the_first_image_on(clean_dir, tiny_restorer, tmp_path, capsys):
    main(["--restorer", f"tiny={tiny_restorer}", "--clean", str(clean_dir), "--task", "noise",
          "--out", str(tmp_path / "out")])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("[", "done:"))]
    assert lines[0] == "[1/2] img_0.png"  # nothing measured yet
    assert re.fullmatch(r"\[2/2\] img_1\.png \(\d+\.\d s/image, about \d+ s left\)", lines[1])
    assert re.fullmatch(r"done: 2 images in \d+ s", lines[2])


def test_out_defaults_to_the_projects_runs_folder_not_the_current_one(clean_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFLOSS_RUNS", str(tmp_path / "runs"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    main(["--clean", str(clean_dir), "--task", "noise", "--limit", "1"])
    assert (tmp_path / "runs" / "eval" / "noise-clean" / "results.json").is_file()
    assert list(elsewhere.iterdir()) == []
    assert default_out(EvalSource("paired", tmp_path / "pairs")) == tmp_path / "runs" / "eval" / "paired-pairs"


def test_perceptual_metrics_hook_gives_every_named_metric_with_its_direction(clean_dir):
    gt = _photo(0)
    noisy = (gt + 0.1 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    values = perceptual_metrics(noisy, gt)
    assert set(values) == set(PERCEPTUAL_HIGHER_IS_BETTER) and set(PERCEPTUAL_HIGHER_IS_BETTER) <= set(METRICS)
    assert perceptual_metrics(gt, gt)["ms_ssim"] == pytest.approx(1.0, abs=1e-5)
    assert values["ms_ssim"] < 0.99 and PERCEPTUAL_HIGHER_IS_BETTER["ms_ssim"] is True
    assert perceptual_metrics(noisy, None) == {name: None for name in PERCEPTUAL_HIGHER_IS_BETTER}
    report = evaluate({}, EvalSource("synthetic", clean_dir, task="noise"))
    assert all(i["ms_ssim"] is not None for i in report.rows[0].images)  # 200 px: enough for five scales
    table = report.to_markdown()
    assert "| MS-SSIM ↑ |" in table and "| HaarPSI ↑ |" in table and "| MDSI ↓ |" in table  # diffloss.perceptual's
    assert {"haarpsi", "mdsi", "ms_gmsd"} <= set(values) and values["haarpsi"] < 1 and values["mdsi"] > 0
    assert PERCEPTUAL_HIGHER_IS_BETTER["haarpsi"] is True and PERCEPTUAL_HIGHER_IS_BETTER["mdsi"] is False
