"""The Degradations tab's layout; what its button does is ``studio/degrade_tab.py``."""

from __future__ import annotations

import gradio as gr

from diffloss import degrade
from studio.components import UploadImage
from studio.degrade_tab import preview_degradation
from studio.widgets import PageStart, examples, run_on_example


def build(start: PageStart) -> None:
    """A clean photo, a task and a seed; the clean crop beside what the restorer sees."""
    with gr.Row():
        with gr.Column():
            image = UploadImage(value=start.photo, type="filepath", image_mode=None, label="Clean photo")
            shown_examples = examples([image], start.clean_rows, "Clean photos")
            task = gr.Dropdown(list(degrade.TASKS), value=start.task, label="Task")
            seed = gr.Number(value=0, precision=0, label="Seed")
            go = gr.Button("Degrade", variant="primary")
        with gr.Column():
            clean = gr.Image(label="Clean (cropped to the task's size multiple)", format="png")
            degraded = gr.Image(label="What the restorer sees", format="png")
            note = gr.Markdown()
    inputs, outputs = [image, task, seed], [clean, degraded, note]
    go.click(preview_degradation, inputs, outputs)
    run_on_example(shown_examples, preview_degradation, inputs, outputs)
