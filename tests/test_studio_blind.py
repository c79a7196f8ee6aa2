"""Compare's blind test, through its handlers: sides drawn and recorded, names hidden until the vote, the tally
after it, votes the tally command reads (locally), nothing written and a bounded count (hosted)."""

from __future__ import annotations

import csv

import gradio as gr
import numpy as np
import pytest

from diffloss import blind
from studio import blind_tab, hosting, upload
from tests.studio_helpers import make_world


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path)


@pytest.fixture
def hosted(monkeypatch):
    monkeypatch.setenv(hosting.PUBLIC_ENV, "1")


def _photo(world, state=None, source=blind_tab.SOURCES[0], **kw):
    l2, dl = world.labels()
    return blind_tab.next_photo(state, "noise", l2, dl, source, registry=world.registry, **kw)


def test_a_blind_photo_shows_two_unnamed_outputs_and_records_which_is_which(world):
    l2, dl = world.labels()
    shown = _photo(world)
    entry = shown.state["pending"]
    assert {entry["left"], entry["right"]} == {l2, dl}  # recorded, for the reveal and the tally
    assert l2 not in shown.prompt and dl not in shown.prompt and "PSNR" not in shown.prompt  # nothing gives it away
    side = entry["side"]  # the crop, or the whole 64 px example when it is smaller
    assert side == min(blind.DEFAULT_CROP, 64)
    assert shown.a.shape == shown.b.shape == shown.truth.shape == (side * blind.DEFAULT_ZOOM,) * 2 + (3,)
    assert not np.array_equal(shown.a, shown.b)
    assert entry["kind"] == blind.RANDOM and 0 <= entry["y"] <= 64 - side and entry["draw"] == 0


def test_the_sides_are_random_but_each_draw_is_recorded_and_reproducible(world):
    l2, dl = world.labels()
    state, lefts = None, []
    for _ in range(16):
        state = _photo(world, state).state
        entry = state["pending"]
        # next_photo's draws, in its order, from the key's seed and the draw number the panel records
        rng = np.random.default_rng([state["key"]["seed"], entry["draw"]])
        rng.integers(3), rng.integers(2**31)  # which example, its degradation seed
        assert blind.random_window(64, 64, entry["side"], rng) == (entry["y"], entry["x"])
        assert blind.draw_sides([l2, dl], rng) == (entry["left"], entry["right"])
        lefts.append(entry["left"] == l2)
    assert 0 < sum(lefts) < 16  # both orders occur (all but 2 * 2**-16 of the time for a fair draw)


def test_a_vote_reveals_the_names_the_metrics_and_the_running_tally(world):
    shown = _photo(world)
    entry = shown.state["pending"]
    text, state = blind_tab.vote(shown.state, "A", registry=world.registry)
    assert f"A was `{entry['left']}`, B was `{entry['right']}`" in text
    assert "PSNR (higher is better)" in text and "MDSI" in text
    assert f"{entry['left']} preferred 1, " in text or f", {entry['left']} preferred 1, ties 0" in text
    assert state["pending"] is None and len(state["key"]["panels"]) == 1
    with pytest.raises(gr.Error, match="Next photo"):  # one vote per photo
        blind_tab.vote(state, "B", registry=world.registry)


def test_local_votes_are_appended_in_the_csv_the_tally_command_reads(world, capsys):
    state, chosen = None, []
    for choice in ("A", "B", "can't tell", "A"):
        state = _photo(world, state).state
        entry = state["pending"]
        chosen.append(blind.winner_for(blind_tab.CHOICES[choice], entry["left"], entry["right"]))
        text, state = blind_tab.vote(state, choice, judge="Ada", registry=world.registry)
    folder = world.registry.runs / blind_tab.BLIND_DIR / f"noise-{state['key']['run_id']}"
    assert f"python -m diffloss.blind tally {folder} {folder}/judgements.csv" in text  # what to type, as typed
    with (folder / blind_tab.JUDGEMENTS_FILE).open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(blind.CSV_HEADER) and len(rows) == 5 and {r[2] for r in rows[1:]} == {"Ada"}
    assert blind.main(["tally", str(folder), str(folder / blind_tab.JUDGEMENTS_FILE)]) == 0
    out = capsys.readouterr().out
    l2, dl = world.labels()
    assert f"{l2} preferred {chosen.count(l2)}, {dl} preferred {chosen.count(dl)}, ties {chosen.count(None)}" in out
    assert "0 of 4 panels unjudged" in out


def test_hosted_votes_stay_in_the_page_and_the_count_is_bounded(world, hosted, monkeypatch):
    monkeypatch.setattr(blind_tab, "MAX_SESSION_PANELS", 3)
    state, run_ids = None, []
    for _ in range(4):
        state = _photo(world, state).state
        text, state = blind_tab.vote(state, "A", registry=world.registry)
        run_ids.append(state["key"]["run_id"])
    assert not (world.registry.runs / blind_tab.BLIND_DIR).exists()  # nothing written on the server
    assert "Kept in this page only" in text and "no other visitor" in text
    assert len(state["key"]["panels"]) == len(state["votes"]) == 1  # the fourth vote began a new count
    assert run_ids[0] == run_ids[2] != run_ids[3]
    assert "folder" not in state["key"]["restorers"][0]  # no server path in a hosted page's state


def test_another_pair_starts_a_new_count_and_bad_requests_say_what_to_do(world):
    l2, dl = world.labels()
    state = _photo(world).state
    swapped = blind_tab.next_photo(state, "noise", dl, l2, registry=world.registry).state
    assert swapped["key"]["run_id"] != state["key"]["run_id"] and swapped["votes"] == []
    with pytest.raises(gr.Error, match="same restorer"):
        blind_tab.next_photo(None, "noise", l2, l2, registry=world.registry)
    with pytest.raises(gr.Error, match="No photo in Compare's photo box"):
        _photo(world, source=blind_tab.SOURCES[2])
    with pytest.raises(gr.Error, match="needs the ground truth"):
        _photo(world, source=blind_tab.SOURCES[2], photo=str(world.photo), mode=upload.MODES[1])
    with pytest.raises(gr.Error, match="one of"):
        blind_tab.vote(state, "left", registry=world.registry)


def test_the_photo_box_and_a_whole_example_are_judged_whole(world):
    shown = _photo(world, source=blind_tab.SOURCES[2], photo=str(world.photo), mode=upload.MODES[0], seed=3)
    assert shown.a.shape == (48, 64, 3) and shown.state["pending"]["seed"] == 3
    whole = _photo(world, source=blind_tab.SOURCES[1])
    assert whole.a.shape == (64, 64, 3) and whole.state["pending"]["kind"] == "whole image"


def test_a_judges_name_is_one_short_line_and_never_a_spreadsheet_formula(world):
    state = _photo(world).state
    _, state = blind_tab.vote(state, "B", judge="=HYPERLINK(\"x\")\n" + "y" * 80, registry=world.registry)
    name = state["votes"][-1][2]
    assert not name.startswith("=") and "\n" not in name and len(name) <= 40
