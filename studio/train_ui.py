"""The Train tab's layout and its own events; what its buttons do is ``studio/train_tab.py``."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field

import gradio as gr

from diffloss import degrade
from diffloss.train_config import CPU_DEFAULTS
from studio import explainers, hosting, inspect_tab, restorers, train_gap, train_presets, train_tab
from studio.gpu import on_gpu
from studio.models import SHIPPED_PRIOR, Registry, get_registry
from studio.plots import training_figure
from studio.train_settings import FORM_FIELDS, TrainSettings
from studio.widgets import RELEASED_LABEL, PageStart, picture, released_weights


@dataclass
class TrainUI:
    """What the page shell needs of Train: the runs' events (a new run appears in the other tabs after each)."""

    task: gr.Dropdown
    start: gr.Dropdown
    resume_box: gr.Accordion
    run: gr.Dropdown
    runs: list[gr.events.Dependency] = field(default_factory=list)  # Train and Resume: each ends with a run

    def show_new_run(self, event: gr.events.Dependency) -> gr.events.Dependency:
        """After a run ends or stops: it can be a start of the next, and the stopped ones can be resumed."""
        return event.then(start_dropdown, self.task, self.start).then(stopped_runs, None, [self.resume_box, self.run])


def start_dropdown(task: str, request: gr.Request = None):
    """The task's "Start from" choices (on a hosted studio with the visitor's own runs)."""
    labels, default = restorers.start_choices(task, request=request)
    return gr.update(choices=labels, value=default)


def waiting_status():
    """The status box when Train or Resume is pressed: the wait for the slot if another run holds it, else as is."""
    text = train_tab.slot_wait_text()
    return gr.skip() if text is None else text


def stopped_runs(request: gr.Request = None):
    """On a page load and after a run ends or stops: the runs that can be resumed now (the box opens if any); on a
    hosted studio the visitor's own (``request``: gradio passes the visitor's)."""
    stopped = train_tab.stopped_runs(request=request)
    return gr.update(open=bool(stopped)), gr.update(choices=stopped, value=None)


def train_from_form(*form, **named):
    """The Train button: the form's boxes, in ``FORM_FIELDS`` order (the HTTP API's, trailing ones optional), as
    one ``TrainSettings``; gradio adds the visitor's request (see ``FORM_SIGNATURE``)."""
    values = FORM_SIGNATURE.bind(*form, **named).arguments
    request = values.pop("request", None)
    for view in train_tab.train_pair(TrainSettings(**values), request):
        yield tuple(view)  # gradio takes the outputs as a plain tuple


def resume_from_form(name: str | None, request: gr.Request = None):
    """The Resume button: the stopped run chosen; outputs as the Train button's."""
    for view in train_tab.resume_pair(name, request):
        yield tuple(view)


# What gradio reads of ``train_from_form``: one parameter per box, with TrainSettings' defaults, then the request
# (by its annotation, so gradio fills it): written once, in TrainSettings.
FORM_SIGNATURE = inspect.Signature(
    [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=f.default)
     for f in dataclasses.fields(TrainSettings) if f.name in FORM_FIELDS]
    + [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=gr.Request)])
train_from_form.__signature__ = FORM_SIGNATURE
train_from_form.__annotations__ = {"request": gr.Request}


PRESET_FIELDS = ("start", "steps", "batch", "crop", "lr", "gamma", "lam", "t_min", "t_max", "t_weight", "gradient",
                 "seed", "prior_crop", "prior_samples")


def preset_choices(task: str):
    """The task's family-arm presets (after a task change), none chosen."""
    shown = [p.label for p in train_presets.presets(task, get_registry(), train_tab.train_caps())]
    return gr.update(choices=[train_presets.NONE, *shown], value=train_presets.NONE), ""


def apply_preset(task: str, label: str | None):
    """A family arm's recipe into the form (and what it is); "none" leaves the form as it is."""
    preset = next((p for p in train_presets.presets(task, get_registry(), train_tab.train_caps())
                   if p.label == label), None)
    if preset is None:
        return (*(gr.skip() for _ in PRESET_FIELDS), "")
    return (*(preset.values[f] for f in PRESET_FIELDS), preset.note)


PRIOR_COST_NOTE = ("The prior sees the whole crop of every photo unless told otherwise; at batch 4 of 64 px on a "
                   "CPU that step costs about 10x a fidelity-only step. Cheaper but noisier: on a 32 px square of "
                   "each photo about 3.5x, on that square of 2 of the 4 photos 2.5x; in five seeded runs on rain "
                   "both trained worse than the whole crop (by 0.06-0.76 dB), so they are not the default.")
GAP_CAPTION = ("both arms restore one photo they do not train on at each measured step; the PSNR between their "
               "outputs falls as they part (below about 33 dB a person can see it), and their difference is shown "
               "amplified by the factor written on it")
CURVES_CAPTION = ("blue solid: L2 arm, red dashed: DiffLoss arm; lines smoothed, dots each logged step (the L2 "
                  "arm's L_nat and L_sem are measured, not trained on)")


def first_run_text(registry: Registry, hosted: bool = False) -> str:
    """The status before any run: what the Train button does with the defaults, and on which photos."""
    folder = registry.training_folder()
    if folder is not None and not hosted:
        data = f"the clean photos in `{folder.name}` (the folder box)"
    else:
        count = len(registry.training_examples())
        data = (f"the {count} clean photos shipped in `examples/train/` (not Compare's examples), unless you upload "
                "photos" if count
                else "the photos you upload (this install ships no clean examples)")
    text = (f"Press **Train both arms**: with the settings on the left both arms train on {data}, from the same "
            "weights with the same seed and batches; only the loss differs. The curves grow here live; **Stop** "
            "keeps what is trained, to compare or resume.")
    if hosted:  # one slot for every visitor (studio.train_tab): say so before anyone waits
        minutes = train_tab.HOSTED_RUN_SECONDS / 60
        text += (" One run trains at a time here: if another visitor's run holds the slot, yours waits in line "
                 f"(its place shows over the curves) and starts when that run ends; a run holds the slot at most "
                 f"{minutes:g} minutes, so the wait is at most {minutes:g} minutes per run ahead of yours.")
    return text


def build(page: gr.Blocks, start: PageStart) -> TrainUI:
    """Train's settings, buttons and live curves, inside the current tab; wires what happens within the tab."""
    caps = train_tab.train_caps()
    folder = start.registry.training_folder()
    prior_default = SHIPPED_PRIOR if start.registry.has_shipped_prior() else ""
    gr.Markdown(explainers.TRAIN)
    with gr.Row():
        with gr.Column(scale=1):
            task = gr.Dropdown(list(degrade.TASKS), value=start.task, label="Task")
            preset = gr.Dropdown([train_presets.NONE, *(p.label for p in train_presets.presets(
                start.task, start.registry, caps))], value=train_presets.NONE,
                label="Preset: the recipe of a shipped family arm (both arms, watch them move apart)")
            preset_note = gr.Markdown()
            start_labels, start_default = restorers.start_choices(start.task)
            start_from = gr.Dropdown(start_labels, value=start_default,
                                     label="Start from (both arms; a trained restorer fine-tunes)")
            steps = gr.Number(value=min(100, caps["steps"]), precision=0,
                              label=f"Steps (at most {caps['steps']} here)")
            # The command line's CPU defaults are these boxes (tests/test_cli_parity.py), on any machine
            batch = gr.Number(value=CPU_DEFAULTS.batch, precision=0, label=f"Batch (at most {caps['batch']})")
            crop = gr.Number(value=CPU_DEFAULTS.crop, precision=0, label=f"Crop px (at most {caps['crop']})")
            lr = gr.Number(value=1e-3, label="Learning rate")
            with gr.Row():
                gamma = gr.Number(value=0.05, label="gamma")
                lam = gr.Number(value=0.1, label="lambda")
            released = gr.Button(RELEASED_LABEL, size="sm")
            bug = gr.Checkbox(value=False, label="Reproduce the released code's no_grad mistake: the "
                              "DiffLoss arm's prior terms are logged but send no gradient")
            with gr.Accordion("Calibrate gamma and lambda: measure what a weight does", open=False):
                with gr.Row():
                    nat_share = gr.Number(value=0.2, label="L_nat share of the gradient")
                    sem_share = gr.Number(value=0.1, label="L_sem share of the gradient")
                calibrate = gr.Button("Calibrate on clean validation photos")
                calibration = gr.Markdown()
            photos = gr.File(file_count="multiple", file_types=["image"], type="filepath", height=140,
                             label="Clean photos to train on (upload; used instead of the folder)")
            clean_folder = gr.Textbox(value=str(folder) if folder else "", visible=not hosting.is_hosted(),
                                      label="...or a folder of clean photos on this machine (empty: the shipped "
                                      "photos in examples/train/, never Compare's examples)")
            with gr.Accordion("More settings: timesteps, seed, prior", open=False):
                with gr.Row():
                    band_lo, band_hi = start.registry.shipped_band_boxes()
                    t_min = gr.Number(value=band_lo, precision=0, label="t min (empty: the prior's band)")
                    t_max = gr.Number(value=999 if band_hi is None else band_hi, precision=0,
                                      label="t max (empty: the prior's band; clipped to the prior)")
                with gr.Row():
                    t_weight = gr.Dropdown(inspect_tab.T_WEIGHT_CHOICES, value="uniform", label="Weight of each t")
                    gradient = gr.Radio(inspect_tab.GRADIENT_CHOICES, value="full", label="Gradient")
                seed = gr.Number(value=0, precision=0, label="Seed")
                with gr.Row():
                    prior_crop = gr.Number(value=0, precision=0, label="Prior sub-crop px (0 = whole crop)")
                    prior_samples = gr.Number(value=0, precision=0,
                                              label="Prior on how many photos of a batch (0 = all)")
                gr.Markdown(PRIOR_COST_NOTE)
                prior = gr.Textbox(value=prior_default, label="Prior")
            # Filled (and opened when there are stopped runs) by each page load, below: no scan of
            # runs/ at start-up, and a reload lists runs stopped since.
            with gr.Accordion("Resume a stopped run", open=False) as resume_box:
                # allow_custom_value: the choices are set in the page, not here; the handler checks the name itself
                run = gr.Dropdown([], value=None, allow_custom_value=True,
                                  label="Stopped runs (steps done per arm): they go on with their own "
                                  "settings, the ones above are not used")
                resume = gr.Button("Resume")
        with gr.Column(scale=2):
            with gr.Row():
                go = gr.Button("Train both arms", variant="primary", scale=3)
                stop = gr.Button("Stop", variant="stop", scale=1)
            # The curves first: in the window at 1440x900 whatever the status says under them
            curves = picture("Loss terms (live)", CURVES_CAPTION, training_figure({}))
            status = gr.Markdown(first_run_text(start.registry, hosting.is_hosted()))
            gr.Markdown(f"**How far the two arms have moved apart (live)**: {GAP_CAPTION}")
            with gr.Row():
                gap_curve = gr.Image(value=train_gap.gap_curve(None), label="PSNR between the arms", format="png",
                                     interactive=False, show_label=False, buttons=[], scale=2)
                gap_picture = gr.Image(value=train_gap.gap_picture(None)[0], label="the arms' outputs", format="png",
                                       interactive=False, show_label=False, buttons=[], scale=3)
            gap_note = gr.Markdown()
            archive = gr.File(label="Download both models (safetensors + card), once a run is done")
    outputs = [status, curves, archive, gap_curve, gap_picture, gap_note]  # TrainView's order
    form = {"task": task, "steps": steps, "batch": batch, "crop": crop, "lr": lr, "gamma": gamma, "lam": lam,
            "t_min": t_min, "t_max": t_max, "seed": seed, "prior_source": prior, "clean_folder": clean_folder,
            "prior_crop": prior_crop, "start": start_from, "photos": photos, "detach_prior": bug,
            "t_weight": t_weight, "gradient": gradient, "prior_samples": prior_samples}
    assert tuple(form) == FORM_FIELDS  # the boxes in train_from_form's order
    # One queue for both buttons (concurrency_id): a second run waits its turn instead of being refused.
    # A press while another run holds the slot first says so, at once (outside the queue), with how long it may last.
    runs = [
        button.click(waiting_status, None, status, queue=False, api_visibility="private").then(
            on_gpu("train")(handler), inputs, outputs, api_name=name, concurrency_limit=1, concurrency_id="train",
            show_progress_on=curves)
        for button, handler, inputs, name in ((go, train_from_form, list(form.values()), "train"),
                                              (resume, resume_from_form, run, "resume"))
    ]
    task.change(preset_choices, task, [preset, preset_note], api_visibility="private")
    preset.input(apply_preset, [task, preset],
                 [start_from, steps, batch, crop, lr, gamma, lam, t_min, t_max, t_weight, gradient, seed, prior_crop,
                  prior_samples, preset_note],
                 api_visibility="private")
    page.load(stopped_runs, None, [resume_box, run], api_name="_stopped_runs")  # runs stopped since start-up
    task.change(start_dropdown, task, start_from)
    stop.click(train_tab.request_stop, None, status, api_name="stop")
    released.click(released_weights, None, [gamma, lam])
    calibrate.click(on_gpu("calibrate")(train_tab.calibrate_weights),
                    [task, crop, t_min, t_max, prior, gamma, lam, nat_share, sem_share, start_from, t_weight, gradient],
                    [gamma, lam, calibration], api_name="calibrate")
    return TrainUI(task=task, start=start_from, resume_box=resume_box, run=run, runs=runs)
