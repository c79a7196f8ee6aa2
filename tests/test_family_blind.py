"""bench/family_blind: every shipped prior arm against l2, panels under neutral set names, tallies where the report
reads them."""

import csv
import json

import torch

from bench import family_blind
from diffloss import blind, nets
from diffloss.images import save_image


def test_sets_name_neither_task_nor_arm_and_their_tallies_land_where_the_report_reads_them(tmp_path):
    pretrained = tmp_path / "pretrained"
    for i, arm in enumerate(("l2", "strong", "l2-reseeded")):
        torch.manual_seed(i)
        nets.save_restorer(nets.Restorer(nets.RestorerConfig(task="noise", width=8)),
                           pretrained / "restorers" / "noise" / arm)
    val = tmp_path / "data" / "clean" / "val"
    val.mkdir(parents=True)
    for i in range(2):
        save_image(torch.rand(3, 40, 40), val / f"v{i}.png")
    work, judges = tmp_path / "work", tmp_path / "judges"
    assert family_blind.main(["make", "--work", str(work), "--judges", str(judges), "--panels", "2", "--seed", "5",
                              "--datasets", str(tmp_path / "data"), "--pretrained", str(pretrained)]) == 0
    assert sorted(p.name for p in judges.iterdir()) == [family_blind.BRIEF_FILE, "set-01"]  # no control: no prior
    shown = sorted(p.name for p in (judges / "set-01").iterdir())
    assert not any("noise" in name or "strong" in name for name in shown) and blind.FORM_FILE in shown
    assert json.loads((work / family_blind.SETS_FILE).read_text()) == {
        "set-01": {"run": "noise-strong", "task": "noise", "arm": "strong"}}
    form = judges / "set-01" / blind.FORM_FILE
    rows = list(csv.reader(form.open()))
    with form.open("w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + [[r[0], "left", "judge"] for r in rows[1:]])
    save = tmp_path / "report" / "blind"
    assert family_blind.main(["tally", "--work", str(work), "--judges", str(judges), "--judge-kind", "model",
                              "--save", str(save)]) == 0
    record = json.loads((save / "noise" / "strong.json").read_text())
    assert sum(record["preferred"].values()) == 2 and record["judge_kind"] == "model"
    assert family_blind.main(["make", "--work", str(work), "--judges", str(judges), "--seed", "5",
                              "--datasets", str(tmp_path / "data"), "--pretrained", str(tmp_path / "none")]) == 2
