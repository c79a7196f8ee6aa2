"""DiffLoss Studio, the browser app (layout and event wiring only; the work happens in ``diffloss/``).

This first page previews the six degradations and what the restorer is fed. The Compare / Inspect / Train
views come with the app issue; the library they will call is already complete and tested.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gradio as gr
import numpy as np

from diffloss import degrade
from diffloss.images import ImageLoadError, load_image, to_uint8_numpy

REPO = Path(__file__).resolve().parent
MAX_SIDE = 1024


def preview_degradation(image_path: str | None, task: str, seed: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Degrade an uploaded photo with a task's seeded degradation; return (clean crop, degraded, note)."""
    if image_path is None:
        raise gr.Error("Upload a photo first.")
    try:
        clean = load_image(image_path, max_side=MAX_SIDE)
    except ImageLoadError as err:
        raise gr.Error(str(err)) from err
    spec = degrade.get_task(task)
    clean = degrade.crop_to_multiple(clean, spec.size_multiple)
    pair = degrade.make_pair(task, clean, int(seed))
    shown = pair.net_input[0, :3]
    note = f"**{task}**: {spec.description} Restorer input: {spec.in_channels} channels, {shown.shape[-1]}x{shown.shape[-2]} px."
    return to_uint8_numpy(clean), to_uint8_numpy(shown), note


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="DiffLoss Studio") as demo:
        gr.Markdown(
            "# DiffLoss Studio\nA frozen diffusion model used as a *loss* for image restoration "
            "(DiffLoss, ACCV 2024). This preview shows the six degradations the restorers learn to undo."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="filepath", label="Clean photo")
                task = gr.Dropdown(list(degrade.TASKS), value="noise", label="Task")
                seed = gr.Number(value=0, precision=0, label="Seed")
                go = gr.Button("Degrade", variant="primary")
            with gr.Column():
                clean_out = gr.Image(label="Clean (cropped to the task's size multiple)", format="png")
                degraded_out = gr.Image(label="What the restorer sees", format="png")
                note = gr.Markdown()
        go.click(preview_degradation, [image, task, seed], [clean_out, degraded_out, note])
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="DiffLoss Studio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link")
    args = parser.parse_args(argv)
    build_demo().launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
