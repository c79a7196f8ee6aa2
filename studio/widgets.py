"""Layout pieces and small updates that more than one tab uses: a titled picture, example rows that run on a
click, the restorer dropdowns' refreshes, the released code's weights, and handler adapters for gradio.

Each tab's layout (``compare_ui``, ``inspect_ui``, ``train_ui``, ``degrade_ui``) is built from these; the work
its buttons do lives in the matching ``*_tab`` module.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import gradio as gr
import numpy as np

from diffloss.loss import DiffLossConfig
from studio import restorers, upload
from studio.models import Registry, get_registry

FIRST_TASK = "noise"  # the task every tab opens on


@dataclass(frozen=True)
class PageStart:
    """What every tab starts with, found once per page build (the examples are listed once for all tabs)."""

    registry: Registry
    photo: Path | None  # the first clean example, preloaded in the photo boxes
    rows: list[list] = field(default_factory=list)  # [photo, task, mode, ground truth] per example
    task: str = FIRST_TASK

    @classmethod
    def find(cls) -> PageStart:
        registry = get_registry()
        rows = upload.example_rows(registry.example_images())  # see examples/README.md
        return cls(registry=registry, photo=registry.first_clean_example(), rows=rows)

    @property
    def clean_rows(self) -> list[list]:
        """[photo] per clean example: for the tabs that degrade a photo themselves."""
        return [r[:1] for r in self.rows if r[2] == upload.MODES[0]]

    @property
    def pair_rows(self) -> list[list]:
        """[photo, task, ground truth] per real pair (a degraded example with its ground truth)."""
        return [[r[0], r[1], r[3]] for r in self.rows if r[3]]


def picture(title: str, caption: str | None = None, placeholder: np.ndarray | None = None) -> gr.Image:
    """An output picture titled above it: gradio's label badge sits over the picture's top left, where our grids
    (zoom, error maps, Inspect's views) carry their own captions. ``caption``: one line on what it shows and how
    to read it; ``placeholder``: what it shows before the first run (never an empty frame)."""
    gr.Markdown(f"**{title}**" + (f": {caption}" if caption else ""))
    # interactive=False: an output that is also an event's input (the error map's .change) would become an upload box
    # Download and full screen only: "share" posts to a Hub discussion, and each button hides more of the picture.
    return gr.Image(value=placeholder, label=title, show_label=False, format="png", interactive=False,
                    buttons=["download", "fullscreen"])


def placeholder(text: str, width: int = 520, height: int = 200) -> np.ndarray:
    """A light grey picture saying what will appear there and what to press: a first visit sees no empty frames."""
    from PIL import Image, ImageDraw, ImageFont

    canvas = Image.new("RGB", (width, height), (242, 242, 242))
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=16)
    except TypeError:  # Pillow < 10.1: one fixed bitmap font
        font = ImageFont.load_default()
    draw.multiline_text((width // 2, height // 2), text, fill=(90, 90, 90), font=font, anchor="mm", align="center")
    return np.asarray(canvas)


# Enter in a slider's number box commits it as leaving the box does (gradio fires the slider's release on blur, not
# on Enter), so Enter in t re-runs Inspect as Enter in gamma does.
ENTER_COMMITS_SLIDERS = """() => {
  document.addEventListener("keydown", (event) => {
    const box = event.target;
    if (event.key !== "Enter" || !(box instanceof HTMLInputElement) || box.type !== "number") return;
    const block = box.closest(".block");
    if (block && block.querySelector("input[type=range]")) box.blur();
  });
}"""


def enter_commits_sliders(page: gr.Blocks) -> None:
    """Install ``ENTER_COMMITS_SLIDERS`` in the browser at each page load."""
    page.load(None, None, None, js=ENTER_COMMITS_SLIDERS)


def examples(inputs: list, rows: list[list], label: str) -> gr.Examples | None:
    """Example rows for ``inputs`` (one value per input), or a note when there are none. Returns the examples
    (None when there are none): a tab chains its own run to a click on one."""
    if not rows:
        gr.Markdown("No example photos found (`examples/`): upload one.")
        return None
    return gr.Examples(rows, inputs=inputs, label=f"{label} (see examples/README.md): a click runs it")


def event_inputs(inputs: list | dict) -> dict:
    """gradio's keyword for an event's inputs: a dict names the handler's parameters (``inputs_kwargs``), so the
    wiring never depends on their order; a list is passed in order."""
    return {"inputs_kwargs": inputs} if isinstance(inputs, dict) else {"inputs": inputs}


def run_on_example(examples: gr.Examples | None, fn: Callable, inputs: list | dict, outputs: list,
                   first: Sequence[tuple] = ()) -> None:
    """A click on an example fills the inputs, then runs the tab's button: one click from photo to result.

    ``first``: (fn, inputs, outputs) steps run in between, in order, e.g. the restorer dropdowns of the example's
    task, then the controls that follow them: the task box refreshes them only when a person changes it, so the
    button's run would otherwise get the old task's pair (and Compare's prior-weight control the old family).
    """
    if examples is None:
        return
    event = examples.load_input_event
    for step in first:
        event = event.then(*step, api_visibility="private")
    event.then(fn, outputs=outputs, api_visibility="private", **event_inputs(inputs))


def as_outputs(handler: Callable) -> Callable:
    """``handler`` returning its result's ``as_tuple()`` (gradio's outputs, in order), with the handler's own
    signature: the HTTP API keeps its parameter names, and which of them are optional (``ground_truth``)."""
    @functools.wraps(handler)
    def outputs(*args, **kwargs):
        return handler(*args, **kwargs).as_tuple()
    return outputs


def again(handler: Callable, outputs: int) -> Callable:
    """For a control moved after a run (t, seed, pair, weights, the no_grad toggle): run ``handler`` again.

    Before a photo is chosen (the first input, ``image``) there is nothing to redo, and no error to show for it
    (nor a GPU to ask for).
    """
    @functools.wraps(handler)
    def run_again(*args, **kwargs):
        photo = kwargs["image"] if "image" in kwargs else (args[0] if args else None)
        if not photo:
            return tuple(gr.skip() for _ in range(outputs))
        return handler(*args, **kwargs)
    return run_again


def _pair_dropdowns(labels: list[str], l2: str | None, dl: str | None):
    return gr.update(choices=labels, value=l2), gr.update(choices=labels, value=dl)


def restorer_dropdowns(task: str):
    """The (L2 arm, DiffLoss arm) boxes for a task: its restorers, the task's default pair preselected."""
    return _pair_dropdowns(*restorers.restorer_choices(task))


def kept_or_default_pair(task: str, l2: str | None, dl: str | None):
    """The arm boxes for a task set by code (an example): the arms the person chose stay where they restore that
    task (a Train run, another family member), else the task's default pair."""
    labels, l2_default, dl_default = restorers.restorer_choices(task)
    return _pair_dropdowns(labels, l2 if l2 in labels else l2_default, dl if dl in labels else dl_default)


def trained_dropdowns(task: str):
    """After a Train run or an uploaded zip: the newest run preselected."""
    return _pair_dropdowns(*restorers.trained_pair_choices(task))


_RELEASED = DiffLossConfig.released()
RELEASED_LABEL = f"Released code's weights ({_RELEASED.gamma:g} on L_nat, {_RELEASED.gamma * _RELEASED.lam:g} on L_sem)"


def released_weights() -> tuple[float, float]:
    """gamma and lambda as the released code weighted its terms (1e-3 on the noise term, 1e-6 on h): a button sets
    them, so a learner sees what they do (next to nothing, next to the fidelity term) instead of reading it."""
    return _RELEASED.gamma, _RELEASED.lam
