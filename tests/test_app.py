"""The app's handlers, called directly (no browser): they use the library and fail with readable messages."""

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from app import build_demo
from studio.degrade_tab import preview_degradation
from diffloss.images import save_image


def test_preview_degrades_an_upload(tmp_path):
    path = tmp_path / "photo.png"
    save_image(torch.rand(3, 50, 70), path)
    clean, degraded, note = preview_degradation(str(path), "sr4", 3)
    assert clean.shape == degraded.shape == (48, 68, 3)
    assert "sr4" in note


def test_preview_without_an_image_asks_for_one():
    with pytest.raises(gr.Error, match="Upload"):
        preview_degradation(None, "noise", 0)


def test_preview_of_a_corrupt_file_says_so(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(gr.Error, match="broken.png"):
        preview_degradation(str(path), "noise", 0)


def test_preview_checks_an_upload_as_compare_does(tmp_path):
    """The same checks as Compare's (upload.prepare_case): too small refused, what loading changed said."""
    tiny = tmp_path / "tiny.png"
    save_image(torch.rand(3, 8, 40), tiny)
    with pytest.raises(gr.Error, match="too small"):
        preview_degradation(str(tiny), "noise", 0)
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((32, 32), 128, dtype=np.uint8), mode="L").save(grey)
    _, degraded, note = preview_degradation(str(grey), "noise", 0)
    assert degraded.shape == (32, 32, 3) and "greyscale" in note


def test_the_page_builds():
    assert isinstance(build_demo(), gr.Blocks)


def test_moving_an_inspect_control_redoes_inspect_only_once_there_is_a_photo():
    from studio.widgets import again as _again

    calls = []
    again = _again(lambda *args: calls.append(args) or ("ran",), 7)
    skipped = again(None, "noise", 0)
    assert len(skipped) == 7 and all(s == gr.skip() for s in skipped) and calls == []
    assert again("photo.png", "noise", 0) == ("ran",) and calls == [("photo.png", "noise", 0)]


def test_weights_t_seed_pair_and_the_no_grad_toggle_each_redo_inspect():
    demo = build_demo()
    config = demo.get_config_file()
    labels = {c["id"]: c["props"].get("label", "") for c in config["components"]}
    redo = [d for d in config["dependencies"] if len(d["targets"]) == 15]  # every Inspect control, one event
    assert len(redo) == 1 and redo[0]["trigger_mode"] == "always_last"
    triggers = {(labels[i].split(" (")[0], event) for i, event in redo[0]["targets"]}
    assert triggers == {("gamma", "submit"), ("lambda", "submit"), ("Reproduce the released code's no_grad mistake",
                        "input"), ("Pair", "input"), ("timestep t", "release"), ("Noise seed", "submit"),
                        ("Degradation seed", "submit"), ("Restorer", "input"), ("Centre crop", "release"),
                        ("Weight of each t", "input"), ("Gradient", "input"),
                        ("Normalise each sample's prior gradient", "input"),
                        ("Cap: prior gradient <= this x fidelity's", "submit"), ("t band: from", "submit"),
                        ("t band: to", "submit")}
