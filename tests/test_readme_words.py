"""The README a newcomer reads: one way to run python (the activated environment), each word of jargon defined in
one line where it first appears, and what closing the tab does to a run; the tabs' texts define theirs too
(issue #27 point 3)."""

from __future__ import annotations

import re

import pytest

from diffloss.paths import REPO
from studio import explainers

README = (REPO / "README.md").read_text(encoding="utf-8")


def _paragraphs(text: str) -> list[str]:
    """Prose paragraphs and list items (code blocks left out), in order."""
    blocks = re.split(r"\n\s*\n|\n(?=- )", text)
    return [b for b in blocks if b.strip() and not all(ln.startswith("    ") or not ln.strip() for ln in b.splitlines())]


def test_every_python_command_runs_in_the_activated_environment():
    code = [ln.strip() for ln in README.splitlines() if ln.startswith("    ") and ln.strip()]
    activated = next(i for i, ln in enumerate(code) if ". .venv/bin/activate" in ln)
    bare = [i for i, ln in enumerate(code) if re.match(r"(\. \.venv/bin/activate && )?(python|pip) ", ln)]
    assert bare and min(bare) >= activated  # the set-up activates before the first bare python
    assert not [ln for ln in code if ".venv/bin/python" in ln or ".venv/bin/pip" in ln]  # never mixed
    assert "in each new terminal run `. .venv/bin/activate`" in README


JARGON = {  # word -> words of its one-line definition, which must be in the paragraph where the word first appears
    "prior": "a model of what natural photos look like",
    "h-space": "innermost, lowest-resolution features",
    "arm": "an arm is one way of training the same",
    "NIQE": "lower is more natural",
    "dose-response": "several doses of the prior",
    "perception-distortion": "closeness to the truth, against NIQE",
    "DDIM": "denoised back by the prior",
}


@pytest.mark.parametrize("word", JARGON)
def test_each_word_of_jargon_is_defined_where_it_first_appears(word):
    pattern = re.compile(rf"(?<![\w`-]){re.escape(word)}(?![\w`-])")
    first = next(p for p in _paragraphs(README.split("# DiffLoss Studio", 1)[1]) if pattern.search(p))
    assert JARGON[word] in " ".join(first.split()), first


def test_the_tabs_define_their_words_too():
    assert "the *prior*" in explainers.COMPARE and "*NIQE*: how natural" in explainers.COMPARE
    assert "dose-response: one restorer fine-tuned at several doses" in explainers.COMPARE
    assert "*h-space*: the UNet's innermost features" in explainers.INSPECT
    assert "*Share of the gradient*: how much" in explainers.TRAIN


def test_what_closing_the_tab_does_to_a_run_is_written_down():
    """Decided: closing the tab stops a run on one's own machine as on a Space; the arms save a checkpoint and stay
    comparable and resumable (tests/test_studio_train.py::test_one_run_at_a_time_and_closing_the_stream_stops_it)."""
    text = " ".join(README.split())
    assert "Closing the browser tab stops a run, here as on a Space: both arms save a checkpoint at once" in text
    assert "Closing this browser tab stops a run" in explainers.TRAIN


def test_compare_shows_its_words(tmp_path):
    import gradio as gr

    from studio import compare_ui
    from studio.widgets import PageStart
    from tests.studio_helpers import make_world

    world = make_world(tmp_path)
    with gr.Blocks() as page:
        compare_ui.build(page, PageStart(registry=world.registry, photo=world.photo))
    assert explainers.COMPARE in [b.value for b in page.blocks.values() if isinstance(b, gr.Markdown)]
