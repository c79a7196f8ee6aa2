"""Blind A/B judgement: the statistics, the crop choice, panels with a key kept apart, the tally with its one-line
refusals, and the report's blind section."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.stats import binomtest

from diffloss import blind
from diffloss.blind import (BlindError, CHOICES, GAP, LABEL_HEIGHT, MOST_DIFFERENT, RANDOM, append_judgement,
                            crop_kinds, main, most_different_windows, random_window, read_judgements, read_key,
                            tally, window_sums)
from diffloss.blind_stats import judgements_needed, sign_test, sign_test_power, with_ties
from diffloss.degrade import make_pair
from diffloss.evaluate import EvalSource, iter_samples
from diffloss.images import load_image, save_image, to_uint8_numpy
from diffloss.nets import Restorer, RestorerConfig, load_restorer, restore, save_restorer
from diffloss.viz import enlarge
from diffloss.zoo_report import ReportError, blind_section, load_blind_tallies


# ------------------------------------------------------------------------------------------------ statistics
@pytest.mark.parametrize("wins,losses", [(0, 0), (27, 6), (3, 3), (0, 5), (10, 0), (1, 20), (12, 9), (40, 60)])
def test_sign_test_is_the_exact_two_sided_binomial(wins, losses):
    expected = 1.0 if wins + losses == 0 else binomtest(wins, wins + losses, 0.5).pvalue
    assert sign_test(wins, losses) == pytest.approx(expected, rel=1e-12)
    assert sign_test(wins, losses) == sign_test(losses, wins)


def test_judgements_needed_follows_the_one_proportion_formula():
    # 70:30, alpha 0.05 two-sided, power 0.8: ((1.95996 * 0.5 + 0.84162 * sqrt(0.21)) / 0.2)^2 = 46.6 -> 47
    assert judgements_needed(0.7) == 47
    assert judgements_needed(0.6) > judgements_needed(0.7) > judgements_needed(0.8)
    assert judgements_needed(0.7, power=0.9) > 47 and judgements_needed(0.7, alpha=0.01) > 47
    assert 0.75 < sign_test_power(47, 0.7) < 0.85  # the exact test at that n is near the power asked for
    assert sign_test_power(120, 0.7) > 0.99 and sign_test_power(10, 0.7) < 0.3
    assert with_ties(47, 0.25) == 63 and with_ties(47, 0.0) == 47
    with pytest.raises(ValueError, match="between 0.5 and 1"):
        judgements_needed(0.4)


# ------------------------------------------------------------------------------------------------ crops
def test_half_the_crops_differ_most_half_random_in_a_seeded_order():
    kinds = crop_kinds(7, np.random.default_rng(3))
    assert kinds.count(MOST_DIFFERENT) == 4 and kinds.count(RANDOM) == 3
    assert kinds == crop_kinds(7, np.random.default_rng(3))
    assert any(crop_kinds(20, np.random.default_rng(s)) != crop_kinds(20, np.random.default_rng(0)) for s in (1, 2))


def test_window_sums_equal_a_brute_force_sum():
    diff = np.random.default_rng(0).random((9, 11))
    sums = window_sums(diff, 4)
    assert sums.shape == (6, 8)
    for top, left in [(0, 0), (5, 7), (2, 3)]:
        assert sums[top, left] == pytest.approx(diff[top:top + 4, left:left + 4].sum())


def test_most_different_windows_find_the_planted_spots_without_overlap():
    diff = np.zeros((64, 64))
    diff[40:48, 8:16] = 1.0  # the strongest difference
    diff[4:12, 50:58] = 0.5
    spots = most_different_windows(diff, 8, 3)
    assert spots[:2] == [(40, 8), (4, 50)]
    for i, (y0, x0) in enumerate(spots):
        for y1, x1 in spots[i + 1:]:
            assert abs(y0 - y1) >= 8 or abs(x0 - x1) >= 8
    assert len(most_different_windows(np.zeros((8, 8)), 8, 3)) == 1  # no room for a second window


def test_random_windows_stay_inside_the_image():
    rng = np.random.default_rng(0)
    spots = [random_window(50, 30, 20, rng) for _ in range(200)]
    assert all(0 <= y <= 30 and 0 <= x <= 10 for y, x in spots)
    assert {y for y, _ in spots} >= {0, 30}  # both ends are reachable


# ------------------------------------------------------------------------------------------------ make + tally
def _photo(seed: int, h: int = 72, w: int = 80) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    base = gaussian_filter(rng.standard_normal((3, h, w)), sigma=(0, 2, 2))
    return torch.from_numpy(np.clip(0.5 + 0.2 * base / base.std(), 0, 1)).float()


def _restorer(folder, seed: int):
    """A tiny noise restorer whose random head makes it differ from the identity and from another seed's."""
    torch.manual_seed(seed)
    model = Restorer(RestorerConfig(task="noise", width=8, enc_blocks=(1,), dec_blocks=(1,), middle_blocks=1))
    with torch.no_grad():
        model.head[0].weight.normal_(0, 1e-2)
    save_restorer(model, folder)
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("blind")
    for i in range(2):
        save_image(_photo(i), root / "clean" / f"img_{i}.png")
    return {"root": root, "clean": root / "clean", "l2": _restorer(root / "l2", 0),
            "semantic": _restorer(root / "semantic", 1)}


def _make(world, out, panels=6, seed=5, extra=()):
    argv = ["make", "--restorer", f"l2={world['l2']}", "--restorer", f"semantic={world['semantic']}",
            "--clean", str(world["clean"]), "--task", "noise", "--panels", str(panels), "--crop", "32",
            "--seed", str(seed), "--out", str(out), *extra]
    assert main(argv) == 0
    return json.loads((out / blind.KEY_FILE).read_text())


def test_make_writes_panels_apart_from_their_key(world, tmp_path):
    key = _make(world, tmp_path / "run", panels=8)
    panels_dir = tmp_path / "run" / "panels"
    files = sorted(p.name for p in panels_dir.glob("*.png"))
    assert files == sorted(p["panel"] for p in key["panels"]) and len(files) == 8
    assert all(name.startswith(key["run_id"] + "-") for name in files)
    assert not list(panels_dir.glob("*.json"))  # nothing in the judge's folder says which side is which
    form = (panels_dir / blind.FORM_FILE).read_text().splitlines()
    assert form[0] == "panel,choice,judge" and len(form) == 9
    assert [r["name"] for r in key["restorers"]] == ["l2", "semantic"] and key["seed"] == 5
    kinds = [p["kind"] for p in key["panels"]]
    assert kinds.count(MOST_DIFFERENT) == kinds.count(RANDOM) == 4
    sides = {(p["left"], p["right"]) for p in key["panels"]}
    assert sides <= {("l2", "semantic"), ("semantic", "l2")}
    assert {p["image"] for p in key["panels"]} == {"img_0.png", "img_1.png"}
    for p in key["panels"]:
        assert set(p["metric_pick"]) == set(blind.AGREEMENT_METRICS)
        assert p["metric_pick"]["psnr"] in ("l2", "semantic", "tie")


def test_a_panel_shows_left_right_and_truth_enlarged_with_nearest_neighbour(world, tmp_path):
    key = _make(world, tmp_path / "run", panels=2)
    entry = key["panels"][1]
    image = np.asarray(load_image(tmp_path / "run" / "panels" / entry["panel"]).permute(1, 2, 0) * 255 + 0.5
                       ).astype(np.uint8)
    side, zoom = entry["side"], key["zoom"]
    assert image.shape == (side * zoom + LABEL_HEIGHT, 3 * side * zoom + 2 * GAP, 3)
    sample = list(iter_samples(EvalSource("synthetic", world["clean"], task="noise")))[1]
    assert torch.equal(sample.net_input, make_pair("noise", sample.gt, 1).net_input[0])  # image i: seed i
    y, x = entry["y"], entry["x"]
    with torch.no_grad():
        left = restore(load_restorer(world[entry["left"]]), sample.net_input).clamp(0, 1)
    expected = {0: left[:, y:y + side, x:x + side], 2: sample.gt[:, y:y + side, x:x + side]}
    def tile(k: int) -> np.ndarray:
        return image[LABEL_HEIGHT:, k * (side * zoom + GAP):k * (side * zoom + GAP) + side * zoom].astype(int)

    for k, crop in expected.items():
        assert np.abs(tile(k) - enlarge(to_uint8_numpy(crop), zoom).astype(int)).max() <= 1
    assert np.abs(tile(1) - enlarge(to_uint8_numpy(expected[0]), zoom).astype(int)).max() > 1  # the other one


def test_the_seed_reproduces_sides_and_crops(world, tmp_path):
    a = _make(world, tmp_path / "a", seed=11)
    b = _make(world, tmp_path / "b", seed=11)
    c = _make(world, tmp_path / "c", seed=12)
    fields = ("image", "y", "x", "kind", "left", "right")
    strip = lambda key: [{f: p[f] for f in fields} for p in key["panels"]]  # noqa: E731
    assert strip(a) == strip(b) and a["run_id"] != b["run_id"]
    assert strip(a) != strip(c)


def test_paired_folders_make_panels_too(world, tmp_path):
    for i in range(2):
        clean = _photo(10 + i, 48, 48)
        save_image(clean, tmp_path / "pairs" / "gt" / f"p{i}.png")
        save_image(make_pair("noise", clean, i).lq[0], tmp_path / "pairs" / "lq" / f"p{i}.png")
    argv = ["make", "--restorer", f"l2={world['l2']}", "--restorer", f"semantic={world['semantic']}",
            "--paired", str(tmp_path / "pairs"), "--panels", "3", "--crop", "64", "--seed", "1",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    key = read_key(tmp_path / "run")
    assert key["task"] == "noise" and key["source"]["mode"] == "paired"
    assert all(p["side"] == 48 for p in key["panels"])  # a crop larger than the image is the whole image


def test_a_make_that_fails_midway_leaves_no_half_run(world, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(blind, "panel_image", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        _make(world, tmp_path / "run")
    assert not (tmp_path / "run" / "panels").exists() and not (tmp_path / "run" / blind.KEY_FILE).exists()
    monkeypatch.undo()
    assert len(_make(world, tmp_path / "run")["panels"]) == 6  # the same --out works again


def _judge(key: dict, prefer: str, path, judge: str = "", tie_every: int = 0) -> None:
    for k, p in enumerate(key["panels"]):
        choice = "tie" if tie_every and k % tie_every == 0 else ("left" if p["left"] == prefer else "right")
        append_judgement(path, p["panel"], choice, judge)


def test_tally_counts_wins_ties_and_judges_and_the_metrics_agreement(world, tmp_path, capsys):
    key = _make(world, tmp_path / "run", panels=8)
    votes = tmp_path / "votes.csv"
    _judge(key, "semantic", votes, judge="ann", tie_every=4)  # panels 0 and 4 tied
    _judge(key, "semantic", votes, judge="bob")
    result = tally(read_key(tmp_path / "run"), read_judgements(votes))
    assert (result.a, result.b) == ("l2", "semantic")
    assert (result.a_preferred, result.b_preferred, result.ties, result.judges, result.unjudged) == (0, 14, 2, 2, 0)
    assert result.p == pytest.approx(binomtest(0, 14, 0.5).pvalue)
    for metric, cell in result.agreement.items():  # every decisive vote went to semantic
        picks = [p["metric_pick"][metric] for k, p in enumerate(key["panels"]) for judge in ("ann", "bob")
                 if not (judge == "ann" and k % 4 == 0) and p["metric_pick"][metric] not in (None, "tie")]
        assert cell == {"agree": picks.count("semantic"), "panels": len(picks)}
    save = tmp_path / "report" / "noise" / "semantic.json"
    assert main(["tally", str(tmp_path / "run"), str(votes), "--save", str(save)]) == 0
    out = capsys.readouterr().out
    assert "l2 preferred 0, semantic preferred 14, ties 2" in out and "47 decisive judgements" in out
    record = json.loads(save.read_text())
    assert record["preferred"] == {"l2": 0, "semantic": 14} and record["judges"] == 2
    assert record["seed"] == 5 and record["judge_kind"] == "person" and record["needed"]["decisive"] == 47


def test_an_empty_choice_is_a_panel_not_judged_yet(world, tmp_path):
    key = _make(world, tmp_path / "run", panels=4)
    form = tmp_path / "run" / "panels" / blind.FORM_FILE
    rows = list(csv.reader(form.open()))
    rows[2][1] = "Left"  # case does not matter
    with form.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    result = tally(key, read_judgements(form))
    assert result.a_preferred + result.b_preferred == 1 and result.unjudged == 3


def test_a_spreadsheet_saved_form_is_read(world, tmp_path):
    """Spreadsheets add a byte-order mark, and in many locales separate cells with semicolons."""
    key = _make(world, tmp_path / "run", panels=2)
    first, second = (p["panel"] for p in key["panels"])
    saved = tmp_path / "saved.csv"
    saved.write_bytes(f"panel;choice;judge\r\n{first};left;ann\r\n{second};TIE;ann\r\n".encode("utf-8-sig"))
    result = tally(key, read_judgements(saved))
    assert result.a_preferred + result.b_preferred == 1 and result.ties == 1 and result.judges == 1
    (tmp_path / "latin.csv").write_bytes("panel,choice\nx,gauche \xe9\n".encode("latin-1"))
    with pytest.raises(BlindError, match="not UTF-8"):
        read_judgements(tmp_path / "latin.csv")


@pytest.mark.parametrize("case,message", [
    ("bad choice", "line 3: choice 'maybe' for"),
    ("other run's csv", "is not in this run's key (it is from run deadbeef"),
    ("missing panel", "is missing from"),
    ("other run's key", "holds panels of another run"),
    ("twice", "is judged twice by the same judge"),
    ("no header", "must start with the header panel,choice"),
    ("damaged key", "is damaged: panel 1 lacks its name or its two sides"),
])
def test_bad_input_gets_one_line(world, tmp_path, capsys, case, message):
    key = _make(world, tmp_path / "run", panels=3)
    first, second = key["panels"][0]["panel"], key["panels"][1]["panel"]
    votes = tmp_path / "votes.csv"
    rows = {"bad choice": [first + ",left", second + ",maybe"],
            "other run's csv": ["deadbeef-000.png,left"],
            "twice": [first + ",left", first.removesuffix(".png") + ",right"],
            "no header": [first + ",left"]}.get(case, [first + ",left"])
    votes.write_text(("" if case == "no header" else "panel,choice\n") + "\n".join(rows) + "\n")
    if case == "missing panel":
        (tmp_path / "run" / "panels" / second).unlink()
    if case == "damaged key":
        key["panels"][1]["left"] = key["panels"][1]["right"]
        (tmp_path / "run" / blind.KEY_FILE).write_text(json.dumps(key))
    if case == "other run's key":
        other = _make(world, tmp_path / "other", panels=3)
        (tmp_path / "run" / blind.KEY_FILE).write_text(json.dumps(other))
    capsys.readouterr()
    assert main(["tally", str(tmp_path / "run"), str(votes)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_make_refuses_bad_requests_in_one_line(world, tmp_path, capsys):
    assert main(["make", "--restorer", f"l2={world['l2']}", "--clean", str(world["clean"]), "--task", "noise",
                 "--out", str(tmp_path / "x")]) == 2
    assert "exactly two restorers" in capsys.readouterr().err
    _make(world, tmp_path / "run", panels=2)
    assert main(["make", "--restorer", f"l2={world['l2']}", "--restorer", f"s={world['semantic']}", "--clean",
                 str(world["clean"]), "--task", "noise", "--out", str(tmp_path / "run")]) == 2
    assert "already holds a blind run" in capsys.readouterr().err
    inpaint = Restorer(RestorerConfig(task="inpaint", in_channels=4, width=8, enc_blocks=(1,), dec_blocks=(1,),
                                      middle_blocks=1))
    save_restorer(inpaint, tmp_path / "inpaint")
    noise = ["--task", "noise"]
    for restorer, source, message in [
        (f"s={tmp_path / 'inpaint'}", ["--clean", str(world["clean"]), *noise],
         "takes 4 input channels but noise gives 3"),
        (f"s={world['semantic']}", ["--clean", str(tmp_path / "nowhere"), *noise], "image folder not found"),
        (f"s={world['semantic']}", ["--paired", str(world["clean"])], "no lq/ subfolder"),
    ]:
        assert main(["make", "--restorer", f"l2={world['l2']}", "--restorer", restorer, *source,
                     "--out", str(tmp_path / "failed")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
        assert not (tmp_path / "failed" / "panels").exists()
    with pytest.raises(BlindError, match="not left, right or tie"):
        append_judgement(tmp_path / "v.csv", "x", "A")
    assert CHOICES == ("left", "right", "tie")


def test_the_studio_path_a_key_filled_vote_by_vote_tallies_like_make(tmp_path, capsys):
    """The Compare tab's blind mode: new_key, draw_sides and add_panel per photo, votes appended as CSV."""
    key = blind.new_key(["l2", "semantic"], seed=3, task="noise")
    rng = np.random.default_rng(3)
    truth = _photo(0, 32, 32)
    g = torch.Generator().manual_seed(0)
    outs = {"l2": (truth + 0.02 * torch.randn(truth.shape, generator=g)).clamp(0, 1),
            "semantic": (truth + 0.2 * torch.randn(truth.shape, generator=g)).clamp(0, 1)}
    votes = tmp_path / "run" / "votes.csv"
    drawn = []
    for _ in range(6):
        left, right = blind.draw_sides(["l2", "semantic"], rng)
        drawn.append(left)
        entry = blind.add_panel(key, outs, truth, left, right, image="upload.png", kind="whole image")
        append_judgement(votes, entry["panel"], "left" if left == "l2" else "right", "visitor-1")
        assert entry["metric_pick"]["psnr"] == entry["metric_pick"]["haarpsi"] == "l2"  # 0.02 noise beats 0.2
    assert {"l2", "semantic"} == set(drawn)  # both sides drawn
    assert [p["panel"] for p in key["panels"]] == [f"{key['run_id']}-{k:03d}.png" for k in range(6)]
    (tmp_path / "run" / blind.KEY_FILE).write_text(json.dumps(key))
    assert main(["tally", str(tmp_path / "run"), str(votes)]) == 0
    out = capsys.readouterr().out
    assert "l2 preferred 6, semantic preferred 0, ties 0" in out and "PSNR 6/6" in out
    with pytest.raises(BlindError, match="two restorers with different names"):
        blind.new_key(["l2", "l2"], seed=0, task=None)


# ------------------------------------------------------------------------------------------------ report
def _record(restorers, preferred, ties=1, agreement=None, judges=1):
    return {"format": blind.TALLY_FORMAT, "run_id": "abcd1234", "task": "noise", "seed": 7,
            "panels_created": "2026-12-05T23:00:00+00:00", "restorers": restorers, "preferred": preferred,
            "ties": ties, "unjudged": 0, "judge_kind": "person", "judges": judges,
            "p": sign_test(*preferred.values()), "agreement": agreement or {}}


def test_report_section_shows_tallies_against_l2_and_not_judged(tmp_path):
    root = tmp_path / "blind"
    agree = {"psnr": {"agree": 20, "panels": 30}, "niqe": {"agree": 6, "panels": 30},
             "haarpsi": {"agree": 24, "panels": 30}}
    for task, arm, rec in [("noise", "semantic", _record(["l2", "semantic"], {"l2": 27, "semantic": 6},
                                                         agreement=agree, judges=3)),
                           ("haze", "strong", _record(["strong", "l2"], {"strong": 4, "l2": 5}, agreement={
                               "psnr": {"agree": 5, "panels": 9}}))]:
        (root / task).mkdir(parents=True)
        (root / task / f"{arm}.json").write_text(json.dumps(rec))
    tallies = load_blind_tallies(root)
    lines = blind_section(tallies, tasks=("haze", "noise", "sr4"))
    text = "\n".join(lines)
    assert "| noise | `semantic` vs `l2` | 6 | 27 | 1 | 0.00032 | person x3 | 2026-12-05 | 7 |" in text
    assert "| haze | `strong` vs `l2` | 4 | 5 | 1 |" in text
    assert "| sr4 | not judged |" in text
    assert "| PSNR ↑ | 5/9 (56 %) | 20/30 (67 %) | 25/39 (64 %) |" in text
    assert "| NIQE (whole image) ↓ | – | 6/30 (20 %) | 6/30 (20 %) |" in text
    assert "| MDSI ↓ | – | – | – |" in text
    nothing = "\n".join(blind_section({}, tasks=("noise",)))
    assert "| noise | not judged |" in nothing and "How often" not in nothing


def test_report_refuses_a_file_that_is_not_a_tally(tmp_path):
    (tmp_path / "noise").mkdir()
    (tmp_path / "noise" / "semantic.json").write_text('{"preferred": {}}')
    with pytest.raises(ReportError, match="is not a blind tally"):
        load_blind_tallies(tmp_path)
    lacking = _record(["l2", "semantic"], {"l2": 3, "semantic": 1})
    del lacking["preferred"]["semantic"]
    (tmp_path / "noise" / "semantic.json").write_text(json.dumps(lacking))
    with pytest.raises(ReportError, match="is not a blind tally"):
        load_blind_tallies(tmp_path)
    assert load_blind_tallies(tmp_path / "absent") == {}


def test_write_report_ends_with_the_blind_section_and_stops_before_measuring_on_a_bad_file(tmp_path):
    from diffloss.family import ZooPaths
    from diffloss.zoo_report import write_report

    paths = ZooPaths(datasets=tmp_path / "data", runs=tmp_path / "runs", pretrained=tmp_path / "pretrained")
    folder = paths.pretrained / "report" / "blind" / "noise"
    folder.mkdir(parents=True)
    (folder / "semantic.json").write_text(json.dumps(_record(["l2", "semantic"], {"l2": 27, "semantic": 6})))
    text = write_report(paths, log=lambda _: None).read_text()
    assert "## Blind judgements" in text.split("## inpaint")[-1]  # after the task sections
    assert "| noise | `semantic` vs `l2` | 6 | 27 |" in text and "| haze | not judged |" in text
    assert json.loads((paths.pretrained / "report.json").read_text())["blind"]["noise"]["semantic"]["seed"] == 7
    (folder / "semantic.json").write_text("{")
    with pytest.raises(ReportError, match="not valid JSON"):
        write_report(paths, log=lambda _: None)


def test_report_blind_only_keeps_every_tasks_numbers_and_measures_nothing(tmp_path, monkeypatch):
    """`python -m diffloss.zoo report --blind-only`: a tally added after the report is shown without measuring again
    (a whole report needs the build's run folders, which a later machine may not have)."""
    from diffloss import zoo, zoo_report

    pretrained = tmp_path / "pretrained"
    kept = {"tasks": {"noise": {"markdown": ["## noise", "", "kept numbers 27.84", ""]}}}
    pretrained.mkdir()
    (pretrained / "report.json").write_text(json.dumps(kept))
    folder = pretrained / "report" / "blind" / "noise"
    folder.mkdir(parents=True)
    (folder / "semantic.json").write_text(json.dumps(_record(["l2", "semantic"], {"l2": 27, "semantic": 6})))
    monkeypatch.setattr(zoo_report, "task_section", lambda *a, **k: pytest.fail("measured a task"))
    assert zoo.main(["report", "--blind-only", "--pretrained", str(pretrained), "--runs", str(tmp_path / "runs"),
                     "--datasets", str(tmp_path / "data")]) == 0
    text = (pretrained / "REPORT.md").read_text()
    assert "kept numbers 27.84" in text and "| noise | `semantic` vs `l2` | 6 | 27 |" in text
    assert "## rain" in text and "Not measured yet" in text


def test_the_agreement_sentence_pools_every_judged_arm_and_says_nothing_unjudged():
    from diffloss.zoo_report import agreement_sentence

    assert agreement_sentence(None) is None and agreement_sentence({"blind": {}}) is None
    report = {"blind": {
        "noise": {"semantic": _record(["l2", "semantic"], {"l2": 8, "semantic": 0},
                                      agreement={"psnr": {"agree": 8, "panels": 8}, "niqe": {"agree": 3, "panels": 8}})},
        "sr4": {"strong": _record(["l2", "strong"], {"l2": 5, "semantic": 3},
                                  agreement={"psnr": {"agree": 4, "panels": 8}, "niqe": {"agree": 5, "panels": 8}})}}}
    sentence = agreement_sentence(report)
    assert "16 decisive panels" in sentence and "PSNR 75 %" in sentence and "NIQE (whole image) 50 %" in sentence
