"""What a first visit sees before any click, tab by tab (built without a browser): a line on what the tab shows with
a link to the paper, a caption over each picture, and no empty picture frame."""

from __future__ import annotations

import gradio as gr
import pytest

from studio import explainers, inspect_ui, train_ui
from studio.widgets import PageStart
from tests.studio_helpers import make_world


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path)


def _built(build, world) -> gr.Blocks:
    with gr.Blocks() as page:
        build(page, PageStart(registry=world.registry, photo=world.photo))
    return page


def _texts(page: gr.Blocks) -> list[str]:
    return [b.value for b in page.blocks.values() if isinstance(b, gr.Markdown) and isinstance(b.value, str)]


def _pictures(page: gr.Blocks) -> list[gr.Image]:
    return [b for b in page.blocks.values() if isinstance(b, gr.Image) and b.interactive is False]


@pytest.mark.parametrize("build, explainer, count", [(inspect_ui.build, explainers.INSPECT, 8),
                                                     (train_ui.build, explainers.TRAIN, 3)])
def test_each_tab_explains_itself_and_shows_no_empty_picture_before_a_click(world, build, explainer, count):
    page = _built(build, world)
    texts = _texts(page)
    assert explainer in texts and explainers.PAPER_URL in explainer and "What am I looking at?" in explainer
    pictures = _pictures(page)
    assert len(pictures) == count  # Inspect: six views, L(t), purification; Train: the live curves, the arms' gap
    assert all(p.value is not None for p in pictures)  # a placeholder saying what will appear, never a blank frame


def test_every_inspect_view_has_a_title_and_a_one_line_caption(world):
    texts = _texts(_built(inspect_ui.build, world))
    for name in inspect_ui.VIEW_ORDER:
        line = f"**{explainers.INSPECT_TITLES[name]}**: {explainers.INSPECT_CAPTIONS[name]}"
        assert line in texts and "\n" not in line
    assert inspect_ui.FIRST_CLICK in texts


def test_the_compare_explainer_is_ready_for_its_tab():
    assert explainers.PAPER_URL in explainers.COMPARE and "L2 arm" in explainers.COMPARE


def test_train_says_what_its_first_click_trains_on(world, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFLOSS_DATASETS", str(tmp_path / "none"))
    assert "the 3 clean photos shipped in `examples/train/`" in train_ui.first_run_text(world.registry)
    bare = make_world(tmp_path / "bare").registry
    bare.examples = None
    assert "the photos you upload" in train_ui.first_run_text(bare)


def test_a_hosted_train_tab_says_runs_take_turns(world, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFLOSS_DATASETS", str(tmp_path / "none"))
    assert "waits in line" in train_ui.first_run_text(world.registry, hosted=True)
    assert "waits in line" not in train_ui.first_run_text(world.registry, hosted=False)


@pytest.mark.parametrize("cuda", [False, True])
def test_train_gives_the_prior_the_whole_crop_of_every_photo_and_says_what_the_cheap_settings_cost(world, monkeypatch,
                                                                                                  cuda):
    """On a CPU too: the sub-crop settings trained worse (bench/results/subcrop-quality-tab-default.md)."""
    from studio import train_tab

    monkeypatch.setattr(train_tab.torch.cuda, "is_available", lambda: cuda)
    page = _built(train_ui.build, world)
    numbers = {(b.label or "").split(" (")[0]: b.value for b in page.blocks.values() if isinstance(b, gr.Number)}
    assert numbers["Prior sub-crop px"] == 0 and numbers["Prior on how many photos of a batch"] == 0
    notes = [b.value for b in page.blocks.values() if isinstance(b, gr.Markdown)]
    assert train_ui.PRIOR_COST_NOTE in notes and "trained worse than the whole crop" in train_ui.PRIOR_COST_NOTE
