"""What the app says about a restorer: its card as lines a person reads, and the zoo's measurements for it."""

from __future__ import annotations

from pathlib import Path

from studio import cards, compare_tab, restorers, train_tab
from studio.train_settings import TrainSettings
from tests.studio_helpers import make_world

ZOO_CARD = {
    "steps": 300, "batch_size": 8, "wall_time_s": 463.6, "device": "cpu: x86_64, 2 threads",
    "finished": "2026-11-26T15:09:50+0000", "weights": "EMA of the training weights", "storage": "float16",
    "command": "python -m diffloss.zoo build --quick",
    "base": {"steps": 600, "loss": "fidelity only (mse)"},
    "calibration": {"nat_share": 0.2, "sem_share": 0.1, "images": 8},
    "data": {"init": "/repo/runs/base/model", "clean": ["/data/clean/train"], "clean_images": 200, "diffloss": True,
             "loss": {"fidelity": "mse", "gamma": 0.0235880, "lam": 0.62744, "t_min": 0, "t_max": None}},
}


def test_a_zoo_card_says_steps_time_start_data_loss_calibration_and_command():
    text = "\n".join(cards.training_lines(ZOO_CARD, repo=Path("/repo")))
    assert "300 steps, batch 8, 7.7 min on cpu: x86_64, 2 threads" in text
    assert "started from `runs/base/model` (an L2 base: 600 steps, fidelity only (mse))" in text
    # a path outside the repo and the datasets folder is shown by its name, never as the machine's absolute path
    assert "200 clean photos from `train`" in text and "/data/" not in text
    assert "loss: mse + gamma 0.02359 * (L_nat + lambda 0.6274 * L_sem), t in [0, T-1]" in text
    assert "L_nat carries 20% and L_sem 10% of the gradient on 8 validation photos" in text
    assert "stored as float16" in text and "command: `python -m diffloss.zoo build --quick`" in text


def test_a_family_card_says_the_shares_its_weights_were_solved_for():
    card = {**ZOO_CARD, "arm": {"name": "strong", "nat_share": 0.5, "sem_share": 0.2},
            "calibration": {"norms": {}, "images": 8, "data": "clean/train (evenly spread photos)"}}
    text = "\n".join(cards.training_lines(card, repo=Path("/repo")))
    assert "L_nat carries 50% and L_sem 20% of the gradient, measured through the L2 base on 8 training photos" in text


def test_an_l2_card_and_a_missing_card_say_what_they_are():
    l2 = {**ZOO_CARD, "data": {**ZOO_CARD["data"], "diffloss": False, "init": None}}
    text = "\n".join(cards.training_lines(l2))
    assert "loss: mse only (the L2 arm)" in text and "started from a fresh restorer" in text
    assert "calibrated" not in text  # the L2 arm's card carries the pair's calibration, but it did not use it
    assert cards.training_lines(None) == ["- no card.json: how it was trained is unknown"]
    assert cards.training_lines({})[0].startswith("- no card.json")


def test_measured_means_are_found_by_folder_and_unmeasured_metrics_left_out(tmp_path):
    folder = tmp_path / "noise" / "diffloss"
    report = {"tasks": {"noise": {"sources": [{"source": "clean/val", "report": {"restorers": [
        {"name": "identity", "path": None, "images": [{}] * 24, "mean": {"psnr": 21.1}},
        {"name": "diffloss", "path": str(folder), "images": [{}] * 24,
         "mean": {"psnr": 27.0621, "ssim": 0.66727, "niqe": 3.639, "lpips": None}},
    ]}}]}}}
    rows = cards.measured_rows(report, "noise", folder)
    assert rows == [("clean/val", 24, {"psnr": 27.0621, "ssim": 0.66727, "niqe": 3.639, "lpips": None})]
    assert cards.measured_lines(rows) == ["  - clean/val, 24 images: PSNR 27.06, SSIM 0.6673, NIQE 3.64"]
    assert cards.measured_rows(report, "haze", folder) == [] and cards.measured_rows(None, "noise", folder) == []


def test_compare_describes_both_arms_of_a_tab_trained_pair(tmp_path):
    world = make_world(tmp_path, with_restorers=True)
    l2, _ = world.labels()
    list(train_tab.train_pair(TrainSettings("noise", 2, 1, 32, 1e-3, 0.05, 0.1, 0, 99, 0, "", str(world.clean),
                                            start=l2, name="pair"), registry=world.registry))
    _, run_l2, run_dl = restorers.trained_pair_choices("noise", world.registry)
    text = compare_tab.describe_pair("noise", run_l2, run_dl, world.registry)
    assert "**L2 arm**: `run pair l2`" in text and "**DiffLoss arm**: `run pair diffloss`" in text
    assert "loss: mse only (the L2 arm)" in text and "loss: mse + gamma 0.05 * (L_nat + lambda 0.1 * L_sem)" in text
    assert "2 steps, batch 1" in text and "measured by" not in text  # a run has no zoo report
    assert "Both arms started from the same weights" in text
    assert "none chosen" in compare_tab.describe_pair("noise", None, run_dl, world.registry)
