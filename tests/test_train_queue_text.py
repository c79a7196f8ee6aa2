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
