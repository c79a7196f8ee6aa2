"""DiffLoss Studio, the browser app: layout and event wiring only.

The work lives in ``studio/`` (one module per tab, ``studio/compare_tab.py`` etc., tested without a browser) and
the library in ``diffloss/``.
Run ``python app.py [--host H] [--port P] [--share]``.
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: on a small shared CPU (a free Space, a laptop) spinning threads
# made every torch call many times slower. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from studio.gradio_startup import skip_stub_rewrite  # noqa: E402

skip_stub_rewrite()  # before gradio is imported: a quicker start-up (see the module)

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from diffloss import degrade  # noqa: E402
from diffloss.checkpoint import remove_interrupted_saves  # noqa: E402
from diffloss.images import ImageLoadError, load_image, to_uint8_numpy  # noqa: E402
from diffloss.loss import DiffLossConfig  # noqa: E402
from diffloss.signals import stop_on_signals  # noqa: E402
from studio import compare_tab, hosting, inspect_tab, model_upload, restorers, train_tab, upload  # noqa: E402
from studio.components import UploadImage  # noqa: E402
from studio.gpu import on_gpu  # noqa: E402
from studio.models import SHIPPED_PRIOR, get_registry  # noqa: E402

REPO = Path(__file__).resolve().parent
MAX_SIDE = upload.MAX_SIDE
TASKS = list(degrade.TASKS)


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


def _pair_dropdowns(labels: list[str], l2: str | None, dl: str | None):
    return gr.update(choices=labels, value=l2), gr.update(choices=labels, value=dl)


def _restorer_dropdowns(task: str):
    return _pair_dropdowns(*restorers.restorer_choices(task))


def _inspect_restorer(task: str):
    """Inspect's one restorer box: the task's DiffLoss arm preselected."""
    return _restorer_dropdowns(task)[1]


def _inspect_trained_restorer(task: str):
    """Inspect's restorer box after a Train run or an uploaded zip: the newest run's DiffLoss arm."""
    return _trained_dropdowns(task)[1]


def _trained_dropdowns(task: str):
    """After a Train run or an uploaded zip: the newest run preselected."""
    return _pair_dropdowns(*restorers.trained_pair_choices(task))


def _stopped_runs():
    """On a page load and after a run ends or stops: the runs that can be resumed now (the box opens if any)."""
    stopped = train_tab.stopped_runs()
    return gr.update(open=bool(stopped)), gr.update(choices=stopped, value=None)


def _start_dropdown(task: str):
    labels, default = restorers.start_choices(task)
    return gr.update(choices=labels, value=default)


def _compare(image, task, mode, seed, l2_label, dl_label, zoom_x, zoom_y, zoom_size, ground_truth=None):
    """Compare's button. Named parameters, ``ground_truth`` defaulting to None: the HTTP API then keeps it
    optional, and callers written before real pairs existed keep working."""
    return compare_tab.compare(image, task, mode, seed, l2_label, dl_label, zoom_x, zoom_y, zoom_size,
                               ground_truth).as_tuple()


def _inspect(image, task, seed_image, restorer_label, pair, t, seed, prior_source, released_bug, gamma, lam, side,
             ground_truth=None):
    """Inspect's button; named parameters so the HTTP API keeps ``ground_truth`` optional (see ``_compare``)."""
    return inspect_tab.inspect(image, task, seed_image, restorer_label, pair, t, seed, prior_source, released_bug,
                               gamma, lam, side, ground_truth).as_tuple()


def _released_weights() -> tuple[float, float]:
    """gamma and lambda as the released code weighted its terms (1e-3 on the noise term, 1e-6 on h): a button sets
    them, so a learner sees what they do (next to nothing, next to the fidelity term) instead of reading it."""
    return _RELEASED.gamma, _RELEASED.lam


_RELEASED = DiffLossConfig.released()
RELEASED_LABEL = f"Released code's weights ({_RELEASED.gamma:g} on L_nat, {_RELEASED.gamma * _RELEASED.lam:g} on L_sem)"


def _again(handler, outputs: int):
    """For a control moved after a run (t, seed, pair, weights, the no_grad toggle): run ``handler`` again.

    Before a photo is chosen there is nothing to redo, and no error to show for it (nor a GPU to ask for).
    """
    def again(*args):
        if not args[0]:
            return tuple(gr.skip() for _ in range(outputs))
        return handler(*args)
    return again


def _pick_point(image, evt: gr.SelectData):
    return compare_tab.point_fraction(evt.index, image)


def _prior_changed(source: str, t: float):
    steps, message = inspect_tab.prior_timesteps(source)
    return gr.update(maximum=steps - 1, value=inspect_tab.timestep_in_schedule(t, steps)), message


def _example_rows() -> list[list]:
    """[photo, task, mode, ground truth] per example (see examples/README.md and upload.example_rows)."""
    return upload.example_rows(get_registry().example_images())


def _examples(inputs: list, rows: list[list], label: str) -> gr.Examples | None:
    """Example rows for ``inputs`` (one value per input), or a note when there are none. Returns the examples
    (None when there are none): a tab chains its own run to a click on one."""
    if not rows:
        gr.Markdown("No example photos found (`examples/`): upload one.")
        return None
    return gr.Examples(rows, inputs=inputs, label=f"{label} (see examples/README.md): a click runs it")


def _run_on_example(examples: gr.Examples | None, fn, inputs: list, outputs: list, first=None) -> None:
    """A click on an example fills the inputs, then runs the tab's button: one click from photo to result.

    ``first`` = (fn, inputs, outputs) runs in between, e.g. the restorer dropdowns of the example's task: the task
    box refreshes them only when a person changes it, so the button's run would otherwise get the old task's pair.
    """
    if examples is None:
        return
    event = examples.load_input_event
    if first is not None:
        event = event.then(*first, api_visibility="private")
    event.then(fn, inputs, outputs, api_visibility="private")


def _picture(title: str) -> gr.Image:
    """An output picture titled above it: gradio's label badge sits over the picture's top left, where our grids
    (zoom, error maps, Inspect's views) carry their own captions."""
    gr.Markdown(f"**{title}**")
    # interactive=False: an output that is also an event's input (the error map's .change) would become an upload box
    return gr.Image(label=title, show_label=False, format="png", interactive=False)


def build_demo() -> gr.Blocks:
    registry = get_registry()
    prior_default = SHIPPED_PRIOR if registry.has_shipped_prior() else ""
    first = "noise"
    labels, l2_default, dl_default = restorers.restorer_choices(first)
    photo = registry.first_clean_example()
    rows = _example_rows()  # listed once: Compare takes them all, Inspect and Degradations the clean ones
    clean_rows = [r[:1] for r in rows if r[2] == upload.MODES[0]]
    with gr.Blocks(title="DiffLoss Studio", **hosting.blocks_options()) as demo:
        gr.Markdown(
            "# DiffLoss Studio\nA frozen diffusion model used as a *loss* for image restoration "
            "(DiffLoss, ACCV 2024): compare restorers trained with and without it, look inside the loss, train a pair."
        )
        status = gr.Markdown(registry.status())
        with gr.Tabs():
            # -------------------------------------------------------------------------------- Compare
            with gr.Tab("Compare"):
                with gr.Row():
                    with gr.Column(scale=1):
                        c_task = gr.Dropdown(TASKS, value=first, label="Task")
                        c_image = UploadImage(value=photo, type="filepath", image_mode=None, label="Photo")
                        c_mode = gr.Radio(list(upload.MODES), value=upload.MODES[0], label="The photo is")
                        c_gt = UploadImage(type="filepath", image_mode=None, label="Ground truth", visible=False)
                        c_seed = gr.Number(value=0, precision=0, label="Degradation seed")
                        c_l2 = gr.Dropdown(labels, value=l2_default, label="L2 arm")
                        c_dl = gr.Dropdown(labels, value=dl_default, label="DiffLoss arm")
                        c_go = gr.Button("Compare", variant="primary")
                        c_examples = _examples([c_image, c_task, c_mode, c_gt], rows, "Examples")
                        with gr.Accordion("Zoom (or click the degraded image)", open=False):
                            c_zx = gr.Slider(0, 1, value=0.5, label="x (fraction of width)")
                            c_zy = gr.Slider(0, 1, value=0.5, label="y (fraction of height)")
                            c_zs = gr.Slider(16, 256, value=64, step=8, label="crop size (px)")
                        c_refresh = gr.Button("Refresh model list", size="sm")
                        with gr.Accordion("Add restorers: upload a zip (the Train tab's download)", open=False):
                            c_zip = gr.File(file_types=[".zip"], type="filepath",
                                            label="zip with l2/ and diffloss/ model folders, or one model folder")
                            c_zip_note = gr.Markdown()
                    with gr.Column(scale=2):
                        with gr.Row():
                            c_deg = gr.Image(label="Degraded input (click: zoom there)", format="png", interactive=False)
                            c_out_l2 = gr.Image(label="L2 arm", format="png")
                            c_out_dl = gr.Image(label="DiffLoss arm", format="png")
                        c_slider = gr.ImageSlider(label="L2 arm | DiffLoss arm", format="png")
                        c_zoom = _picture("Zoomed crop")
                        with gr.Column(visible=False) as c_err_box:  # shown for a comparison with a ground truth
                            c_err = _picture("Error against ground truth (shared scale)")
                        c_metrics = gr.Markdown()
                        c_notes = gr.Markdown()
                        with gr.Accordion("How these two restorers were trained (cards, measured metrics)", open=False):
                            c_cards = gr.Markdown()
                        with gr.Accordion("Evaluate both on clean validation photos (mean metrics, wins)", open=False):
                            with gr.Row():
                                c_eval_n = gr.Slider(2, 24, value=8, step=1, label="photos")
                                c_eval_go = gr.Button("Evaluate")
                            c_eval = gr.Markdown()
                # .input, not .change: where code sets the task (an example, an uploaded zip) it sets the arms too,
                # and a .change handler running beside it would put the task's default pair back.
                c_task.input(_restorer_dropdowns, c_task, [c_l2, c_dl])
                c_eval_go.click(on_gpu("evaluate")(compare_tab.evaluate_pair), [c_task, c_l2, c_dl, c_eval_n], c_eval,
                                api_name="evaluate")
                gr.on([c_l2.change, c_dl.change, demo.load], compare_tab.describe_pair, [c_task, c_l2, c_dl], c_cards,
                      api_visibility="private")
                c_refresh.click(_restorer_dropdowns, c_task, [c_l2, c_dl]).then(registry.status, None, status)
                c_deg.select(_pick_point, c_deg, [c_zx, c_zy])
                compare_fn = on_gpu("compare")(_compare)
                compare_inputs = [c_image, c_task, c_mode, c_seed, c_l2, c_dl, c_zx, c_zy, c_zs, c_gt]
                # The ground-truth box shows only for a real pair (an example sets the mode too, hence .change).
                c_mode.change(lambda mode: gr.update(visible=mode == upload.MODES[2]), c_mode, c_gt,
                              api_visibility="private")
                compare_outputs = [c_deg, c_out_l2, c_out_dl, c_slider, c_zoom, c_err, c_metrics, c_notes]
                # An already degraded photo has no error map: its empty box and title go, the note says why.
                c_err.change(lambda err: gr.update(visible=err is not None), c_err, c_err_box, api_visibility="private")
                c_go.click(compare_fn, compare_inputs, compare_outputs, api_name="compare")
                _run_on_example(c_examples, compare_fn, compare_inputs, compare_outputs,
                                first=(_restorer_dropdowns, c_task, [c_l2, c_dl]))
            # -------------------------------------------------------------------------------- Inspect
            with gr.Tab("Inspect"):
                with gr.Row():
                    with gr.Column(scale=1):
                        i_task = gr.Dropdown(TASKS, value=first, label="Task")
                        gr.Markdown("A clean photo is degraded with the seed below; a degraded one given its "
                                    "ground truth is taken as it is (a real pair).")
                        i_image = UploadImage(value=photo, type="filepath", image_mode=None, label="Photo")
                        i_gt = UploadImage(type="filepath", image_mode=None, height=160, label="Ground truth")
                        i_examples = _examples([i_image], clean_rows, "Clean photos")
                        i_pair_examples = _examples([i_image, i_task, i_gt], [[r[0], r[1], r[3]] for r in rows if r[3]],
                                                    "Real pairs, with their ground truth")
                        i_seed_img = gr.Number(value=0, precision=0, label="Degradation seed")
                        i_rest = gr.Dropdown(labels, value=dl_default, label="Restorer (for 'restored')")
                        i_pair = gr.Radio(list(inspect_tab.PAIRS), value=inspect_tab.PAIRS[0], label="Pair")
                        i_prior = gr.Textbox(value=prior_default, label="Prior: shipped, a hub id" if hosting.is_hosted() else
                                             "Prior: shipped, a diffusers folder or a hub id")
                        i_prior_info = gr.Markdown()
                        i_t = gr.Slider(0, 999, value=200, step=1, label="timestep t")
                        i_seed = gr.Number(value=0, precision=0, label="Noise seed")
                        with gr.Row():
                            i_gamma = gr.Number(value=0.05, label="gamma (Enter: re-weight at once)")
                            i_lam = gr.Number(value=0.1, label="lambda (Enter: re-weight at once)")
                        i_released = gr.Button(RELEASED_LABEL, size="sm")
                        i_side = gr.Slider(32, inspect_tab.INSPECT_MAX_SIDE, value=inspect_tab.INSPECT_SIDE, step=16,
                                           label="Centre crop (px): larger is slower on a CPU")
                        i_bug = gr.Checkbox(value=False, label="Reproduce the released code's no_grad mistake")
                        i_go = gr.Button("Inspect", variant="primary")
                    with gr.Column(scale=2):
                        i_values = gr.Markdown()
                        i_xt = _picture("x_t (same noise, same t)")
                        i_eps = _picture("Predicted noise (shared scale) and their difference (own scale)")
                        i_x0 = _picture("One-step x0 estimates")
                        i_pca = _picture("h-space (mid-block) maps, first 3 principal components")
                        i_herr = _picture("h-space error over the ground truth")
                        i_grad = _picture("Where the prior pushes: |gradient| on the compared image")
                with gr.Accordion("L(t) across timesteps", open=False):
                    gr.Markdown(f"{inspect_tab.CURVE_POINTS} timesteps x seeds x 3 images (restored, degraded, "
                                "ground truth) through the prior, on a centre crop of its own size: a few seconds at "
                                "the default.")
                    with gr.Row():
                        i_nseeds = gr.Slider(1, 8, value=3, step=1, label="seeds")
                        i_curve_side = gr.Slider(32, inspect_tab.INSPECT_MAX_SIDE, value=inspect_tab.CURVE_SIDE,
                                                 step=16, label="Curve crop (px): the prior was trained on 64 px crops")
                    i_curves_go = gr.Button("Plot L_nat(t), L_sem(t)")
                    i_curves = _picture("L(t): mean over seeds, band +-1 std")
                    i_curves_reading = gr.Markdown()
                with gr.Accordion("Purification: DDIM round trip from t", open=False):
                    i_steps = gr.Slider(1, 50, value=10, step=1, label="DDIM steps")
                    i_purify_go = gr.Button("Purify")
                    i_purified = _picture("Purified")
                # .input, as in Compare: a real-pair example sets the task and the restorer itself, before it runs
                i_task.input(_inspect_restorer, i_task, i_rest)
                i_prior.submit(_prior_changed, [i_prior, i_t], [i_t, i_prior_info])
                demo.load(_prior_changed, [i_prior, i_t], [i_t, i_prior_info])  # the slider spans the prior's schedule
                inspect_inputs = [i_image, i_task, i_seed_img, i_rest, i_pair, i_t, i_seed, i_prior, i_bug, i_gamma,
                                  i_lam, i_side, i_gt]
                inspect_outputs = [i_xt, i_eps, i_x0, i_pca, i_herr, i_grad, i_values]
                inspect_fn = on_gpu("inspect")(_inspect)
                i_go.click(inspect_fn, inspect_inputs, inspect_outputs, api_name="inspect")
                _run_on_example(i_examples, inspect_fn, inspect_inputs, inspect_outputs,
                                first=(lambda: None, None, i_gt))  # a clean photo: no ground truth of another
                _run_on_example(i_pair_examples, inspect_fn, inspect_inputs, inspect_outputs,
                                first=(_inspect_restorer, i_task, i_rest))
                # New weights re-use the last prior pass (instant); a new t or seed re-runs the prior only.
                gr.on([i_gamma.submit, i_lam.submit, i_bug.input, i_pair.input, i_t.release, i_seed.submit],
                      _again(inspect_fn, len(inspect_outputs)), inspect_inputs, inspect_outputs,
                      api_visibility="private", trigger_mode="always_last")
                i_released.click(_released_weights, None, [i_gamma, i_lam]).then(
                    _again(inspect_fn, len(inspect_outputs)), inspect_inputs, inspect_outputs, api_visibility="private")
                i_curves_go.click(on_gpu("curves")(inspect_tab.inspect_curves),
                                  [i_image, i_task, i_seed_img, i_rest, i_prior, i_nseeds, i_curve_side, i_gt],
                                  [i_curves, i_curves_reading], api_name="curves")
                i_purify_go.click(on_gpu("purify")(inspect_tab.inspect_purify),
                                  [i_image, i_task, i_seed_img, i_rest, i_pair, i_t, i_seed, i_prior, i_steps, i_side,
                                   i_gt],
                                  i_purified, api_name="purify")
                # An uploaded zip becomes a run: chosen in Compare, offered in Inspect (as after a Train run).
                c_zip.upload(model_upload.add_restorers, c_zip, [c_zip_note, c_task], api_name="add_restorers"
                             ).then(_trained_dropdowns, c_task, [c_l2, c_dl]).then(registry.status, None, status
                             ).then(_inspect_trained_restorer, i_task, i_rest)
            # -------------------------------------------------------------------------------- Train
            with gr.Tab("Train"):
                caps = train_tab.train_caps()
                folder = registry.training_folder()
                with gr.Row():
                    with gr.Column(scale=1):
                        t_task = gr.Dropdown(TASKS, value=first, label="Task")
                        start_labels, start_default = restorers.start_choices(first)
                        t_start = gr.Dropdown(start_labels, value=start_default,
                                              label="Start from (both arms; a trained restorer fine-tunes)")
                        t_steps = gr.Number(value=min(100, caps["steps"]), precision=0,
                                            label=f"Steps (at most {caps['steps']} here)")
                        t_batch = gr.Number(value=4, precision=0, label=f"Batch (at most {caps['batch']})")
                        t_crop = gr.Number(value=64, precision=0, label=f"Crop px (at most {caps['crop']})")
                        t_lr = gr.Number(value=1e-3, label="Learning rate")
                        with gr.Row():
                            t_gamma = gr.Number(value=0.05, label="gamma")
                            t_lam = gr.Number(value=0.1, label="lambda")
                        t_released = gr.Button(RELEASED_LABEL, size="sm")
                        t_bug = gr.Checkbox(value=False, label="Reproduce the released code's no_grad mistake: the "
                                            "DiffLoss arm's prior terms are logged but send no gradient")
                        with gr.Accordion("Calibrate gamma and lambda: measure what a weight does", open=False):
                            with gr.Row():
                                t_nat_share = gr.Number(value=0.2, label="L_nat share of the gradient")
                                t_sem_share = gr.Number(value=0.1, label="L_sem share of the gradient")
                            t_calibrate = gr.Button("Calibrate on clean validation photos")
                            t_calibration = gr.Markdown()
                        with gr.Row():
                            t_tmin = gr.Number(value=0, precision=0, label="t min")
                            t_tmax = gr.Number(value=999, precision=0, label="t max (clipped to the prior)")
                        t_seed = gr.Number(value=0, precision=0, label="Seed")
                        t_prior_crop = gr.Number(value=0, precision=0,
                                                 label="Prior sub-crop px (0 = whole crop; 32 makes CPU steps cheaper)")
                        t_prior = gr.Textbox(value=prior_default, label="Prior")
                        t_photos = gr.File(file_count="multiple", file_types=["image"], type="filepath", height=140,
                                           label="Clean photos to train on (upload; used instead of the folder)")
                        t_folder = gr.Textbox(value=str(folder) if folder else "", visible=not hosting.is_hosted(),
                                              label="...or a folder of clean photos on this machine")
                        with gr.Row():
                            t_go = gr.Button("Train both arms", variant="primary")
                            t_stop = gr.Button("Stop", variant="stop")
                        # Filled (and opened when there are stopped runs) by each page load, below: no scan of
                        # runs/ at start-up, and a reload lists runs stopped since.
                        with gr.Accordion("Resume a stopped run", open=False) as t_resume_box:
                            # allow_custom_value: the choices are set in the page, not here; the handler checks the
                            # name itself
                            t_run = gr.Dropdown([], value=None, allow_custom_value=True,
                                                label="Stopped runs (steps done per arm): they go on with their own "
                                                "settings, the ones above are not used")
                            t_resume = gr.Button("Resume")
                    with gr.Column(scale=2):
                        t_status = gr.Markdown("Both arms start from the same weights with the same seed and "
                                               "batches; only the loss differs.")
                        t_curves = _picture("Loss terms (live)")
                        t_file = gr.File(label="Download both models (safetensors + card)")
                train_outputs = [t_status, t_curves, t_file]
                # One queue for both buttons (concurrency_id): a second run waits its turn instead of being refused.
                for run_event in (
                    t_go.click(on_gpu("train")(train_tab.train_pair),
                               [t_task, t_steps, t_batch, t_crop, t_lr, t_gamma, t_lam, t_tmin, t_tmax, t_seed,
                                t_prior, t_folder, t_prior_crop, t_start, t_photos, t_bug],
                               train_outputs, api_name="train", concurrency_limit=1, concurrency_id="train"),
                    t_resume.click(on_gpu("train")(train_tab.resume_pair), t_run, train_outputs, api_name="resume",
                                   concurrency_limit=1, concurrency_id="train"),
                ):
                    run_event.then(_trained_dropdowns, c_task, [c_l2, c_dl]).then(registry.status, None, status
                                   ).then(_inspect_trained_restorer, i_task, i_rest
                                   ).then(_start_dropdown, t_task, t_start).then(_stopped_runs, None, [t_resume_box, t_run])
                demo.load(_stopped_runs, None, [t_resume_box, t_run])  # a reload lists runs stopped since start-up
                t_task.change(_start_dropdown, t_task, t_start)
                t_stop.click(train_tab.request_stop, None, t_status, api_name="stop")
                t_released.click(_released_weights, None, [t_gamma, t_lam])
                t_calibrate.click(on_gpu("calibrate")(train_tab.calibrate_weights),
                                  [t_task, t_crop, t_tmin, t_tmax, t_prior, t_gamma, t_lam, t_nat_share, t_sem_share,
                                   t_start],
                                  [t_gamma, t_lam, t_calibration], api_name="calibrate")
            # -------------------------------------------------------------------------------- Degradations
            with gr.Tab("Degradations"):
                with gr.Row():
                    with gr.Column():
                        image = UploadImage(value=photo, type="filepath", image_mode=None, label="Clean photo")
                        d_examples = _examples([image], clean_rows, "Clean photos")
                        task = gr.Dropdown(TASKS, value="noise", label="Task")
                        seed = gr.Number(value=0, precision=0, label="Seed")
                        go = gr.Button("Degrade", variant="primary")
                    with gr.Column():
                        clean_out = gr.Image(label="Clean (cropped to the task's size multiple)", format="png")
                        degraded_out = gr.Image(label="What the restorer sees", format="png")
                        note = gr.Markdown()
                go.click(preview_degradation, [image, task, seed], [clean_out, degraded_out, note])
                _run_on_example(d_examples, preview_degradation, [image, task, seed], [clean_out, degraded_out, note])
    return hosting.guard_demo(demo, hosting.server_roots()) if hosting.is_hosted() else demo


def allowed_paths() -> list[str]:
    """Folders the app may serve files from: examples, and runs (downloads) on one's own machine only (hosted, a
    download is served from gradio's cache to the visitor who trained it)."""
    registry = get_registry()
    paths = [] if hosting.is_hosted() else [registry.runs]
    paths += [p.parent for p in registry.example_images()[:1]]
    return [str(p) for p in paths]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="DiffLoss Studio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link")
    parser.add_argument("--public", action="store_true", help="hosted mode, as on a Space (see README)")
    args = parser.parse_args(argv)
    if args.public:
        hosting.enable_public()
    removed = remove_interrupted_saves(get_registry().runs)  # saves a kill cut short: no run is going yet
    if removed:
        print(f"Removed {len(removed)} temporary file(s) of saves interrupted in an earlier session.")
    demo = build_demo().queue()
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, allowed_paths=allowed_paths(),
                prevent_thread_lock=True, **hosting.launch_options())
    # Serve first, then warm up (diffusers, the prior): a warm-up thread beside build_demo and launch competed with
    # them for the GIL, and the page came up later (bench/results/figures-from-comments.md).
    get_registry().warm_up()
    stop_on_signals()  # SIGTERM (a Space restart) and a SIGINT a background shell ignored end the app like Ctrl-C
    demo.block_thread()  # returns after Ctrl-C, the server closed
    unsaved = train_tab.stop_for_shutdown()
    if unsaved:
        print(f"Train run: the {' and '.join(unsaved)} arm did not stop in time; its last periodic checkpoint stays.")


def _exit_without_teardown() -> None:
    """End the process once main() is done (Ctrl-C; Train runs already saved), skipping the interpreter's teardown.

    Why: gradio's worker threads are daemons and may still be inside torch when a normal shutdown destroys torch's
    C++ state; that aborted the process ("terminate called without an active exception", exit -6) in a CI run.
    Everything worth keeping is on disk by now (checkpoints are written atomically and fsync'd).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
    _exit_without_teardown()
