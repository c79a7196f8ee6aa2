"""The Train tab's handler: both arms from one seed, live events, caps, one run at a time, and Stop that stops."""

from __future__ import annotations

import json

import gradio as gr
import numpy as np
import pytest

from studio import restorers, train_tab
from studio.train_settings import TrainSettings
from tests.studio_helpers import make_world


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path, with_restorers=False)


def _run(world, name, steps=2, **kw):
    args = dict(task="noise", steps=steps, batch=1, crop=32, lr=1e-3, gamma=0.05, lam=0.1, t_min=0, t_max=999,
                seed=0, prior_source="", clean_folder=str(world.clean), width=8, name=name)
    args.update(kw)
    return train_tab.train_pair(TrainSettings(**args), registry=world.registry)


def test_a_short_run_trains_both_arms_streams_curves_and_lands_in_compare(world, monkeypatch):
    monkeypatch.setattr(train_tab, "CPU_CAPS", {"steps": 3, "batch": 8, "crop": 128})
    monkeypatch.setattr(train_tab, "GPU_CAPS", {"steps": 3, "batch": 8, "crop": 128})
    outputs = list(_run(world, "short", steps=50))
    status, curves, archive, *_ = outputs[-1]
    assert status.startswith("**Done**") and "steps 50 capped at 3" in status
    assert "l2: `[####################]` step 3/3" in status and "diffloss:" in status
    l2_line, dl_line = (line for line in status.splitlines() if line.startswith(("- l2:", "- diffloss:")))
    assert "prior's share of the gradient" in dl_line and "share" not in l2_line
    assert curves.ndim == 3 and archive.endswith("short.zip")
    import zipfile

    names = zipfile.ZipFile(archive).namelist()
    for arm in ("l2", "diffloss"):
        assert f"{arm}/model.safetensors" in names and f"{arm}/card.json" in names
    entries = {e.label: e.arm for e in world.registry.restorers("noise")}
    assert entries == {"run short l2": "l2", "run short diffloss": "diffloss"}
    assert restorers.restorer_choices("noise", world.registry)[1:] == ("run short l2", "run short diffloss")


def test_the_released_no_grad_mistake_leaves_the_diffloss_arm_equal_to_the_l2_arm(world):
    """The failure mode on purpose: same start, seed and batches, prior terms logged under no_grad: the two arms end
    bit for bit equal however large gamma is; without the mistake they differ, and the Done line says by how much."""
    from diffloss.checkpoint import load_tensors

    status = list(_run(world, "bug", steps=3, gamma=5.0, detach_prior=True))[-1][0]
    assert "the released code's no_grad mistake is on" in status
    assert "identical to the L2 arm's, bit for bit" in status
    assert "prior's share of the gradient 0%" in status
    l2, dl = (load_tensors(world.registry.runs / "bug" / arm / "model" / "model.safetensors") for arm in ("l2", "diffloss"))
    assert all(l2[k].equal(dl[k]) for k in l2)
    status = list(_run(world, "fixed", steps=3, gamma=5.0))[-1][0]
    assert "no_grad" not in status
    [line] = [n for n in status.splitlines() if "differ from the L2 arm's by up to" in n]
    assert float(line.split("by up to ")[1].split()[0]) > 1e-6


def test_stop_ends_the_run_keeps_a_checkpoint_and_frees_the_slot(world):
    run = _run(world, "stopped", steps=200)
    first = next(run)
    assert first[0].startswith("**Starting**")
    next(run)  # one step of each arm
    train_tab.request_stop()
    status, _, archive, *_ = next(run)
    assert status.startswith("**Stopped**") and archive is None
    with pytest.raises(StopIteration):
        next(run)
    arm_dir = world.registry.runs / "stopped" / "l2"
    assert (arm_dir / "checkpoint" / "last.safetensors").is_file()
    assert not (arm_dir / "model").exists()
    assert world.registry.restorers("noise") == []
    # ...but both arms can be compared as they are, labelled partial with their step, and are preselected
    from diffloss.run_folder import read_checkpoint_meta

    l2, dl = (int(read_checkpoint_meta(arm_dir.parent / arm / "checkpoint" / "last.safetensors")["step"])
              for arm in ("l2", "diffloss"))
    assert 1 <= l2 < 200 and 1 <= dl < 200
    partial = [f"run stopped l2 (partial, step {l2})", f"run stopped diffloss (partial, step {dl})"]
    assert [e.label for e in world.registry.restorers("noise", partial=True)] == partial
    assert f"(l2 at step {l2}, diffloss at step {dl}) can be compared" in status and '"... (partial, step N)"' in status
    assert restorers.trained_pair_choices("noise", world.registry) == (partial, *partial)
    assert json.loads((arm_dir / "export" / "card.json").read_text())["partial"] is True
    again = _run(world, "after-stop", steps=1)
    assert next(again)[0].startswith("**Starting**")
    again.close()


def test_stop_pressed_after_a_run_finished_leaves_its_done_summary(world):
    """No status line outlives the state it describes: with no run going, Stop changes nothing ("Stopping..."
    written over Done would stay for good) and the next run is not stopped by it."""
    status = list(_run(world, "finished", steps=1))[-1][0]
    assert status.startswith("**Done**")
    assert train_tab.request_stop() == gr.skip()  # the status box keeps Done
    assert list(_run(world, "next", steps=2))[-1][0].startswith("**Done**")


def test_the_first_click_in_a_fresh_clone_trains_on_the_shipped_clean_examples(world, tmp_path, monkeypatch):
    """No benchmark beside the repo, no upload, no folder typed (the defaults in a fresh clone): both arms train on
    the shipped training photos (examples/train/: never Compare's examples, never a degraded one), copied into the
    run, and the status says so."""
    monkeypatch.setenv("DIFFLOSS_DATASETS", str(tmp_path / "no-datasets"))
    from tests.studio_helpers import write_png

    write_png(world.clean / "haze_hazy_1.png", np.zeros((64, 64, 3), np.uint8))  # a degraded example: left out
    assert world.registry.training_folder() is None
    status = list(_run(world, "first", clean_folder=""))[-1][0]
    assert status.startswith("**Done**")
    assert "no photos given: the arms train on the 3 clean photos shipped in `examples/train/`" in status
    photos = sorted(p.name for p in (world.registry.runs / "first" / "photos").iterdir())
    assert photos == ["000_t0.png", "001_t1.png", "002_t2.png"]
    card = json.loads((world.registry.runs / "first" / "l2" / "model" / "card.json").read_text())
    assert card["data"]["clean"] == [str(world.registry.runs / "first" / "photos")]


def _stop_after_first_steps(run) -> str:
    next(run)
    next(run)  # one step of each arm
    train_tab.request_stop()
    status = next(run)[0]
    run.close()
    return status


def test_a_stopped_run_is_listed_and_resumes_to_the_weights_of_an_unbroken_run(world):
    from diffloss.checkpoint import load_tensors

    list(_run(world, "unbroken", steps=6))
    status = _stop_after_first_steps(_run(world, "broken", steps=6))
    assert "resume it below" in status
    assert train_tab.stopped_runs(world.registry) == [("broken (l2 1/6, diffloss 1/6)", "broken")]
    outputs = list(train_tab.resume_pair("broken", registry=world.registry))
    status, curves, archive, *_ = outputs[-1]
    assert outputs[0][0].startswith("**Starting**") and "l2: resumed at step 1" in outputs[0][0]
    assert status.startswith("**Done**") and "step 6/6" in status and archive.endswith("broken.zip")
    assert curves.ndim == 3
    for arm in ("l2", "diffloss"):
        a = load_tensors(world.registry.runs / "unbroken" / arm / "model" / "model.safetensors")
        b = load_tensors(world.registry.runs / "broken" / arm / "model" / "model.safetensors")
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a), arm
    assert train_tab.stopped_runs(world.registry) == []
    # finished: the models replace the partial exports in every list
    assert [e.label for e in world.registry.restorers("noise", partial=True) if e.label.startswith("run broken ")] == [
        "run broken l2", "run broken diffloss"]
    card = json.loads((world.registry.runs / "broken" / "diffloss" / "model" / "card.json").read_text())
    assert card["command"] == "DiffLoss Studio Train tab (diffloss arm); resumed in the Train tab at step 1"
    with pytest.raises(gr.Error, match="nothing to resume: both arms finished"):
        next(train_tab.resume_pair("broken", registry=world.registry))


def test_the_resumed_curves_go_on_from_the_logged_steps(world, monkeypatch):
    drawn = []
    monkeypatch.setattr(train_tab, "training_figure", lambda history: drawn.append(
        {arm: [s for s, _ in points] for arm, points in history.items()}) or np.zeros((2, 2, 3), np.uint8))
    _stop_after_first_steps(_run(world, "curves", steps=4))
    del drawn[:]
    list(train_tab.resume_pair("curves", registry=world.registry))
    assert drawn[0] == {"l2": [1], "diffloss": [1]}  # from log.csv, before the first resumed step
    assert drawn[-1] == {"l2": [1, 2, 3, 4], "diffloss": [1, 2, 3, 4]}


def test_the_readme_terminal_command_resumes_one_arm_of_a_train_tab_run(world, monkeypatch):
    from diffloss import train_cli

    _stop_after_first_steps(_run(world, "terminal", steps=3))
    monkeypatch.setattr(train_cli, "stop_on_signals", lambda: None)  # keep pytest's own handlers
    assert train_cli.main(["resume", str(world.registry.runs / "terminal" / "l2")]) == 0
    assert train_tab.stopped_runs(world.registry) == [("terminal (l2 finished, diffloss 1/3)", "terminal")]
    assert [e.label for e in world.registry.restorers("noise")] == ["run terminal l2"]


def test_a_half_finished_run_resumes_only_its_stopped_arm(world):
    import shutil

    list(_run(world, "half", steps=2))
    shutil.rmtree(world.registry.runs / "half" / "diffloss" / "model")  # as if Stop came between the two arms' ends
    assert train_tab.stopped_runs(world.registry) == [("half (l2 finished, diffloss 2/2)", "half")]
    status = list(train_tab.resume_pair("half", registry=world.registry))[-1][0]
    assert "l2: had finished; kept as it was" in status and "diffloss: resumed at step 2" in status
    assert (world.registry.runs / "half" / "diffloss" / "model").is_dir()


def test_an_arm_closed_before_its_first_step_starts_with_its_siblings_settings(world):
    """A shutdown between the two arms' first steps leaves one arm with a checkpoint and the other with none."""
    import shutil

    from diffloss.checkpoint import load_tensors

    list(_run(world, "whole", steps=3))
    _stop_after_first_steps(_run(world, "lopsided", steps=3))
    shutil.rmtree(world.registry.runs / "lopsided" / "diffloss")
    (world.registry.runs / "lopsided" / "diffloss").mkdir()
    assert train_tab.stopped_runs(world.registry) == [("lopsided (l2 1/3, diffloss not started)", "lopsided")]
    status = list(train_tab.resume_pair("lopsided", registry=world.registry))[-1][0]
    assert "l2: resumed at step 1" in status and "diffloss: started (it had stopped before step 1)" in status
    assert status.startswith("**Done**")
    a = load_tensors(world.registry.runs / "whole" / "diffloss" / "model" / "model.safetensors")
    b = load_tensors(world.registry.runs / "lopsided" / "diffloss" / "model" / "model.safetensors")
    assert all(a[k].equal(b[k]) for k in a)  # the same arm as train_pair made it: DiffLoss on, same data and seed
    shutil.rmtree(world.registry.runs / "lopsided" / "l2")
    (world.registry.runs / "lopsided" / "l2").mkdir()
    shutil.rmtree(world.registry.runs / "lopsided" / "diffloss")
    (world.registry.runs / "lopsided" / "diffloss").mkdir()
    assert train_tab.stopped_runs(world.registry) == []
    with pytest.raises(gr.Error, match="has no checkpoint: it stopped before its first step"):
        next(train_tab.resume_pair("lopsided", registry=world.registry))


def test_resume_refuses_what_it_cannot_continue_and_frees_the_slot(world, monkeypatch):
    import shutil

    with pytest.raises(gr.Error, match="Choose a stopped run"):
        next(train_tab.resume_pair("", registry=world.registry))
    with pytest.raises(gr.Error, match="No Train run named 'ghost'"):
        next(train_tab.resume_pair("ghost", registry=world.registry))
    _stop_after_first_steps(_run(world, "big", steps=6, batch=2))
    with pytest.raises(gr.Error, match="No Train run named '../runs/big'"):  # names only, nothing outside runs/
        next(train_tab.resume_pair("../runs/big", registry=world.registry))
    monkeypatch.setattr(train_tab, "CPU_CAPS", {"steps": 300, "batch": 1, "crop": 128})
    monkeypatch.setattr(train_tab, "GPU_CAPS", {"steps": 300, "batch": 1, "crop": 128})
    with pytest.raises(gr.Error, match="started with batch 2, more than this (CPU|GPU) allows \\(1\\)"):
        next(train_tab.resume_pair("big", registry=world.registry))
    monkeypatch.undo()
    moved = world.root / "elsewhere"
    shutil.move(str(world.clean), moved)
    with pytest.raises(gr.Error, match="The photos the l2 arm trained on are gone"):
        next(train_tab.resume_pair("big", registry=world.registry))
    shutil.move(str(moved), world.clean)
    (world.registry.runs / "big" / "l2" / "checkpoint" / "last.safetensors").write_bytes(b"torn")
    assert train_tab.stopped_runs(world.registry) == [("big (diffloss 1/6)", "big")]
    with pytest.raises(gr.Error, match="Cannot resume the l2 arm: .* is not a readable training checkpoint"):
        next(train_tab.resume_pair("big", registry=world.registry))
    assert not train_tab._TRAIN_LOCK.locked()
    running = _run(world, "running", steps=200)
    next(running)
    with pytest.raises(gr.Error, match="already going"):
        next(train_tab.resume_pair("big", registry=world.registry))
    running.close()


def test_a_shutdown_saves_a_run_that_no_request_iterates_any_more(world):
    """Ctrl-C closes the server first: the run's stream is left where it was, and the shutdown closes its loops."""
    from diffloss.run_folder import read_checkpoint_meta

    run = _run(world, "orphan", steps=200)
    next(run)
    next(run)  # one step of each arm, then nobody asks for more
    assert train_tab.stop_for_shutdown(timeout=10) == []
    for arm in ("l2", "diffloss"):
        meta = read_checkpoint_meta(world.registry.runs / "orphan" / arm / "checkpoint" / "last.safetensors")
        assert 1 <= int(meta["step"]) < 50  # saved by the shutdown: the first periodic save is at step 50
        export = world.registry.runs / "orphan" / arm / "export"  # and comparable at once, labelled partial
        assert json.loads((export / "card.json").read_text())["steps"] == int(meta["step"])
    run.close()
    assert not train_tab._TRAIN_LOCK.locked() and train_tab._LOOPS == {}
    assert train_tab.stop_for_shutdown(timeout=1) == []  # no run: nothing to do


def test_a_shutdown_exports_the_run_even_when_its_stream_frees_the_slot_meanwhile(world, monkeypatch):
    """A SIGTERM mid-run: the request's stream may see the Stop, export before the loops have saved, and free the
    slot (emptying what the shutdown reads) while the shutdown is still closing the loops; the export must still
    happen, after the loops saved."""
    from diffloss import pair

    run = _run(world, "raced", steps=200)
    next(run)
    next(run)
    close_loops = pair.close_loops

    def close_then_free_the_slot(loops, timeout):
        stuck = close_loops(loops, timeout)
        train_tab._RUNNING.clear()  # the stream ended and its slot's finally ran meanwhile
        return stuck

    monkeypatch.setattr(pair, "close_loops", close_then_free_the_slot)
    assert train_tab.stop_for_shutdown(timeout=10) == []
    for arm in ("l2", "diffloss"):
        assert (world.registry.runs / "raced" / arm / "export" / "model.safetensors").is_file()
    run.close()


def test_one_run_at_a_time_and_closing_the_stream_stops_it(world):
    run = _run(world, "first", steps=200)
    next(run)
    next(run)
    with pytest.raises(gr.Error, match="already going"):
        next(_run(world, "second", steps=1))
    run.close()  # what Gradio does when the browser goes away
    assert (world.registry.runs / "first" / "diffloss" / "checkpoint" / "last.safetensors").is_file()
    labels = [e.label for e in world.registry.restorers("noise", partial=True) if e.label.startswith("run first")]
    assert len(labels) == 2 and all("partial, step" in label for label in labels)  # comparable, as after Stop
    assert not train_tab._TRAIN_LOCK.locked()


def test_bad_settings_are_refused_before_any_work(world, tmp_path):
    with pytest.raises(gr.Error, match="steps must be at least 1"):
        next(_run(world, "zero", steps=0))
    with pytest.raises(gr.Error, match="Prior not loadable"):
        next(_run(world, "noprior", prior_source=str(tmp_path / "missing")))
    with pytest.raises(gr.Error, match="No clean photos to train on: upload a few clean photos, or give a folder"):
        next(_run(world, "nodata", clean_folder=str(tmp_path / "empty")))
    with pytest.raises(gr.Error, match="Prior on photos per batch must be a whole number, got 1.5"):
        next(_run(world, "half", prior_samples=1.5))
    with pytest.raises(gr.Error, match="Prior on photos per batch must be at least 0, got -1"):
        next(_run(world, "minus", prior_samples=-1))
    assert not train_tab._TRAIN_LOCK.locked() and not (world.registry.runs / "half").exists()


def test_uploaded_photos_are_trained_on_and_kept_with_the_run(world, tmp_path):
    """A hosted Space has no folder of its visitors' photos: uploads are saved into the run as PNGs, bad files
    skipped with a note, and both cards name that folder."""
    import json

    import numpy as np

    from diffloss.images import load_image
    from tests.studio_helpers import write_png

    uploads = [str(p) for p in sorted(world.clean.glob("*.png"))]  # three 64 px photos, as a browser would send them
    rotated = write_png(tmp_path / "phone.jpg.png", np.zeros((40, 24, 3), np.uint8), exif_orientation=6)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    status, _, archive, *_ = list(_run(world, "uploaded", clean_folder="", photos=[*uploads, str(rotated), str(broken)]))[-1]
    folder = world.registry.runs / "uploaded" / "photos"
    assert status.startswith("**Done**") and archive.endswith("uploaded.zip")
    assert f"4 uploaded photos, saved in `{folder}` (1 skipped)" in status
    assert "only 4 photos: the arms will fit them" in status
    saved = sorted(folder.iterdir())
    assert [p.suffix for p in saved] == [".png"] * 4
    assert load_image(saved[3]).shape == (3, 24, 40)  # stored upright, as training reads it
    assert load_image(saved[0]).equal(load_image(uploads[0]))  # lossless
    for arm in ("l2", "diffloss"):
        card = json.loads((world.registry.runs / "uploaded" / arm / "model" / "card.json").read_text())
        assert card["data"]["clean"] == [str(folder)]


def test_at_most_max_photos_uploads_are_kept_and_large_ones_downscaled(world, tmp_path, monkeypatch):
    from diffloss.images import load_image
    from tests.studio_helpers import write_png

    monkeypatch.setattr(train_tab, "MAX_PHOTOS", 2)  # the rule at a size a test can afford
    kept, notes = train_tab.save_training_photos([str(p) for p in sorted(world.clean.glob("*.png"))], tmp_path / "out")
    assert kept == 2 and len(list((tmp_path / "out").iterdir())) == 2
    assert notes == ["1 photo left out: at most 2 per run"]
    tiny = write_png(tmp_path / "tiny.png", np.zeros((8, 12, 3), np.uint8))
    kept, notes = train_tab.save_training_photos([str(tiny)], tmp_path / "none")
    assert kept == 0 and notes == ["skipped tiny.png: tiny.png is 12x8 px: too small to restore (needs at least 16 px "
                                   "on each side)."]
    monkeypatch.setattr(train_tab, "MAX_SIDE", 32)  # the 64 px photos are then "large"
    kept, notes = train_tab.save_training_photos([str(world.clean / "0.png")], tmp_path / "small")
    assert kept == 1 and notes == ["1 photo downscaled to 32 px on the longer side"]
    assert load_image(next((tmp_path / "small").iterdir())).shape == (3, 32, 32)


def test_uploads_with_no_usable_photo_are_refused_and_leave_no_run(world, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(gr.Error, match="None of the 1 uploaded files is a usable photo: skipped broken.png"):
        next(_run(world, "nothing", photos=[str(broken)]))
    assert not train_tab._TRAIN_LOCK.locked()
    assert not (world.registry.runs / "nothing" / "l2").exists()
    with pytest.raises(gr.Error, match="Prior not loadable"):  # checks first, then the uploads are saved
        next(_run(world, "noprior", prior_source=str(tmp_path / "missing"), photos=[str(broken)]))
    assert not (world.registry.runs / "noprior").exists()


def test_the_prior_sub_crop_reaches_the_diffloss_arm_only(world):
    import json

    list(_run(world, "sub", prior_crop=16))
    cards = {arm: json.loads((world.registry.runs / "sub" / arm / "model" / "card.json").read_text())
             for arm in ("l2", "diffloss")}
    assert cards["diffloss"]["config"]["loss"]["prior_crop"] == 16
    assert cards["diffloss"]["config"]["diffloss"] is True and cards["l2"]["config"]["diffloss"] is False
    list(_run(world, "whole", prior_crop=64))  # not smaller than the 32 px crop: the whole crop, no error
    card = json.loads((world.registry.runs / "whole" / "diffloss" / "model" / "card.json").read_text())
    assert card["config"]["loss"]["prior_crop"] is None


def test_the_prior_on_fewer_photos_of_the_batch_reaches_the_diffloss_arm_and_0_or_the_batch_means_all(world):
    import json

    def loss_of(name: str) -> dict:
        return json.loads((world.registry.runs / name / "diffloss" / "model" / "card.json").read_text())[
            "config"]["loss"]

    list(_run(world, "few", batch=3, prior_samples=2, prior_crop=16))
    assert (loss_of("few")["prior_samples"], loss_of("few")["prior_crop"]) == (2, 16)
    list(_run(world, "all", batch=2, prior_samples=2))  # not fewer than the batch: every photo, no error
    list(_run(world, "zero", batch=2, prior_samples=0))
    assert loss_of("all")["prior_samples"] is None and loss_of("zero")["prior_samples"] is None


def test_both_arms_can_fine_tune_a_trained_restorer(tmp_path):
    from diffloss.checkpoint import read_json

    world = make_world(tmp_path, with_restorers=True)
    labels, default = restorers.start_choices("noise", world.registry)
    l2, _ = world.labels()
    assert labels[0] == restorers.FRESH_START and default == l2  # fine-tuning the task's L2 arm is preselected
    assert restorers.start_choices("sr4", world.registry) == ([restorers.FRESH_START], restorers.FRESH_START)
    status = list(_run(world, "tuned", start=l2))[-1][0]
    assert status.startswith("**Done**") and f"both arms start from `{l2}`" in status
    # Compare's first view keeps the shipped pair; after training it shows the run just trained.
    assert restorers.restorer_choices("noise", world.registry)[1:] == world.labels()
    labels, run_l2, run_dl = restorers.trained_pair_choices("noise", world.registry)
    assert (run_l2, run_dl) == ("run tuned l2", "run tuned diffloss") and run_l2 in labels
    assert restorers.trained_pair_choices("sr4", world.registry) == ([], None, None)
    start = world.registry.find(l2, "noise").path
    for arm in ("l2", "diffloss"):
        card = read_json(world.registry.runs / "tuned" / arm / "model" / "card.json")
        assert card["data"]["init"] == str(start)
    with pytest.raises(gr.Error, match="not a restorer for task 'sr4'"):
        next(_run(world, "wrong-task", task="sr4", start=l2))
    assert not train_tab._TRAIN_LOCK.locked()


def test_a_run_trains_with_the_forms_weight_of_each_t_and_gradient(world):
    list(_run(world, "dosed", t_weight="sigma2", gradient="sds"))
    loss = json.loads((world.registry.runs / "dosed" / "diffloss" / "model" / "card.json").read_text())["config"]["loss"]
    assert (loss["t_weight"], loss["gradient"]) == ("sigma2", "sds")
    list(_run(world, "plain", t_weight="", gradient=None))  # empty boxes (an HTTP caller leaving them out)
    loss = json.loads((world.registry.runs / "plain" / "diffloss" / "model" / "card.json").read_text())["config"]["loss"]
    assert (loss["t_weight"], loss["gradient"]) == ("uniform", "full")
    with pytest.raises(gr.Error, match="unknown t weighting 'loud'"):
        next(_run(world, "loud", t_weight="loud"))


def test_calibration_measures_on_what_both_arms_start_from(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFLOSS_DATASETS", str(tmp_path / "no-datasets"))
    world = make_world(tmp_path, with_restorers=True)
    l2, _ = world.labels()
    args = ("noise", 32, 0, 99, "", 0.05, 0.1, 0.2, 0.1)
    fresh = train_tab.calibrate_weights(*args, restorers.FRESH_START, registry=world.registry)
    tuned = train_tab.calibrate_weights(*args, l2, registry=world.registry)
    assert "restored by a fresh restorer (the identity)" in fresh[2]
    assert f"restored by `{l2}`" in tuned[2]
    assert fresh[:2] != tuned[:2]  # another restored image, other gradients


def test_calibration_sets_weights_that_give_the_asked_shares_and_shows_what_typed_ones_give(world, monkeypatch):
    monkeypatch.setenv("DIFFLOSS_DATASETS", str(world.root / "no-datasets"))  # the world's clean examples
    gamma, lam, report = train_tab.calibrate_weights("noise", 32, 0, 99, "", 1e-3, 1e-3, 0.25, 0.05, registry=world.registry)
    assert gamma > 0 and lam > 0
    assert "Measured on 3 clean photos" in report and "32 px centre crops" in report and "t drawn in [0, 99]" in report
    assert "your weights (gamma 0.001, lambda 0.001)" in report
    assert f"gamma **{gamma:g}**, lambda **{lam:g}**" in report
    assert "they give fidelity 70.0%, L_nat 25.0%, L_sem 5.00%" in report  # rounded weights, same shares
    # The same photos, crops, seeds and t give the same weights: a measurement, not a draw.
    assert train_tab.calibrate_weights("noise", 32, 0, 99, "", 1e-3, 1e-3, 0.25, 0.05, registry=world.registry)[:2] == (gamma, lam)
    g2, _, _ = train_tab.calibrate_weights("noise", 32, 0, 99, "", 1e-3, 1e-3, 0.5, 0.05, registry=world.registry)
    assert g2 > gamma  # a larger share needs a larger weight


def test_calibration_measures_through_the_forms_dose(world, monkeypatch):
    """The weight of each t and the gradient's form change the gradient norms: the calibration measures through
    the dose the run will train with, and a value the loss does not know is refused by name."""
    monkeypatch.setenv("DIFFLOSS_DATASETS", str(world.root / "no-datasets"))
    args = ("noise", 32, 0, 99, "", 1e-3, 1e-3, 0.25, 0.0, None)
    plain = train_tab.calibrate_weights(*args, registry=world.registry)
    weighted = train_tab.calibrate_weights(*args, "sigma2", "sds", registry=world.registry)
    assert "(uniform weights, full gradient)" in plain[2]
    assert "(sigma2 weights, Jacobian-free gradient)" in weighted[2]
    assert weighted[0] != pytest.approx(plain[0], rel=1e-3)  # another dose, another gamma for the same share
    with pytest.raises(gr.Error, match="unknown t weighting 'loud'"):
        train_tab.calibrate_weights(*args, "loud", "full", registry=world.registry)
    with pytest.raises(gr.Error, match="unknown gradient 'x'"):
        train_tab.calibrate_weights(*args, "", "x", registry=world.registry)


def test_calibration_refuses_what_it_cannot_do_with_a_message(world, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFLOSS_DATASETS", str(tmp_path / "no-datasets"))
    with pytest.raises(gr.Error, match="Cannot calibrate: shares must"):
        train_tab.calibrate_weights("noise", 32, 0, 99, "", 0.05, 0.1, 0.7, 0.4, registry=world.registry)
    with pytest.raises(gr.Error, match="Cannot calibrate: timestep range"):
        train_tab.calibrate_weights("noise", 32, 50, 10, "", 0.05, 0.1, registry=world.registry)
    with pytest.raises(gr.Error, match="unknown task|Unknown task|not a task"):
        train_tab.calibrate_weights("blur", 32, 0, 99, "", 0.05, 0.1, registry=world.registry)
    from studio.models import Registry
    bare = Registry(world.root / "pretrained", world.root / "runs", examples=None)
    with pytest.raises(gr.Error, match="No clean validation photos to calibrate on"):
        train_tab.calibrate_weights("noise", 32, 0, 99, "", 0.05, 0.1, registry=bare)


def test_stop_while_a_run_writes_its_last_status_leaves_the_status_alone(monkeypatch):
    """The race: Stop pressed as a run finishes would write "Stopping..." after its Done summary, for good."""
    assert train_tab._TRAIN_LOCK.acquire(blocking=False)
    try:
        monkeypatch.setitem(train_tab._RUNNING, "finishing", True)
        assert train_tab.request_stop() == gr.skip()
        assert not train_tab._STOP.is_set()
    finally:
        train_tab._TRAIN_LOCK.release()


def test_run_names_cannot_be_guessed_from_their_task_and_start_time():
    from studio.train_tab import new_run_name

    names = {new_run_name("noise") for _ in range(20)}
    assert len(names) == 20 and all(n.startswith("studio-noise-") and len(n.rsplit("-", 1)[1]) == 6 for n in names)


@pytest.mark.parametrize("hosted_mode", [True, False])
def test_a_diverged_run_is_not_kept_on_a_space_and_kept_locally(world, monkeypatch, hosted_mode):
    """Issue #25 low 11: a diverged run counted in its visitor's cap for nothing; hosted, it is removed at once."""
    from diffloss import pair
    from diffloss.train import TrainingDiverged
    from studio import hosting

    def diverge(self, deadline=None):
        (world.registry.runs / "wild" / "l2" / "last.safetensors").parent.mkdir(parents=True, exist_ok=True)
        (world.registry.runs / "wild" / "l2" / "last.safetensors").write_bytes(b"w")  # what it trained so far
        raise pair.ArmDiverged("diffloss", TrainingDiverged("loss became nan at step 1"))
        yield  # a generator, as PairRun.rounds is

    monkeypatch.setattr(pair.PairRun, "rounds", diverge)
    monkeypatch.setattr(hosting, "is_hosted", lambda: hosted_mode)
    with pytest.raises(gr.Error, match="diffloss arm diverged" + (", so the run was not kept" if hosted_mode else "")):
        list(_run(world, "wild", **({"clean_folder": ""} if hosted_mode else {})))
    assert (world.registry.runs / "wild").exists() is not hosted_mode
