"""The two-arm pair in the library: ``python -m diffloss.train pair`` trains both arms as the Train tab does."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch

from diffloss import pair, train_cli
from diffloss.checkpoint import load_tensors
from diffloss.images import save_image
from diffloss.paths import RunFolder
from tests.helpers import tiny_prior


@pytest.fixture
def folders(tmp_path):
    g = torch.Generator().manual_seed(0)
    for i in range(2):
        save_image(torch.rand(3, 48, 48, generator=g), tmp_path / "clean" / f"{i}.png")
    tiny_prior().save_pretrained(tmp_path / "prior")
    return tmp_path


def _pair_args(root, out, steps=2):
    return ["pair", "--task", "noise", "--clean", str(root / "clean"), "--prior", str(root / "prior"), "--crop", "32",
            "--width", "8", "--steps", str(steps), "--batch", "1", "--log-every", "1", "--threads", "1",
            "--gamma", "5", "--device", "cpu", "--out", str(out)]


def test_the_pair_command_trains_both_arms_from_one_setting_and_zips_them(folders, monkeypatch, capsys):
    monkeypatch.setattr(train_cli, "stop_on_signals", lambda: None)  # keep pytest's own handlers
    out = folders / "runs" / "p"
    assert train_cli.main(_pair_args(folders, out)) == 0
    printed = capsys.readouterr().out
    assert "l2: step 2/2" in printed and "diffloss: step 2/2" in printed
    assert "differ from the L2 arm's by up to" in printed
    cards = {arm: json.loads((RunFolder(out / arm).model / "card.json").read_text()) for arm in ("l2", "diffloss")}
    assert cards["l2"]["config"]["diffloss"] is False and cards["diffloss"]["config"]["diffloss"] is True
    assert cards["diffloss"]["command"].endswith("(diffloss arm)")
    strip = {"diffloss", "loop"}
    assert {k: v for k, v in cards["l2"]["config"].items() if k not in strip} == \
        {k: v for k, v in cards["diffloss"]["config"].items() if k not in strip}  # one setting, two arms
    archive = zipfile.ZipFile(out / "p.zip")
    assert "l2/model.safetensors" in archive.namelist() and "diffloss/card.json" in archive.namelist()
    zipped = archive.read("diffloss/card.json").decode()
    assert str(folders) in json.dumps(cards["diffloss"])  # the run's own card keeps its folders (resume reads it)
    assert str(folders) not in zipped and '"/' not in zipped  # the download names no server folder
    assert json.loads(zipped)["config"]["loop"]["out"] == "runs/p/diffloss"


def test_resume_of_a_pair_folder_goes_on_with_the_unfinished_arm_only(folders, monkeypatch, capsys):
    import shutil

    monkeypatch.setattr(train_cli, "stop_on_signals", lambda: None)
    out = folders / "runs" / "half"
    assert train_cli.main(_pair_args(folders, out)) == 0
    before = load_tensors(RunFolder(out / "diffloss").model / "model.safetensors")
    shutil.rmtree(RunFolder(out / "diffloss").model)  # as if it had stopped at its last checkpoint
    assert pair.stopped_pairs(folders / "runs") == [("half (l2 finished, diffloss 2/2)", "half")]
    assert train_cli.main(["resume", str(out)]) == 0
    assert "l2: had finished; kept as it was" in capsys.readouterr().out
    after = load_tensors(RunFolder(out / "diffloss").model / "model.safetensors")
    assert all(before[k].equal(after[k]) for k in before)
    assert pair.stopped_pairs(folders / "runs") == []


def test_a_pair_without_any_checkpoint_cannot_resume(tmp_path):
    for arm in ("l2", "diffloss"):
        (tmp_path / "run" / arm).mkdir(parents=True)
    with pytest.raises(pair.PairError, match="has no checkpoint: it stopped before its first step"):
        pair.resume_plans(tmp_path / "run", "test")
