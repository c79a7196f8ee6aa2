"""The Compare tab's layout and its own events; what its buttons do is ``studio/compare_tab.py``."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from diffloss import degrade
from studio import compare_tab, explainers, family_view, model_upload, restorers, upload
from studio.components import UploadImage
from studio.gpu import on_gpu
from studio.widgets import (
    PageStart, as_outputs, event_inputs, examples, kept_or_default_pair, picture, placeholder, restorer_dropdowns,
    run_on_example, trained_dropdowns,
)

WAITING = "Press Compare\n(or click an example):\nthe restored images\nappear here"


@dataclass
class CompareUI:
    """What the other tabs and the page shell need of Compare."""

    task: gr.Dropdown
    l2: gr.Dropdown
    dl: gr.Dropdown
    refreshed: gr.events.Dependency  # "Refresh model list": the shell refreshes its model status after it
    zip_added: gr.events.Dependency  # an uploaded zip of restorers, added as a run
    photo: gr.Image | None = None  # the photo box and how to read it: the blind test can judge that photo too
    mode: gr.Radio | None = None
    ground_truth: gr.Image | None = None
    seed: gr.Number | None = None

    def show_new_run(self, event: gr.events.Dependency) -> gr.events.Dependency:
        """After a Train run or an uploaded zip: its arms chosen for the task shown."""
        return event.then(trained_dropdowns, self.task, [self.l2, self.dl])


def build(page: gr.Blocks, start: PageStart) -> CompareUI:
    """Compare's controls and pictures, inside the current tab; wires what happens within the tab."""
    labels, l2_default, dl_default = restorers.restorer_choices(start.task)
    with gr.Row():
        with gr.Column(scale=1):
            task = gr.Dropdown(list(degrade.TASKS), value=start.task, label="Task")
            go = gr.Button("Compare", variant="primary")  # at the top: one click from the page's first view
            image = UploadImage(value=start.photo, type="filepath", image_mode=None, label="Photo", height=240)
            mode = gr.Radio(list(upload.MODES), value=upload.MODES[0], label="The photo is")
            gt = UploadImage(type="filepath", image_mode=None, label="Ground truth", visible=False)
            seed = gr.Number(value=0, precision=0, label="Degradation seed")
            l2 = gr.Dropdown(labels, value=l2_default, label="L2 arm")
            dl = gr.Dropdown(labels, value=dl_default, label="DiffLoss arm")
            weight = gr.Radio(family_view.weight_choices(start.task, start.registry), value=dl_default,
                              label="Prior weight (steps the DiffLoss arm through the task's family)")
            # Under the arm boxes, folded: at 1440x900 the first view keeps the photo and the arms in the window.
            with gr.Accordion("What am I looking at? (arms, family, PSNR, NIQE)", open=False):
                gr.Markdown(explainers.COMPARE)
            # Three columns, the ground truth set from the photo's name (example_ground_truth): a fourth column of
            # thumbnails made the table wider than its column at 1440x900, its "Ground truth" header cut.
            shown_examples = examples([image, task, mode], [row[:3] for row in start.rows], "Examples")
            with gr.Accordion("Zoom (or click the degraded image)", open=False):
                zoom_auto = gr.Checkbox(value=True, label="zoom where the restorer changed the photo most")
                zoom_x = gr.Slider(0, 1, value=0.5, label="x (fraction of width)")
                zoom_y = gr.Slider(0, 1, value=0.5, label="y (fraction of height)")
                zoom_size = gr.Slider(16, 256, value=64, step=8, label="crop size (px)")
            refresh = gr.Button("Refresh model list", size="sm")
            with gr.Accordion("Add restorers: upload a zip (the Train tab's download)", open=False):
                zip_file = gr.File(file_types=[".zip"], type="filepath",
                                   label="zip with l2/ and diffloss/ model folders, or one model folder")
                zip_note = gr.Markdown()
        with gr.Column(scale=2):
            waiting = placeholder(WAITING, width=320, height=240)
            with gr.Row():
                degraded = gr.Image(value=waiting, label="Degraded input", format="png", interactive=False)
                # interactive=False: outputs (rezoom reads them), never upload boxes with webcam/clipboard icons
                out_l2 = gr.Image(value=waiting, label="L2 arm", format="png", interactive=False)
                out_dl = gr.Image(value=waiting, label="DiffLoss arm", format="png", interactive=False)
            slider = gr.ImageSlider(label="L2 arm | DiffLoss arm", format="png", interactive=False)
            zoom = picture("Zoomed crop (click the degraded input to move it)", placeholder=placeholder(WAITING))
            with gr.Row():
                with gr.Column():
                    difference = picture("Difference of the two outputs, amplified (grey = identical)",
                                         placeholder=placeholder(WAITING))
                    diff_gain = gr.Slider(1, 50, value=10, step=1, label="amplification")
                    difference_note = gr.Markdown()
                with gr.Column():
                    family_plot = picture("The task's family on clean/val (zoo report): distortion (PSNR) vs "
                                          "NIQE (no reference; people did not agree with it), the arms on show ringed",
                                          placeholder=family_view.family_plot(start.registry, start.task)
                                          if start.registry.report() else placeholder(WAITING))
            # the ground truth the zoom shows beside the outputs; a click re-zooms from the pictures on show
            ground_truth = gr.Image(visible=False, format="png", interactive=False)
            with gr.Column(visible=False) as error_box:  # shown for a comparison with a ground truth
                error_map = picture("Error against ground truth (shared scale)")
            metrics = gr.Markdown()
            notes = gr.Markdown()
            with gr.Accordion("How these two restorers were trained (cards, measured metrics)", open=False):
                cards = gr.Markdown()
            with gr.Accordion("Evaluate both on clean validation photos (mean metrics, wins)", open=False):
                with gr.Row():
                    eval_photos = gr.Slider(2, 24, value=8, step=1, label="photos")
                    eval_go = gr.Button("Evaluate")
                evaluation = gr.Markdown()
    # .input, not .change: where code sets the task (an example, an uploaded zip) it sets the arms too,
    # and a .change handler running beside it would put the task's default pair back.
    task.input(restorer_dropdowns, task, [l2, dl]).then(weight_control, [task, dl], weight, api_visibility="private")
    eval_go.click(on_gpu("evaluate")(compare_tab.evaluate_pair), [task, l2, dl, eval_photos], evaluation,
                  api_name="evaluate")
    gr.on([l2.change, dl.change, page.load], compare_tab.describe_pair, [task, l2, dl], cards,
          api_visibility="private")
    refreshed = refresh.click(restorer_dropdowns, task, [l2, dl])
    # The arm lists as they are now, at each page load: a Train run made after start-up is listed after a reload.
    page.load(restorer_dropdowns, task, [l2, dl], api_visibility="private")
    # A click handler, not an API: over HTTP it has no click to read and answered with a generic error (#25 low 7)
    degraded.select(point, degraded, [zoom_x, zoom_y, zoom_auto], api_visibility="private").then(
        compare_tab.rezoom, [degraded, out_l2, out_dl, ground_truth, zoom_x, zoom_y, zoom_size], zoom,
        api_visibility="private")
    run = on_gpu("compare")(as_outputs(compare_tab.compare))
    # By the handler's parameter names; this order is also the HTTP API's (ground_truth last, optional).
    request = {"image": image, "task": task, "mode": mode, "seed": seed, "l2_label": l2, "dl_label": dl,
               "zoom_x": zoom_x, "zoom_y": zoom_y, "zoom_size": zoom_size, "ground_truth": gt, "zoom_auto": zoom_auto,
               "diff_gain": diff_gain}
    # The ground-truth box shows only for a real pair (an example sets the mode too, hence .change).
    mode.change(lambda m: gr.update(visible=m == upload.MODES[2]), mode, gt, api_visibility="private")
    outputs = [degraded, out_l2, out_dl, slider, zoom, error_map, metrics, notes,  # CompareResult.as_tuple's order
               difference, difference_note, family_plot, zoom_x, zoom_y, ground_truth]
    # An already degraded photo has no error map: its empty box and title go, the note says why.
    error_map.change(lambda err: gr.update(visible=err is not None), error_map, error_box, api_visibility="private")
    go.click(run, outputs=outputs, api_name="compare", **event_inputs(request))
    # The prior-weight control picks the DiffLoss arm from the family and shows it at once; the arm box follows.
    weight.input(lambda label: label, weight, dl, api_visibility="private").then(
        run, outputs=outputs, api_visibility="private", **event_inputs(request))
    dl.input(weight_control, [task, dl], weight, api_visibility="private")
    diff_gain.release(run, outputs=outputs, api_visibility="private", **event_inputs(request))
    run_on_example(shown_examples, run, request, outputs,
                   first=[(compare_tab.example_ground_truth, image, gt), (kept_or_default_pair, [task, l2, dl], [l2, dl]),
                          (weight_control, [task, dl], weight)])
    zip_added = zip_file.upload(model_upload.add_restorers, zip_file, [zip_note, task], api_name="add_restorers")
    return CompareUI(task=task, l2=l2, dl=dl, refreshed=refreshed, zip_added=zip_added, photo=image, mode=mode,
                     ground_truth=gt, seed=seed)


def point(image, evt: gr.SelectData):
    """A click on the degraded image: the zoom sliders move there (and the automatic zoom steps aside)."""
    return (*compare_tab.point_fraction(evt.index, image), False)


def weight_control(task: str, dl_label: str | None) -> gr.Radio:
    """The prior-weight control for a task: its family, with the chosen DiffLoss arm marked when it is one."""
    from studio.models import get_registry

    choices = family_view.weight_choices(task, get_registry())
    return gr.Radio(choices=choices, value=dl_label if dl_label in [c[1] for c in choices] else None)
