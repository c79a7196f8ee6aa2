"""A Train run in Compare (issue #27 point 1) and Compare's figures readable at 1440x900 (point 2), built and
called without a browser (tests/test_browser.py's screens show the same in chromium)."""

from __future__ import annotations

import shutil

import gradio as gr
import numpy as np
import pytest
import torch

from studio import compare_tab, compare_ui, family_view, upload
from studio.widgets import PageStart, kept_or_default_pair
from tests.studio_helpers import make_world

RUN = "studio-noise-20261206-000000"


@pytest.fixture
def world(tmp_path):
    from studio.models import set_registry

    w = make_world(tmp_path)
    set_registry(w.registry)
    yield w
    set_registry(None)


def _add_train_run(world) -> tuple[str, str]:
    """A pair laid out as the Train tab writes it (runs/<name>/{l2,diffloss}/model), made after the page was."""
    for arm in ("l2", "diffloss"):
        shutil.copytree(world.root / "pretrained" / "restorers" / "noise" / arm, world.registry.runs / RUN / arm / "model")
    return f"run {RUN} l2", f"run {RUN} diffloss"


def _built(world) -> tuple[gr.Blocks, compare_ui.CompareUI]:
    with gr.Blocks() as page:
        ui = compare_ui.build(page, PageStart(registry=world.registry, photo=world.photo,
                                              rows=upload.example_rows(world.registry.example_images())))
    return page, ui


def test_a_train_run_made_after_the_page_was_built_is_in_the_arm_lists_at_the_next_page_load(world):
    page, ui = _built(world)
    assert not any(c[0].startswith("run ") for c in ui.l2.choices)  # not there when the page was built
    labels = _add_train_run(world)
    loads = [fn for fn in page.fns.values() if any(t[1] == "load" for t in fn.targets)
             and {id(ui.l2), id(ui.dl)} <= {id(o) for o in fn.outputs}]
    assert len(loads) == 1, "a page load refreshes Compare's arm lists"
    l2, dl = loads[0].fn("noise")
    assert set(labels) <= set(l2["choices"]) and set(labels) <= set(dl["choices"])


def test_clicking_an_example_keeps_the_arms_the_person_chose(world):
    run_l2, run_dl = _add_train_run(world)
    l2, dl = kept_or_default_pair("noise", run_l2, run_dl)
    assert (l2["value"], dl["value"]) == (run_l2, run_dl)
    shipped = world.labels()
    l2, dl = kept_or_default_pair("noise", "run gone l2", None)  # no longer there: the task's default pair
    assert (l2["value"], dl["value"]) == shipped
    page, ui = _built(world)
    steps = [fn for fn in page.fns.values() if fn.fn is kept_or_default_pair]
    assert steps and all({id(ui.task), id(ui.l2), id(ui.dl)} <= {id(i) for i in fn.inputs} for fn in steps)
    assert not any(getattr(fn.fn, "__name__", "") == "restorer_dropdowns" and any(t[1] == "load_input" for t in fn.targets)
                   for fn in page.fns.values())


REPORT = {"tasks": {"noise": {"pd_points": {a: {"psnr": 27 + i * 0.2, "niqe": 4.4 - i * 0.05}
                                            for i, a in enumerate(("l2", "moderate", "strong", "jacobian-free"))}}}}


def test_the_family_plot_says_plainly_which_arm_on_show_it_cannot_place_and_why(world):
    plain = family_view.pd_figure(REPORT, "noise", ("l2",))
    noted = family_view.pd_figure(REPORT, "noise", ("l2",), (f"run {RUN} diffloss",))
    assert noted.shape[1] == plain.shape[1] and noted.shape[0] > plain.shape[0]  # a note under the same plot
    note = family_view.unplaced_note((f"run {RUN} diffloss",))
    assert f"'run {RUN} diffloss'" in note and "not measured there" in note and "Evaluate both" in note
    run_l2, run_dl = _add_train_run(world)
    world.registry.report_file.write_text(__import__("json").dumps(REPORT))
    result = compare_tab.compare(str(world.photo), "noise", "degrade it for me", 0, run_l2, run_dl,
                                 registry=world.registry)
    assert "Not on this plot" in result.notes and run_dl in result.notes
    assert result.family_plot.shape[0] > family_view.pd_figure(REPORT, "noise").shape[0]


# ------------------------------------------------------------------------------------------------ figures
COLUMN_HALF = 390  # the family plot's box in Compare at 1440x900, CSS px (measured in chromium)
TOOLBAR = 72  # gradio's download and fullscreen buttons over a picture's top right corner, CSS px


def test_the_family_plot_text_is_11_px_on_screen_its_legend_off_the_data_and_its_title_clear_of_the_buttons():
    from diffloss.zoo_report import _perception_distortion_figure

    points = family_view.pd_points(REPORT, "noise")
    fig = _perception_distortion_figure(points, "noise: the family", ("l2",))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width = fig.bbox.width
    shown = min(1.0, COLUMN_HALF / width)
    texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_fontsize") and hasattr(a, "get_text"))
             if t.get_text().strip() and t.get_visible()]
    assert texts
    for t in texts:
        assert t.get_fontsize() * fig.dpi / 72 * shown >= 11, (t.get_text(), t.get_fontsize())
    ax = fig.axes[0]
    legend = fig.legends[0] if fig.legends else ax.get_legend()
    assert legend.get_window_extent(renderer).y1 <= ax.get_window_extent(renderer).y0  # below the axes
    title = ax.title.get_window_extent(renderer)
    assert title.x1 <= width - TOOLBAR / shown and title.x0 >= 0  # not cut, not under the buttons


def test_error_maps_share_one_scale_with_a_colour_bar_and_fit_the_column(world):
    import matplotlib

    gt = torch.rand(3, 900, 1200, generator=torch.Generator().manual_seed(0))
    outputs = {"L2 arm": (gt + 0.05).clamp(0, 1), "DiffLoss arm": (gt - 0.2).clamp(0, 1)}
    picture = compare_tab.error_maps(outputs, gt)
    assert picture.shape[1] <= compare_tab.SHOWN_WIDTH  # shown at its own size: 13 px labels stay 13 px
    inferno = matplotlib.colormaps["inferno"]
    top, bottom = (np.round(np.array(inferno(v)[:3]) * 255) for v in (1.0, 0.0))
    column = picture[:, 5].astype(float)  # the colour bar runs down the picture's left edge
    assert np.abs(column - top).sum(axis=1).min() < 8 and np.abs(column - bottom).sum(axis=1).min() < 8


def test_zoom_labels_stay_readable_for_a_large_crop():
    images = {n: torch.rand(3, 512, 512) for n in ("degraded input", "L2 arm", "DiffLoss arm", "ground truth")}
    small = compare_tab.zoom_crops(images, 0.5, 0.5, 64)
    large = compare_tab.zoom_crops(images, 0.5, 0.5, 256)
    assert small.shape[1] <= compare_tab.SHOWN_WIDTH
    assert compare_tab.label_px(large.shape[1]) * compare_tab.SHOWN_WIDTH / large.shape[1] >= 11
    assert compare_tab.label_px(small.shape[1]) >= 11


def test_compare_outputs_are_pictures_not_upload_boxes(world):
    page, ui = _built(world)
    [run] = [fn for fn in page.fns.values() if fn.api_name == "compare"]
    pictures = [o for o in run.outputs if isinstance(o, (gr.Image, gr.ImageSlider))]
    assert len(pictures) >= 8
    assert all(p.interactive is False for p in pictures), [p.label for p in pictures if p.interactive is not False]


def test_the_examples_table_has_three_columns_and_a_real_pair_still_gets_its_ground_truth(tmp_path, monkeypatch):
    """Four columns (with the ground truth's thumbnail) made the table wider than its column at 1440x900 and cut
    its "Ground truth" header; the ground truth is now set from the clicked photo's name."""
    from diffloss.paths import EXAMPLES
    from studio.models import Registry

    monkeypatch.setenv("DIFFLOSS_DATASETS", str(tmp_path / "none"))
    shipped = Registry(tmp_path / "p", tmp_path / "r", examples=EXAMPLES)
    copy = tmp_path / "gradio-cache" / "ab12" / "rain_rain100l_1.png"  # what gradio hands over for a clicked example
    copy.parent.mkdir(parents=True)
    shutil.copy(EXAMPLES / "rain_rain100l_1.png", copy)
    assert compare_tab.example_ground_truth(str(copy), shipped) == str(EXAMPLES / "ground_truth" / "rain_rain100l_1.png")
    assert compare_tab.example_ground_truth(str(EXAMPLES / "clean_set5_img_002.png"), shipped) is None
    assert compare_tab.example_ground_truth(None, shipped) is None
    rows = upload.example_rows(shipped.example_images())
    with gr.Blocks() as page:
        ui = compare_ui.build(page, PageStart(registry=shipped, photo=None, rows=rows))
    [dataset] = [b for b in page.blocks.values() if isinstance(b, gr.Dataset)]
    assert len(dataset._components) == 3
    [step] = [fn for fn in page.fns.values() if fn.fn is compare_tab.example_ground_truth]
    assert [o._id for o in step.outputs] == [ui.ground_truth._id]


def test_inspect_offers_a_train_run_made_after_the_page_was_built_at_the_next_page_load(world):
    from studio import inspect_ui

    with gr.Blocks() as page:
        ui = inspect_ui.build(page, PageStart(registry=world.registry, photo=world.photo))
    _, run_dl = _add_train_run(world)
    loads = [fn for fn in page.fns.values() if any(t[1] == "load" for t in fn.targets)
             and [o._id for o in fn.outputs] == [ui.restorer._id]]
    assert len(loads) == 1
    assert run_dl in loads[0].fn("noise")["choices"]
