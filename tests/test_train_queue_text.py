"""A hosted visitor waiting for the Train slot reads the queue once, over the curves, and a bound on the wait that
holds for runs of up to 8 minutes (issue #27 point 2)."""

from __future__ import annotations

import gradio as gr

from studio import train_tab, train_ui
from studio.widgets import PageStart
from tests.studio_helpers import make_world


def test_the_queue_status_shows_once_over_the_curves_not_over_the_text(tmp_path):
    world = make_world(tmp_path)
    with gr.Blocks() as page:
        train_ui.build(page, PageStart(registry=world.registry, photo=world.photo))
    [curves] = [b for b in page.blocks.values() if isinstance(b, gr.Image) and b.label == "Loss terms (live)"]
    runs = [fn for fn in page.fns.values() if fn.api_name in ("train", "resume")]
    assert len(runs) == 2
    for fn in runs:
        shown_on = fn.show_progress_on if isinstance(fn.show_progress_on, (list, tuple)) else [fn.show_progress_on]
        assert [getattr(c, "_id", c) for c in shown_on] == [curves._id], fn.api_name


def test_the_hosted_status_bounds_the_wait_and_names_no_folder(tmp_path):
    world = make_world(tmp_path)
    text = train_ui.first_run_text(world.registry, hosted=True)
    assert f"at most {train_tab.HOSTED_RUN_SECONDS / 60:g} minutes per run ahead of yours" in text
    assert "folder" not in text


def test_a_press_while_the_slot_is_held_says_how_long_the_wait_can_be(monkeypatch, hosted):
    assert train_tab.slot_wait_text() is None  # the slot is free: nothing to say
    assert train_tab._TRAIN_LOCK.acquire(blocking=False)
    try:
        monkeypatch.setitem(train_tab._RUNNING, "since", 1000.0)
        text = train_tab.slot_wait_text(now=1000.0 + 150)
        assert text.startswith("**Waiting**") and "held it for 2.5 min" in text
        assert "it stops within 5.5 min (a run holds the slot at most 8 minutes)" in text
        assert train_ui.waiting_status() == train_tab.slot_wait_text()  # what the status box shows at once
    finally:
        train_tab._TRAIN_LOCK.release()
        train_tab._RUNNING.pop("since", None)
    assert train_ui.waiting_status() == gr.skip()


def test_on_ones_own_machine_the_wait_is_until_the_run_ends(monkeypatch, local):
    assert train_tab._TRAIN_LOCK.acquire(blocking=False)
    try:
        monkeypatch.setitem(train_tab._RUNNING, "since", 0.0)
        assert "starts when it ends or is stopped" in train_tab.slot_wait_text(now=60.0)
    finally:
        train_tab._TRAIN_LOCK.release()
        train_tab._RUNNING.pop("since", None)


def test_train_and_resume_first_say_the_wait_outside_the_queue(tmp_path):
    world = make_world(tmp_path)
    with gr.Blocks() as page:
        train_ui.build(page, PageStart(registry=world.registry, photo=world.photo))
    waits = [fn for fn in page.fns.values() if fn.fn is train_ui.waiting_status]
    assert len(waits) == 2 and all(fn.queue is False for fn in waits)
    runs = {fn.api_name: fn for fn in page.fns.values() if fn.api_name in ("train", "resume")}
    assert sorted(runs) == ["resume", "train"]
    assert {fn.trigger_after for fn in runs.values()} == {fn._id for fn in waits}
