"""Evaluation reports: the input baseline is always there, numbers are finite and reproducible, files are written."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from diffloss.evaluate import IDENTITY, EvalSource, evaluate, iter_samples, main
from diffloss.degrade import make_pair
from diffloss.images import load_image, save_image
from diffloss.nets import Restorer, RestorerConfig, save_restorer


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
    md = (out / "results.md").read_text()
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
