"""Compare's blind test, laid out under Compare's pictures; what its buttons do is ``studio/blind_tab.py``."""

from __future__ import annotations

import gradio as gr

from studio import blind_tab
from studio.gpu import on_gpu
from studio.widgets import as_outputs, placeholder

NO_VOTE_YET = "Who was A and who was B, the metrics on this photo and your running tally show here after your vote."
IMAGE_HEIGHT = 260  # A, B and the truth side by side beside the reveal: all in a 1440x900 window
INTRO = ("The two arms chosen above, as **A** and **B** in a random order: no names, metrics or error maps until "
         "you pick the one that looks better (or *can't tell*). One photo is an anecdote: the tally says how many "
         "votes a preference needs.")


def build(compare) -> None:
    """The blind test's controls, pictures and events, inside Compare's tab (``compare``: its ``CompareUI``)."""
    waiting = placeholder("Press 'Next photo'", width=IMAGE_HEIGHT, height=IMAGE_HEIGHT)
    with gr.Accordion("Blind test: which output looks better? (names hidden until you vote)", open=False):
        gr.Markdown(INTRO)
        state = gr.State(blind_tab.new_session())
        with gr.Row():
            source = gr.Radio(list(blind_tab.SOURCES), value=blind_tab.SOURCES[0], label="Photo", scale=3)
            judge = gr.Textbox(label="Your name (optional, recorded with your votes)", max_lines=1, scale=1)
            next_go = gr.Button("Next photo", variant="primary", scale=1)
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    a, b, truth = (gr.Image(value=waiting, label=label, format="png", interactive=False, buttons=[],
                                            height=IMAGE_HEIGHT) for label in ("A", "B", "Ground truth"))
                prompt = gr.Markdown()
                with gr.Row():
                    votes = [gr.Button(text) for text in ("A looks better", "B looks better", "Can't tell")]
            with gr.Column(scale=2):
                result = gr.Markdown(NO_VOTE_YET)
    next_go.click(on_gpu("compare")(as_outputs(blind_tab.next_photo)),
                  [state, compare.task, compare.l2, compare.dl, source, compare.photo, compare.mode,
                   compare.ground_truth, compare.seed],
                  [a, b, truth, prompt, state], api_visibility="private").success(
        lambda: NO_VOTE_YET, None, result, api_visibility="private")  # the last reveal goes with its photo
    for button, choice in zip(votes, blind_tab.CHOICES):
        button.click(lambda s, j, c=choice: blind_tab.vote(s, c, j), [state, judge], [result, state],
                     api_visibility="private")
