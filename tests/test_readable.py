"""Words baked into pictures show at >= 11 px where the page puts them at 1440x900 (issue #27 point 2): every grid
Inspect draws (two to a row, ~390 CSS px each) writes its labels large enough for the size it will be shown at."""

from __future__ import annotations

import pytest

from studio import inspect_tab, readable
from tests.helpers import texts_under_11_px
from tests.studio_helpers import make_world


def test_label_px_is_the_plain_size_when_a_picture_fits_and_grows_with_its_scaling():
    assert readable.label_px(300, readable.HALF) == readable.LABEL_PX
    for width in (391, 524, 784, 1600):
        assert readable.label_px(width, readable.HALF) * readable.HALF / width >= readable.LABEL_PX - 0.5


@pytest.mark.parametrize("side", [32, 64])
def test_every_inspect_label_shows_at_11_px_or_more(tmp_path, monkeypatch, side):
    world = make_world(tmp_path)
    drawn = []
    real_grid = inspect_tab.image_grid
    real_maps = inspect_tab.heatmaps_on_one_scale

    def grid(*args, **kwargs):
        picture = real_grid(*args, **kwargs)
        drawn.append((picture.shape[1], kwargs.get("font_size", 12)))
        return picture

    def maps(*args, **kwargs):
        picture, tiles, vmax = real_maps(*args, **kwargs)
        drawn.append((picture.shape[1], kwargs.get("font_size", 12)))
        return picture, tiles, vmax

    monkeypatch.setattr(inspect_tab, "image_grid", grid)
    monkeypatch.setattr(inspect_tab, "heatmaps_on_one_scale", maps)
    dl = world.labels()[1]
    inspect_tab.inspect(str(world.photo), "noise", 0, dl, inspect_tab.PAIRS[0], 40, 1, "", side=side,
                        registry=world.registry)
    assert len(drawn) == 6  # x_t, eps, x0, h maps, h error, gradient
    for width, font in drawn:
        shown = min(1.0, readable.HALF / width)
        assert font * shown >= 11, (width, font)


def test_gradio_buttons_sit_on_white_over_every_inspect_view_and_compare_grid(tmp_path):
    """The buttons gradio draws over a picture's top right corner (download, full screen) cover no pixel of it."""
    import numpy as np
    import torch

    from studio import compare_tab

    world = make_world(tmp_path)
    r = inspect_tab.inspect(str(world.photo), "noise", 0, world.labels()[1], inspect_tab.PAIRS[0], 40, 1, "",
                            side=32, registry=world.registry)
    images = {n: torch.rand(3, 64, 64) for n in ("degraded input", "L2 arm", "DiffLoss arm", "ground truth")}
    views = [r.x_t, r.eps, r.x0, r.h_pca, r.h_error_view, r.gradient_view,
             compare_tab.zoom_crops(images, 0.5, 0.5, 32),
             compare_tab.error_maps({"L2 arm": images["L2 arm"], "DiffLoss arm": images["DiffLoss arm"]},
                                    images["ground truth"])]
    for view in views:
        assert (np.asarray(view)[: readable.TOOLBAR_PX] == 255).all()


def test_the_l_of_t_figure_text_shows_at_11_px_across_the_page(monkeypatch):
    """Inspect's L(t) plot spans the page, about 1220 CSS px at 1440x900 (1440 less the page's margins)."""
    import numpy as np

    from diffloss import viz
    from diffloss.inspection import CurveStats, LossCurves

    captured = {}
    monkeypatch.setattr(viz, "figure_to_array", lambda fig: captured.setdefault("fig", fig) and np.zeros((2, 2, 3)))
    t = list(range(0, 1000, 100))
    series = {name: CurveStats.from_samples(np.linspace(1, 2, 3 * len(t)).reshape(len(t), 3) + k)
              for k, name in enumerate(("restored vs GT", "degraded vs GT"))}
    viz.loss_curve_figure(LossCurves(timesteps=t, seeds=[0, 1, 2], nat=series, sem=series), note="64x64 px centre crop",
                          dose=(np.ones(1000), "uniform, t in [0, 999]"))
    texts, small = texts_under_11_px(captured["fig"], 1220)
    assert texts and not small, small
