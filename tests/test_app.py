"""The app's handlers, called directly (no browser): they use the library and fail with readable messages."""

import gradio as gr
import pytest
import torch

from app import build_demo, preview_degradation
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


def test_the_page_builds():
    assert isinstance(build_demo(), gr.Blocks)
