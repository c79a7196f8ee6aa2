"""The Inspect tab's layout and its own events; what its buttons do is ``studio/inspect_tab.py``."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from diffloss import degrade
from studio import explainers, hosting, inspect_tab, restorers
from studio.components import UploadImage
from studio.gpu import on_gpu
from studio.models import SHIPPED_PRIOR
from studio.widgets import (
    RELEASED_LABEL, PageStart, again, as_outputs, event_inputs, examples, picture, placeholder, released_weights,
    restorer_dropdowns, run_on_example, trained_dropdowns,
)

VIEW_ORDER = ("x_t", "eps", "x0", "h_pca", "h_error", "gradient")  # InspectResult.as_tuple's pictures, in order
FIRST_CLICK = ("Press **Inspect** (or click an example photo on the left): the prior's view of the pair appears "
               "in these pictures, with L_nat, L_sem and where they push written here.")
WAITING = "Press Inspect to see it here"


@dataclass
class InspectUI:
    """What the page shell needs of Inspect: its restorer box, refreshed when a new run appears."""

    task: gr.Dropdown
    restorer: gr.Dropdown

    def show_new_run(self, event: gr.events.Dependency) -> gr.events.Dependency:
        """After a Train run or an uploaded zip: the newest run's DiffLoss arm offered."""
        return event.then(trained_restorer, self.task, self.restorer)


def task_restorer(task: str):
    """Inspect's one restorer box: the task's DiffLoss arm preselected."""
    return restorer_dropdowns(task)[1]


def trained_restorer(task: str):
    """Inspect's restorer box after a Train run or an uploaded zip: the newest run's DiffLoss arm."""
    return trained_dropdowns(task)[1]


def prior_changed(source: str, t: float):
    """The t slider spans the chosen prior's schedule; the box under the prior says what it is (or why not)."""
    steps, message = inspect_tab.prior_timesteps(source)
    return gr.update(maximum=steps - 1, value=inspect_tab.timestep_in_schedule(t, steps)), message


def build(page: gr.Blocks, start: PageStart) -> InspectUI:
    """Inspect's controls and views, inside the current tab; wires what happens within the tab."""
    labels, _, dl_default = restorers.restorer_choices(start.task)
    prior_default = SHIPPED_PRIOR if start.registry.has_shipped_prior() else ""
    gr.Markdown(explainers.INSPECT)
    with gr.Row():
        with gr.Column(scale=1):
            task = gr.Dropdown(list(degrade.TASKS), value=start.task, label="Task")
            gr.Markdown("A clean photo is degraded with the seed below; a degraded one given its "
                        "ground truth is taken as it is (a real pair).")
            image = UploadImage(value=start.photo, type="filepath", image_mode=None, label="Photo")
            gt = UploadImage(type="filepath", image_mode=None, height=160, label="Ground truth")
            clean_examples = examples([image], start.clean_rows, "Clean photos")
            pair_examples = examples([image, task, gt], start.pair_rows, "Real pairs, with their ground truth")
            seed_image = gr.Number(value=0, precision=0, label="Degradation seed")
            restorer = gr.Dropdown(labels, value=dl_default, label="Restorer (for 'restored')")
            pair = gr.Radio(list(inspect_tab.PAIRS), value=inspect_tab.PAIRS[0], label="Pair")
            prior = gr.Textbox(value=prior_default, label="Prior: shipped, a hub id" if hosting.is_hosted() else
                               "Prior: shipped, a diffusers folder or a hub id")
            prior_info = gr.Markdown()
            with gr.Row():
                gamma = gr.Number(value=0.05, label="gamma (Enter: re-weight at once)")
                lam = gr.Number(value=0.1, label="lambda (Enter: re-weight at once)")
            released = gr.Button(RELEASED_LABEL, size="sm")
            side = gr.Slider(32, inspect_tab.INSPECT_MAX_SIDE, value=inspect_tab.INSPECT_SIDE, step=16,
                             label="Centre crop (px): larger is slower on a CPU")
            bug = gr.Checkbox(value=False, label="Reproduce the released code's no_grad mistake")
            with gr.Accordion("Dose: where and how hard the prior pushes", open=False):
                gr.Markdown(explainers.DOSE)
                with gr.Row():
                    band_lo, band_hi = start.registry.shipped_band_boxes()
                    t_min = gr.Number(value=band_lo, precision=0, minimum=0,
                                      label="t band: from (empty: the prior's band)")
                    t_max = gr.Number(value=band_hi, precision=0, minimum=0,
                                      label="t band: to (empty: the prior's band)")
                t_weight = gr.Dropdown(inspect_tab.T_WEIGHT_CHOICES, value="uniform", label="Weight of each t")
                gradient = gr.Radio(inspect_tab.GRADIENT_CHOICES, value="full", label="Gradient")
                per_sample_norm = gr.Checkbox(value=False, label="Normalise each sample's prior gradient")
                grad_cap = gr.Number(value=0, minimum=0, label="Cap: prior gradient <= this x fidelity's (0: none)")
            gr.Markdown("Every control here re-runs Inspect the same way: Enter in a box, a slider let go, a choice "
                        "made.")
        with gr.Column(scale=2):
            with gr.Row(equal_height=True):  # the controls that change the pictures, beside them
                t = gr.Slider(0, 999, value=200, step=1, scale=3,
                              label="timestep t (drag, or type and press Enter: re-runs at once)")
                seed = gr.Number(value=0, precision=0, scale=1, min_width=120, label="Noise seed (Enter)")
                go = gr.Button("Inspect", variant="primary", scale=1, min_width=120)
            panels = {}
            for row in (("x_t", "x0"), ("h_error", "gradient"), ("eps", "h_pca")):
                with gr.Row(equal_height=True):
                    for name in row:
                        with gr.Column(min_width=300):
                            panels[name] = picture(explainers.INSPECT_TITLES[name], explainers.INSPECT_CAPTIONS[name],
                                                   placeholder(WAITING))
                if row[0] == "x_t":  # the terms right under the first pictures, in the window at 1440x900
                    values = gr.Markdown(FIRST_CLICK)
            views = [panels[name] for name in VIEW_ORDER]
    with gr.Accordion("L(t) across timesteps", open=False):
        gr.Markdown(f"{inspect_tab.CURVE_POINTS} timesteps x seeds x 3 images (restored, degraded, "
                    "ground truth) through the prior, on a centre crop of its own size: a few seconds at "
                    "the default.")
        with gr.Row():
            seeds = gr.Slider(1, 8, value=3, step=1, label="seeds")
            curve_side = gr.Slider(32, inspect_tab.INSPECT_MAX_SIDE, value=inspect_tab.CURVE_SIDE,
                                   step=16, label="Curve crop (px): the prior was trained on 64 px crops")
        curves_go = gr.Button("Plot L_nat(t), L_sem(t)")
        curves = picture("L(t): mean over seeds, band +-1 std",
                         "each term against t for the restored and the degraded image; lower is closer to the truth",
                         placeholder("Press Plot L_nat(t), L_sem(t) to draw it here"))
        curves_reading = gr.Markdown()
    with gr.Accordion("Purification: DDIM round trip from t", open=False):
        steps = gr.Slider(1, 50, value=10, step=1, label="DDIM steps")
        purify_go = gr.Button("Purify")
        purified = picture("Purified", "each image noised to t, then denoised by the prior in a few DDIM steps: "
                           "what the prior would make of it", placeholder("Press Purify to see it here"))
    # .input, as in Compare: a real-pair example sets the task and the restorer itself, before it runs
    task.input(task_restorer, task, restorer)
    prior.submit(prior_changed, [prior, t], [t, prior_info])
    page.load(prior_changed, [prior, t], [t, prior_info])  # the slider spans the prior's schedule
    # The restorer list as it is now, at each page load (as Compare's): a Train run made after start-up is offered.
    page.load(task_restorer, task, restorer, api_visibility="private")
    # By the handlers' parameter names; each dict's order is also its HTTP API's (ground_truth last, optional).
    case = {"image": image, "task": task, "seed_image": seed_image, "restorer_label": restorer}
    view = {**case, "pair": pair, "t": t, "seed": seed, "prior_source": prior}
    band = {"t_min": t_min, "t_max": t_max}
    dose = {"t_weight": t_weight, "gradient": gradient, "per_sample_norm": per_sample_norm, "grad_cap": grad_cap,
            **band}
    inspect_inputs = {**view, "detach_prior": bug, "gamma": gamma, "lam": lam, "side": side, **dose,
                      "ground_truth": gt}
    inspect_outputs = [*views, values]  # InspectResult.as_tuple's order
    run = on_gpu("inspect")(as_outputs(inspect_tab.inspect))
    go.click(run, outputs=inspect_outputs, api_name="inspect", **event_inputs(inspect_inputs))
    run_on_example(clean_examples, run, inspect_inputs, inspect_outputs,
                   first=[(lambda: None, None, gt)])  # a clean photo: no ground truth of another
    run_on_example(pair_examples, run, inspect_inputs, inspect_outputs, first=[(task_restorer, task, restorer)])
    # New weights re-use the last prior pass (instant); a new t or seed re-runs the prior only; a new degradation
    # seed, restorer or crop makes a new case.
    # t.release: a drag let go, or the number typed and left (Enter leaves it: widgets.ENTER_COMMITS_SLIDERS)
    gr.on([gamma.submit, lam.submit, bug.input, pair.input, t.release, seed.submit, seed_image.submit, restorer.input,
           side.release, t_weight.input, gradient.input, per_sample_norm.input, grad_cap.submit, t_min.submit,
           t_max.submit],
          again(run, len(inspect_outputs)), outputs=inspect_outputs, api_visibility="private",
          trigger_mode="always_last", **event_inputs(inspect_inputs))
    released.click(released_weights, None, [gamma, lam]).then(
        again(run, len(inspect_outputs)), outputs=inspect_outputs, api_visibility="private",
        **event_inputs(inspect_inputs))
    curves_inputs = {**case, "prior_source": prior, "seeds": seeds, "side": curve_side, "t_weight": t_weight, **band,
                     "ground_truth": gt}
    curves_go.click(on_gpu("curves")(inspect_tab.inspect_curves), outputs=[curves, curves_reading],
                    api_name="curves", **event_inputs(curves_inputs))
    purify_inputs = {**view, "steps": steps, "side": side, "ground_truth": gt}
    purify_go.click(on_gpu("purify")(inspect_tab.inspect_purify), outputs=purified, api_name="purify",
                    **event_inputs(purify_inputs))
    return InspectUI(task=task, restorer=restorer)
