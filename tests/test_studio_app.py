"""The app itself: launched on a free local port and driven over HTTP with gradio_client, as a browser would."""

from __future__ import annotations

import pytest
from gradio_client import Client, handle_file

from studio import inspect_tab, restorers, train_tab, upload
from tests.studio_helpers import launched_studio


@pytest.fixture
def client(tmp_path):
    with launched_studio(tmp_path) as (url, world):
        yield Client(url, verbose=False), world


def test_compare_inspect_and_a_short_train_run_over_http(client):
    c, world = client
    l2, dl = world.labels()
    photo = handle_file(str(world.photo))
    out = c.predict(photo, "noise", upload.MODES[0], 0, l2, dl, 0.5, 0.5, 32, api_name="/compare")
    degraded, out_l2, out_dl, slider, zoom, err, metrics, notes = out[:8]  # then the family view's
    assert str(degraded).endswith(".png") and str(out_l2).endswith(".png")
    assert all(str(p).endswith(".png") for p in slider)  # PNG, not lossy WebP, so the slider compares truly
    assert "PSNR" in metrics and "Conventions" in metrics
    evaluation = c.predict("noise", l2, dl, 2, api_name="/evaluate")
    assert "| diffloss |" in evaluation and "DiffLoss arm better than the L2 arm on" in evaluation
    values = c.predict(photo, "noise", 0, dl, inspect_tab.PAIRS[0], 20, 0, "", True, 0.05, 0.1, 32, api_name="/inspect")[-1]
    assert "exactly zero" in values
    gamma, lam, report = c.predict("noise", 32, 0, 99, "", 0.05, 0.1, 0.2, 0.1, api_name="/calibrate")
    assert gamma > 0 and lam > 0 and "**calibrated** for L_nat 20% and L_sem 10%" in report
    status, curves, archive, *_ = c.predict("noise", 5, 1, 32, 1e-3, gamma, lam, 0, 99, 0, "", str(world.clean), 16, l2,
                                        api_name="/train")  # the 5-step run
    assert status.startswith("**Done**") and str(archive).endswith(".zip")
    assert "l2: `[####################]` step 5/5" in status and "diffloss: `[####################]` step 5/5" in status
    assert f"both arms start from `{l2}`" in status
    assert [e.arm for e in world.registry.restorers("noise") if e.source == "run"] == ["l2", "diffloss"]


def test_a_bad_upload_comes_back_as_an_error_message_not_a_crash(client, tmp_path):
    c, world = client
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    l2, dl = world.labels()
    with pytest.raises(Exception, match="Could not read"):
        c.predict(handle_file(str(bad)), "noise", upload.MODES[0], 0, l2, dl, 0.5, 0.5, 32, api_name="/compare")


def test_uploads_reach_the_handler_untouched_so_transparency_is_composited_over_white(client, tmp_path):
    import numpy as np
    from PIL import Image

    c, world = client
    path = tmp_path / "alpha.png"
    Image.fromarray(np.zeros((32, 32, 4), np.uint8)).save(path)  # transparent black: white once composited
    l2, dl = world.labels()
    out = c.predict(handle_file(str(path)), "noise", upload.MODES[1], 0, l2, dl, 0.5, 0.5, 32, api_name="/compare")
    assert np.asarray(Image.open(out[0])).min() == 255
    assert "transparency composited over white" in out[7]  # the notes


def test_stop_over_http_ends_a_running_train_job(client):
    import time

    c, world = client
    job = c.submit("noise", 300, 1, 32, 1e-3, 0.05, 0.1, 0, 99, 0, "", str(world.clean), api_name="/train")
    deadline = time.time() + 60
    while len(job.outputs()) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert c.predict(api_name="/stop").startswith("Stopping")
    status = job.result(timeout=60)[0]
    assert status.startswith("**Stopped**")
    assert not train_tab._TRAIN_LOCK.locked()
    [(label, name)] = train_tab.stopped_runs(world.registry)
    resumed = c.submit(name, api_name="/resume")  # and it goes on where it stopped
    while len(resumed.outputs()) < 2 and time.time() < deadline + 60:
        time.sleep(0.2)
    assert c.predict(api_name="/stop").startswith("Stopping")
    status = resumed.result(timeout=60)[0]
    assert status.startswith("**Stopped**") and "l2: resumed at step" in status and "diffloss: resumed at step" in status


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_the_readme_command_serves_the_shipped_studio_and_a_stop_saves_a_running_train_run(tmp_path, stop):
    """``python app.py --port P`` as a user runs it: the page comes up, Compare works on a shipped example with
    the shipped restorers; Ctrl-C (SIGINT, here with the app started as ``nohup python app.py &`` starts it:
    SIGINT ignored) or SIGTERM (a Space restart) in the middle of a Train run closes the server and exits cleanly,
    and both arms save a checkpoint on the way out (before any periodic save was due: nothing trained is lost)."""
    import os
    import re
    import signal
    import time
    from pathlib import Path

    from bench.studio_speed import served_app
    from diffloss.run_folder import read_checkpoint_meta
    from studio.models import REPO, Registry
    from tests.studio_helpers import make_world

    registry = Registry()
    l2, dl = registry.default_pair("noise")
    if l2 is None or dl is None:
        pytest.skip("no shipped noise restorers in pretrained/ (this checkout has not got the zoo)")
    clean, runs = make_world(tmp_path / "world", with_prior=False, with_restorers=False).clean, tmp_path / "runs"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "DIFFLOSS_RUNS": str(runs)}
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the app, as from a background shell
    try:
        with served_app(env, timeout=180) as (url, _, proc):
            signal.signal(signal.SIGINT, previous)
            client = Client(url, verbose=False)
            photo = Path(REPO, "examples", "clean_mcmaster_05.png")
            out = client.predict(handle_file(str(photo)), "noise", upload.MODES[0], 0, l2, dl, 0.5, 0.5, 32,
                                 api_name="/compare")
            assert "PSNR" in out[6]
            job = client.submit("noise", 300, 1, 32, 1e-3, 0.05, 0.1, 0, 999, 0, "", str(clean), 0,
                                restorers.FRESH_START, api_name="/train")
            deadline = time.time() + 120
            while not any(re.search(r"step [1-9]\d*/300", o[0]) for o in job.outputs()) and time.time() < deadline:
                time.sleep(0.2)  # until a step is logged (every 5th of 300)
            proc.send_signal(getattr(signal, stop))
            assert proc.wait(timeout=60) == 0
    finally:
        signal.signal(signal.SIGINT, previous)
    (run,) = runs.iterdir()
    for arm in ("l2", "diffloss"):
        step = int(read_checkpoint_meta(run / arm / "checkpoint" / "last.safetensors")["step"])
        assert 1 <= step < 75  # 75: the first periodic save of a 300-step run
        assert (run / arm / "export" / "model.safetensors").is_file()  # comparable at the next start, as partial


def test_a_train_run_on_uploaded_photos_over_http(client):
    """What a visitor to a hosted Space does: no folder on the server, a few photos uploaded from the browser."""
    c, world = client
    photos = [handle_file(str(p)) for p in sorted(world.clean.glob("*.png"))]
    status, _, archive, *_ = c.predict("noise", 1, 1, 32, 1e-3, 0.05, 0.1, 0, 99, 0, "", "", 0,
                                       restorers.FRESH_START, photos, api_name="/train")
    assert status.startswith("**Done**") and str(archive).endswith(".zip")
    assert "3 uploaded photos, saved in" in status


def test_a_downloaded_pair_uploaded_back_appears_as_a_run(client, tmp_path):
    """A hosted Space forgets runs/ when it restarts: the zip the Train tab gave comes back through Compare."""
    from tests.studio_helpers import zip_pair

    c, world = client
    message, task = c.predict(handle_file(str(zip_pair(world, tmp_path / "pair.zip"))), api_name="/add_restorers")
    assert task == "noise" and message.startswith("Added `run upload-pair-")
    assert [e.arm for e in world.registry.restorers("noise") if e.source == "run"] == ["l2", "diffloss"]


def test_a_real_pair_over_http_and_the_ground_truth_stays_optional(client):
    c, world = client
    l2, dl = world.labels()
    photo, gt = handle_file(str(world.clean / "1.png")), handle_file(str(world.clean / "0.png"))
    out = c.predict(photo, "noise", upload.MODES[2], 0, l2, dl, 0.5, 0.5, 32, gt, api_name="/compare")
    assert out[5] is not None and "A real pair" in out[7]  # an error map, against the uploaded ground truth
    with pytest.raises(Exception, match="Upload its ground truth too"):
        c.predict(photo, "noise", upload.MODES[2], 0, l2, dl, 0.5, 0.5, 32, api_name="/compare")


def test_a_users_mistake_is_said_in_the_page_with_no_traceback_on_the_console(client, capfd):
    c, world = client
    capfd.readouterr()
    with pytest.raises(Exception, match="steps must be at least 1"):
        c.predict("noise", 0, 1, 32, 1e-3, 0.05, 0.1, 0, 99, 0, "", str(world.clean), api_name="/train")
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and "gradio.exceptions.Error" not in out + err


def test_stop_with_no_run_going_leaves_the_status_as_it_is(client):
    c, _ = client
    assert not train_tab._TRAIN_LOCK.locked()
    assert c.predict(api_name="/stop") == {"__type__": "update"}  # gr.skip(): no "Stopping..." over a Done summary
