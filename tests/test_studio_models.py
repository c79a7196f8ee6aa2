"""The model registry: what the studio finds, how it says what is missing, and that it loads each model once."""

from __future__ import annotations

import threading

import pytest
import torch

from diffloss import nets
from diffloss.prior import PriorLoadError
from studio.models import Registry
from tests.studio_helpers import make_world


def test_an_empty_install_says_what_is_missing_and_how_to_get_it(tmp_path):
    reg = Registry(tmp_path / "pretrained", tmp_path / "runs", examples=None)
    assert reg.restorers() == []
    text = reg.status()
    assert "No shipped restorers yet" in text and "Train tab" in text
    assert "No shipped prior" in text and "diffloss.train prior" in text
    with pytest.raises(PriorLoadError, match="no shipped prior"):
        reg.load_prior("")


def test_shipped_pairs_and_trained_runs_are_found_by_task_and_arm(tmp_path):
    world = make_world(tmp_path)
    reg = world.registry
    model = nets.Restorer(nets.RestorerConfig(task="noise", width=8))
    nets.save_restorer(model, reg.runs / "cli-noise-l2" / "model", card={"data": {"diffloss": False}})
    nets.save_restorer(model, reg.runs / "pair" / "diffloss" / "model")
    (reg.runs / "half-written").mkdir()  # no model inside: ignored
    labels = [e.label for e in reg.restorers("noise")]
    assert labels[:2] == ["shipped noise l2", "shipped noise diffloss"]
    assert "run cli-noise-l2 (l2)" in labels and "run pair diffloss" in labels
    assert reg.restorers("sr4") == []
    assert reg.default_pair("noise") == ("shipped noise l2", "shipped noise diffloss")
    assert "Shipped restorers: 2" in reg.status()


def test_models_load_once_even_when_asked_from_two_threads(tmp_path):
    reg = make_world(tmp_path).registry
    entry = reg.restorers("noise")[0]
    got = []
    threads = [threading.Thread(target=lambda: got.append(reg.load_restorer(entry.path))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(m is got[0] for m in got)
    assert reg.load_prior("") is reg.load_prior(str(reg.shipped_prior_path))


def test_an_unloadable_prior_id_is_a_prior_load_error(tmp_path):
    reg = make_world(tmp_path).registry
    with pytest.raises(PriorLoadError):
        reg.load_prior(str(tmp_path / "nowhere"))
    (tmp_path / "notaprior").mkdir()
    with pytest.raises(PriorLoadError, match="no UNet2DModel"):
        reg.load_prior(str(tmp_path / "notaprior"))


def test_the_shipped_examples_are_attributed_and_offered_with_the_right_mode():
    from studio import upload
    from studio.models import REPO

    files = Registry(examples=REPO / "examples").example_images()
    readme = (REPO / "examples" / "README.md").read_text()
    assert len(files) >= 4
    for path in files:
        assert f"`{path.name}`" in readme  # every example image names its source
    rows = {row[0].split("/")[-1]: row[1:] for row in upload.example_rows(files)}
    assert rows["haze_sots_1430_7.png"][:2] == ["haze", upload.MODES[2]]  # with its ground truth: a real pair
    assert rows["lowlight_lime_3.png"] == ["lowlight", upload.MODES[1], None]
    assert rows["clean_mcmaster_05.png"] == ["noise", upload.MODES[0], None]
    for gt in (REPO / "examples" / "ground_truth").iterdir():
        assert f"`ground_truth/{gt.name}`" in readme


def test_runs_go_where_diffloss_runs_says(tmp_path, monkeypatch):
    from studio.models import REPO, runs_folder

    monkeypatch.delenv("DIFFLOSS_RUNS", raising=False)
    assert runs_folder() == REPO / "runs" and Registry(tmp_path / "p").runs == REPO / "runs"
    monkeypatch.setenv("DIFFLOSS_RUNS", str(tmp_path / "persistent"))  # e.g. a Space's /data
    assert Registry(tmp_path / "p").runs == tmp_path / "persistent"
    assert Registry(tmp_path / "p", tmp_path / "given").runs == tmp_path / "given"  # an explicit folder wins


def test_every_tab_opens_with_a_clean_example_never_a_degraded_one(tmp_path, monkeypatch):
    from diffloss.images import save_image

    monkeypatch.setenv("DIFFLOSS_DATASETS", str(tmp_path / "nowhere"))
    examples = tmp_path / "examples"
    for name in ("haze_a.png", "clean_b.png", "clean_c.png"):
        save_image(torch.rand(3, 16, 16), examples / name)
    assert Registry(tmp_path / "p", tmp_path / "r", examples=examples).first_clean_example() == examples / "clean_b.png"
    (examples / "clean_b.png").unlink()
    (examples / "clean_c.png").unlink()
    assert Registry(tmp_path / "p", tmp_path / "r", examples=examples).first_clean_example() is None  # only hazy
    assert Registry(tmp_path / "p", tmp_path / "r", examples=None).first_clean_example() is None


def test_weights_are_calibrated_on_validation_photos_never_on_degraded_examples(tmp_path, monkeypatch):
    from diffloss.images import save_image
    from studio.models import REPO

    monkeypatch.setenv("DIFFLOSS_DATASETS", str(tmp_path / "datasets"))
    shipped = Registry(tmp_path / "pretrained", tmp_path / "runs", examples=REPO / "examples")
    names = [p.name for p in shipped.calibration_images()]
    assert "clean_mcmaster_05.png" in names and len(names) == 3  # the clean examples only
    assert not any(n.startswith(("haze_", "rain_", "lowlight_")) for n in names)
    val = tmp_path / "datasets" / "clean" / "val"
    save_image(torch.rand(3, 16, 16), val / "a.png")
    assert [p.name for p in shipped.calibration_images()] == ["a.png"]  # the benchmark's validation set first
    assert Registry(tmp_path / "p", tmp_path / "r", examples=None).calibration_images() == [val / "a.png"]
    monkeypatch.setenv("DIFFLOSS_DATASETS", str(tmp_path / "nowhere"))
    assert Registry(tmp_path / "p", tmp_path / "r", examples=None).calibration_images() == []


def test_warm_up_loads_the_shipped_prior_in_the_background_once(tmp_path):
    reg = make_world(tmp_path).registry
    reg.warm_up().join(timeout=120)
    assert len(reg._priors) == 1
    warmed = next(iter(reg._priors.values()))
    assert reg.load_prior(None) is warmed  # Inspect gets the warmed prior, no second load


def test_warm_up_without_a_shipped_prior_does_nothing_and_never_raises(tmp_path):
    reg = Registry(tmp_path / "pretrained", tmp_path / "runs", examples=None)
    reg.warm_up().join(timeout=30)
    assert reg._priors == {}


def test_the_apps_start_up_leaves_the_slow_imports_to_the_warm_up_thread():
    """diffusers (~4 s), scipy.stats (~1.2 s), matplotlib and skimage's SSIM (~0.5 s each), scipy's ndimage and
    special for NIQE (~0.25 s) on 2 cores: importing the app must not pay for them; Registry.warm_up loads them
    in the background."""
    import subprocess
    import sys
    from pathlib import Path

    from studio.models import WARM_IMPORTS

    heavy = ("diffusers", "scipy.stats", *WARM_IMPORTS)
    code = f"import sys, app; print([m for m in {heavy!r} if m in sys.modules])"
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo)
    assert out.stdout.strip() == "[]"
