"""The README's training commands run as the Train tab does on a CPU, and show progress from the first step with
the time left (issue #27 point 3)."""

from __future__ import annotations

import re
import shlex

import gradio as gr
import pytest
import torch

from diffloss import pair, train_cli
from diffloss.paths import REPO
from diffloss.train_config import CPU_DEFAULTS
from tests.helpers import tiny_prior
from tests.studio_helpers import make_world


def _readme_command(what: str) -> list[str]:
    """The README's ``python -m diffloss.train <what> ...`` command (continuation lines joined), as argv."""
    text = (REPO / "README.md").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if f"python -m diffloss.train {what} " in ln)
    argv = shlex.split(line.split("#")[0].split(f"python -m diffloss.train ", 1)[1])
    return argv


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _train_tab_boxes(tmp_path) -> dict[str, float]:
    """What the Train tab's batch, crop, prior sub-crop and prior-photos boxes hold on this machine."""
    from studio import train_ui
    from studio.widgets import PageStart

    world = make_world(tmp_path)
    with gr.Blocks() as page:
        train_ui.build(page, PageStart(registry=world.registry, photo=world.photo))
    numbers = {b.label.split(" (")[0]: b.value for b in page.blocks.values() if isinstance(b, gr.Number)}
    return {"batch": numbers["Batch"], "crop": numbers["Crop px"], "prior_crop": numbers["Prior sub-crop px"],
            "prior_samples": numbers["Prior on how many photos of a batch"]}


def test_the_readme_pair_command_on_a_cpu_trains_with_the_train_tabs_settings(tmp_path, cpu_only):
    tab = _train_tab_boxes(tmp_path)
    # the prior on the whole crop of every photo: the sub-crop settings trained worse (CpuDefaults' docstring)
    assert tab == {"batch": CPU_DEFAULTS.batch, "crop": CPU_DEFAULTS.crop, "prior_crop": 0, "prior_samples": 0}
    args = train_cli.build_parser().parse_args(_readme_command("pair"))
    cfg = train_cli.config_from_args(args)
    assert (cfg.loop.batch_size, cfg.crop) == (tab["batch"], tab["crop"])
    assert cfg.loss.prior_crop is None and cfg.loss.prior_samples is None  # the tab's 0: the whole of it
    arms = pair.arm_configs(cfg, tmp_path / "run", "cmd")
    assert {(c.loop.batch_size, c.crop, c.loss.prior_crop, c.loss.prior_samples) for c in arms.values()} == {
        (4, 64, None, None)}
    one = train_cli.config_from_args(train_cli.build_parser().parse_args(_readme_command("restorer")))
    assert (one.loop.batch_size, one.crop, one.loss.prior_crop, one.loss.prior_samples) == (4, 64, None, None)


def test_settings_given_on_the_command_line_win_and_0_means_the_whole_crop(cpu_only):
    argv = ["pair", "--task", "noise", "--clean", "x", "--out", "o"]

    def config(*more: str):
        return train_cli.config_from_args(train_cli.build_parser().parse_args(argv + list(more)))

    cfg = config("--batch", "8", "--crop", "96", "--prior-crop", "48", "--prior-samples", "3")
    assert (cfg.loop.batch_size, cfg.crop, cfg.loss.prior_crop, cfg.loss.prior_samples) == (8, 96, 48, 3)
    assert (config("--prior-crop", "0").loss.prior_crop, config("--prior-samples", "0").loss.prior_samples) == (
        None, None)  # 0: the whole crop, every photo
    assert config("--crop", "32", "--prior-crop", "32").loss.prior_crop is None  # as large as the crop: all of it
    assert config("--batch", "2", "--prior-samples", "2").loss.prior_samples is None  # the whole batch


def test_with_cuda_the_defaults_stay_the_full_crop(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = train_cli.config_from_args(train_cli.build_parser().parse_args(
        ["pair", "--task", "noise", "--clean", "x", "--out", "o"]))
    assert (cfg.loop.batch_size, cfg.crop, cfg.loss.prior_crop, cfg.loss.prior_samples) == (8, 96, None, None)
    cfg = train_cli.config_from_args(train_cli.build_parser().parse_args(
        ["pair", "--task", "noise", "--clean", "x", "--out", "o", "--device", "cpu"]))
    assert (cfg.loop.batch_size, cfg.crop, cfg.loss.prior_crop, cfg.loss.prior_samples) == (4, 64, None, None)


def test_a_progress_line_says_the_pace_and_the_time_left():
    line = train_cli.progress_line("l2", 10, 200, {"total": 0.01234, "lr": 1e-3}, elapsed=20.0)
    assert line.startswith("l2: step 10/200 total 0.01234") and "lr" not in line
    assert "2.0 s per step of both arms" in line and "about 6.3 min left" in line
    resumed = train_cli.progress_line("diffloss", 110, 200, {}, elapsed=10.0, done_before=100)
    assert "1.0 s per step of both arms" in resumed and "about 1.5 min left" in resumed


def test_the_pair_command_prints_progress_from_the_first_step(tmp_path, capsys, cpu_only):
    clean = tmp_path / "clean"
    from diffloss.images import save_image

    for i in range(2):
        save_image(torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(i)), clean / f"{i}.png")
    tiny_prior().save_pretrained(tmp_path / "prior")
    code = train_cli.main(["pair", "--task", "noise", "--clean", str(clean), "--prior", str(tmp_path / "prior"),
                           "--width", "8", "--crop", "32", "--batch", "2", "--steps", "3", "--log-every", "10",
                           "--threads", "1", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0
    assert "batch 2, crop 32, prior terms on the whole crop, 3 steps" in out
    for arm in ("l2", "diffloss"):
        first = re.search(rf"^{arm}: step 1/3 .*about .* left\)$", out, re.M)
        assert first, out
    assert out.index("l2: step 1/3") < out.index("l2: step 3/3")
