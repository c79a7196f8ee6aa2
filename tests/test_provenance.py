"""Cards name the data, not the machine: dataset-relative data paths, runs/ and pretrained/ folders, no absolute path."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from diffloss import train_cli
from diffloss.family import ZooPaths
from diffloss.images import save_image
from diffloss.paths import PRETRAINED
from diffloss.provenance import DATASETS_ROOT, absolute_paths, portable_card
from diffloss.zoo import shipped_card


@pytest.fixture()
def machine(tmp_path, monkeypatch):
    """A machine's folders: the datasets (three small clean photos) and the runs folder, both absolute."""
    datasets, runs = tmp_path / "data" / "benchmarks", tmp_path / "work" / "runs"
    g = torch.Generator().manual_seed(0)
    for i in range(3):
        save_image(torch.rand(3, 40, 48, generator=g), datasets / "clean" / "train" / f"p{i}.png")
    monkeypatch.setenv("DIFFLOSS_DATASETS", str(datasets))
    monkeypatch.setenv("DIFFLOSS_RUNS", str(runs))
    monkeypatch.setattr(train_cli, "stop_on_signals", lambda: None)  # keep pytest's own handlers
    return datasets, runs


def _train(argv: list[str], monkeypatch) -> int:
    monkeypatch.setattr(sys, "argv", ["diffloss.train", *argv])  # what the card's command records
    return train_cli.main(argv)


def test_a_card_written_by_a_training_run_has_no_absolute_path_in_its_data_or_command(machine, monkeypatch):
    datasets, runs = machine
    argv = ["restorer", "--task", "noise", "--diffloss", "off", "--no-track", "--clean", str(datasets / "clean" / "train"),
            "--crop", "32", "--width", "8", "--steps", "2", "--batch", "2", "--log-every", "1", "--threads", "1",
            "--device", "cpu", "--out", str(runs / "noise-l2")]
    assert _train(argv, monkeypatch) == 0
    card = json.loads((runs / "noise-l2" / "model" / "card.json").read_text())
    assert absolute_paths(card["command"]) == [] and absolute_paths(card["data"]) == []
    assert card["command"] == ("python -m diffloss.train restorer --task noise --diffloss off --no-track --clean "
                               "$DIFFLOSS_DATASETS/clean/train --crop 32 --width 8 --steps 2 --batch 2 --log-every 1 "
                               "--threads 1 --device cpu --out runs/noise-l2")
    assert card["data"]["clean"] == ["clean/train"] and card["datasets_root"] == DATASETS_ROOT
    assert card["config"]["clean"] == [str(datasets / "clean" / "train")]  # the run's own settings, as it ran

    assert _train(["export", str(runs / "noise-l2"), "--to", str(runs / "exported")], monkeypatch) == 0
    exported = json.loads((runs / "exported" / "card.json").read_text())
    assert absolute_paths(exported["command"]) == [] and exported["data"]["clean"] == ["clean/train"]


def test_every_shipped_card_names_data_by_dataset_relative_paths():
    cards = {path: json.loads(path.read_text()) for path in sorted(PRETRAINED.glob("**/card.json"))}
    from diffloss.family import FAMILY
    from diffloss.paths import TASK_ORDER

    shipped = [a for a in FAMILY if a.shipped and not a.optional]
    assert len(cards) >= 2 + len(TASK_ORDER) * len(shipped)  # the prior, NIQE's model and every restorer
    for path, card in cards.items():
        assert absolute_paths(card) == [], path
        assert card["datasets_root"] == DATASETS_ROOT, path
    restorers = [c for p, c in cards.items() if "restorers" in p.parts]
    assert all(c["data"]["clean"] == ["clean/train"] for c in restorers)
    assert all(c["data"]["init"].startswith("runs/zoo/") and c["data"]["prior"] == "pretrained/prior" for c in restorers)
    assert all("--datasets $DIFFLOSS_DATASETS --runs runs/zoo" in c["command"] for c in restorers)
    haze = [c for p, c in cards.items() if "haze" in p.parts]
    assert haze and all(c["data"]["paired"][0]["root"] == "haze/sots_indoor" for c in haze)
    assert cards[PRETRAINED / "prior" / "card.json"]["validation"]["data"] == "clean/val"


def test_the_shipped_data_paths_exist_in_the_datasets_folder(datasets_root):
    for path in sorted(PRETRAINED.glob("restorers/*/*/card.json")):
        data = json.loads(path.read_text())["data"]
        for folder in data["clean"] + [p["root"] for p in data.get("paired") or []]:
            assert (datasets_root / folder).is_dir(), (path, folder)


def test_the_zoo_installs_cards_with_its_folders_named_portably(tmp_path):
    paths = ZooPaths(datasets=tmp_path / "datasets", runs=tmp_path / "build" / "runs", pretrained=tmp_path / "out")
    command = f"python -m diffloss.zoo build --quick --datasets {paths.datasets} --runs {paths.runs}"
    card = {"command": command, "steps": 200, "data": {"clean": [str(paths.clean_train)], "task": "noise",
            "init": str(paths.runs / "quick" / "noise" / "base" / "model"), "prior": str(paths.prior_dir())},
            "config": {"loop": {"command": command, "out": str(paths.runs / "quick" / "noise" / "l2"), "lr": 3e-3},
                       "paired": [str(paths.sots)], "other": "/somewhere/else/photos"}}
    shipped = shipped_card(card, paths)
    assert shipped["command"] == "python -m diffloss.zoo build --quick --datasets $DIFFLOSS_DATASETS --runs runs/zoo"
    assert shipped["config"]["loop"]["command"] == shipped["command"]
    assert shipped["data"] == {"clean": ["clean/train"], "task": "noise", "init": "runs/zoo/quick/noise/base/model",
                               "prior": "pretrained/prior"}
    assert shipped["config"]["loop"]["out"] == "runs/zoo/quick/noise/l2" and shipped["config"]["loop"]["lr"] == 3e-3
    assert shipped["config"]["paired"] == ["haze/sots_indoor"] and shipped["config"]["other"] == "photos"
    assert shipped["steps"] == 200 and absolute_paths(shipped) == [] and shipped["datasets_root"] == DATASETS_ROOT


def test_only_the_fields_asked_for_are_rewritten(tmp_path):
    card = {"command": f"x --clean {tmp_path}/d/clean", "data": {"clean": [f"{tmp_path}/d/clean"]},
            "config": {"clean": [f"{tmp_path}/d/clean"]}}
    out = portable_card(card, tmp_path / "d", roots={}, fields=("command", "data"))
    assert out["command"] == "x --clean $DIFFLOSS_DATASETS/clean" and out["data"] == {"clean": ["clean"]}
    assert out["config"] == card["config"]
